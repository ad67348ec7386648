"""``sine-nerfacto``: nerfacto whose field MLPs use sine low-rank layers.

The MLPs always run in torch (tiny-cuda-nn's fused MLPs cannot hold a sine low-rank weight). The
hash grid uses tinycudann when it is installed and works (CUDA), and nerfstudio's torch hash grid
otherwise, with nerfstudio's one warning. Proposal networks are left as in nerfacto (16-wide).

Nerfacto's parameters are dominated by the hash grid (about 12 M entries at the defaults), so
factorising its small 64-wide MLPs barely changes the total: the logged counts say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Tuple, Type

import torch
from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.field_components.mlp import MLP, MLPWithHashEncoding
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import nn

from sine_fields.convert import count_parameters
from sine_fields.methods.common import (
    FactorisedMLPOptions,
    allow_checkpoint_globals,
    describe,
    drop_missing_lpips,
    factorise_mlps,
    lpips_only_if_available,
)
from sine_fields.methods.rgba import StraightAlphaRGBA

__all__ = ["SineNerfactoModel", "SineNerfactoModelConfig", "nerfacto_trainer_config"]

# NerfactoField's MLPs after `_torch_mlps`: the base MLP behind the hash grid, and the colour head.
NERFACTO_MLPS = ["mlp_base.model.1", "mlp_head"]


@dataclass
class SineNerfactoModelConfig(NerfactoModelConfig, FactorisedMLPOptions):
    """Nerfacto whose field MLPs use dense, low-rank or sine low-rank layers (``linear``, ``rank``,
    ``omega``, ``factorise``: ``FactorisedMLPOptions``)."""

    _target: Type = field(default_factory=lambda: SineNerfactoModel)
    rank: int = 4
    """Rank k of the factorised layers (the MLPs are 64 wide)."""
    background_color: Literal["random", "last_sample", "black", "white"] = "white"
    """White matches `sine-fields data scene`'s RGBA images; use last_sample for unbounded real captures."""


def _torch_mlps(field_module: nn.Module) -> None:
    """Make sure the nerfacto field's MLPs are torch modules, keeping a tinycudann hash grid if any."""
    base = field_module.mlp_base
    if isinstance(base, MLPWithHashEncoding) and not isinstance(base.model, nn.Sequential):
        # tinycudann fused the hash grid and the MLP into one network: split them.
        encoder = HashEncoding(
            num_levels=base.num_levels,
            min_res=base.min_res,
            max_res=base.max_res,
            log2_hashmap_size=base.log2_hashmap_size,
            features_per_level=base.features_per_level,
            hash_init_scale=base.hash_init_scale,
            implementation="tcnn",
        )
        mlp = MLP(
            in_dim=encoder.get_out_dim(),
            num_layers=base.num_layers,
            layer_width=base.layer_width,
            out_dim=base.out_dim,
            activation=base.activation,
            out_activation=base.out_activation,
            implementation="torch",
        )
        base.model = nn.Sequential(encoder, mlp)
    head = field_module.mlp_head
    if getattr(head, "tcnn_encoding", None) is not None:
        head.tcnn_encoding = None
        head.build_nn_modules()


class SineNerfactoModel(StraightAlphaRGBA, NerfactoModel):
    """``NerfactoModel`` with its field's MLP layers swapped after construction."""

    config: SineNerfactoModelConfig

    def populate_modules(self) -> None:
        allow_checkpoint_globals()
        with lpips_only_if_available():
            super().populate_modules()
        _torch_mlps(self.field)
        c = self.config
        summary = factorise_mlps(self.field, NERFACTO_MLPS, c.linear, c.rank, c.omega, c.factorise)
        CONSOLE.print(describe("field", summary, c.linear, c.rank, c.omega))
        proposal = sum(count_parameters(net) for net in self.proposal_networks)
        CONSOLE.print(f"proposal networks: {proposal:,} parameters (unchanged from nerfacto)")

    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        return drop_missing_lpips(self, metrics), images


def nerfacto_trainer_config() -> TrainerConfig:
    """nerfacto's settings, written out (not copied from nerfstudio's registry, which would import
    this plugin while it is half-imported), with these changes: a single-process data manager (the
    parallel one costs a CPU core here), full precision (a half-precision ``omega * U V`` loses the
    sine's phase), tensorboard logging, and a viewer bound to 127.0.0.1."""
    return TrainerConfig(
        method_name="sine-nerfacto",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=SineNerfactoModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
            ),
        ),
        optimizers={
            "proposal_networks": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.0001, max_steps=200000),
            },
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.0001, max_steps=200000),
            },
            "camera_opt": {
                "optimizer": AdamOptimizerConfig(lr=1e-3, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=5000),
            },
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15, websocket_host="127.0.0.1", quit_on_train_completion=True),
        vis="tensorboard",
    )
