"""``sine-nerf`` / ``lowrank-nerf``: nerfstudio's vanilla NeRF with low-rank field MLPs.

The coarse and fine ``NeRFField`` are built exactly as vanilla-nerf builds them (encodings, an 8-layer
256-wide base MLP with a skip, a 2-layer 128-wide head), then the linear layers of both MLPs are
replaced by ``SineLowRankLinear`` (``W = sin(omega U V) / sqrt(in)``, Ji et al. ICLR 2025) or
``LowRankLinear`` (``W = U V``). At rank 5 with every MLP layer factorised a field keeps 4.8 % of its
dense parameters, the budget of the paper's NeRF experiment (LLFF Flower, 4.7 %).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, Literal, Tuple, Type

import torch
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import RAdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from sine_fields.layers import DEFAULT_OMEGA
from sine_fields.methods.common import (
    Factorise,
    allow_checkpoint_globals,
    describe,
    drop_missing_lpips,
    factorise_mlps,
    lpips_only_if_available,
)

__all__ = ["SineNeRFModel", "SineNeRFModelConfig", "derive", "nerf_trainer_config"]

# The two MLPs of nerfstudio's NeRFField; its density and RGB heads stay dense.
NERF_MLPS = ["mlp_base", "mlp_head"]


@dataclass
class SineNeRFModelConfig(VanillaModelConfig):
    """Vanilla NeRF whose field MLPs use dense, low-rank or sine low-rank layers."""

    _target: Type = field(default_factory=lambda: SineNeRFModel)
    linear: Literal["dense", "lowrank", "sine"] = "sine"
    """Layer kind of the field MLPs: sine low-rank, plain low-rank, or dense (vanilla NeRF)."""
    rank: int = 5
    """Rank k of the factorised layers (the paper's NeRF experiment: k = 5)."""
    omega: float = DEFAULT_OMEGA
    """Sine frequency (sine only): larger gives a higher-rank weight and a rougher optimisation."""
    factorise: Factorise = "all"
    """Which MLP layers are factorised: all (about 5 % of the dense field at k = 5) or all but the input layers."""
    background_color: Literal["random", "last_sample", "black", "white"] = "white"
    """Background composited behind the field; `sine-fields data scene` images are RGBA meant for white."""


class SineNeRFModel(NeRFModel):
    """``NeRFModel`` with its coarse and fine fields' MLP layers swapped after construction."""

    config: SineNeRFModelConfig

    def populate_modules(self) -> None:
        allow_checkpoint_globals()
        with lpips_only_if_available():
            super().populate_modules()
        c = self.config
        for name in ("field_coarse", "field_fine"):
            summary = factorise_mlps(getattr(self, name), NERF_MLPS, c.linear, c.rank, c.omega, c.factorise)
            CONSOLE.print(describe(name, summary, c.linear, c.rank, c.omega))

    def get_outputs(self, ray_bundle) -> Dict[str, torch.Tensor]:
        """Vanilla NeRF's outputs plus ``rgb`` / ``depth`` / ``accumulation`` naming the fine ones,
        the names that ``ns-export`` and the viewer look for by default."""
        outputs = super().get_outputs(ray_bundle)
        for name in ("rgb", "depth", "accumulation"):
            outputs[name] = outputs[f"{name}_fine"]
        return outputs

    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        return drop_missing_lpips(self, metrics), images


def nerf_trainer_config(method_name: str = "sine-nerf", linear: str = "sine") -> TrainerConfig:
    """The one base config of the NeRF variants: vanilla-nerf's settings, with three changes.

    - the dataparser keeps the dataset's frame (``sine-fields data scene`` writes a Blender-like frame
      that fits vanilla-nerf's near 2 / far 6), instead of re-centring and re-scaling the poses;
    - ``vis`` is tensorboard (vanilla-nerf's wandb needs an account);
    - the viewer, when asked for (`--vis viewer`), binds 127.0.0.1 and quits when training ends
      (`--viewer.quit-on-train-completion False` keeps it serving).
    """
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=2000,
        max_num_iterations=200_000,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(
                    orientation_method="none", center_method="none", auto_scale_poses=False
                ),
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
            ),
            model=SineNeRFModelConfig(linear=linear),  # type: ignore[arg-type]
        ),
        optimizers={"fields": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-08), "scheduler": None}},
        vis="tensorboard",
        viewer=ViewerConfig(websocket_host="127.0.0.1", quit_on_train_completion=True),
    )


def derive(base: TrainerConfig, method_name: str, **model_changes) -> TrainerConfig:
    """A copy of ``base`` under another method name with some model-config fields changed."""
    config = copy.deepcopy(base)
    config.method_name = method_name
    for key, value in model_changes.items():
        if not hasattr(config.pipeline.model, key):
            raise AttributeError(f"{type(config.pipeline.model).__name__} has no field {key!r}")
        setattr(config.pipeline.model, key, value)
    return config
