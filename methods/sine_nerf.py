"""``sine-nerf`` / ``lowrank-nerf`` and their ``-lite`` recipes: nerfstudio's vanilla NeRF with
low-rank field MLPs.

The coarse and fine ``NeRFField`` are built as vanilla-nerf builds them (encodings, an 8-layer 256-wide
base MLP with a skip, a 2-layer 128-wide head: the defaults of ``SineNeRFModelConfig``), then the
linear layers of both MLPs are replaced by ``SineLowRankLinear`` (``W = sin(omega U V) / sqrt(in)``,
Ji et al. ICLR 2025) or ``LowRankLinear`` (``W = U V``). At rank 5 with every MLP layer factorised a
field keeps 4.8 % of its dense parameters, the budget of the paper's NeRF experiment (LLFF Flower, 4.7 %).

The ``-lite`` recipes (``sine_nerf_lite.py``) derive from the same base config and field options.
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
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.fields.vanilla_nerf_field import NeRFField
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import nn

from sine_fields.methods.common import (
    FactorisedMLPOptions,
    allow_checkpoint_globals,
    describe,
    drop_missing_lpips,
    factorise_mlps,
    lpips_only_if_available,
)
from sine_fields.methods.rgba import StraightAlphaRGBA

__all__ = ["NeRFFieldOptions", "SineNeRFModel", "SineNeRFModelConfig", "build_nerf_field", "derive", "nerf_trainer_config"]

# The two MLPs of nerfstudio's NeRFField; its density and RGB heads stay dense.
NERF_MLPS = ["mlp_base", "mlp_head"]


@dataclass
class NeRFFieldOptions:
    """The shape of a nerfstudio ``NeRFField`` and its density activation (one definition, shared by
    ``sine-nerf`` and the ``-lite`` model). The defaults are vanilla NeRF's."""

    base_layers: int = 8
    """Layers of the base (density) MLP."""
    base_width: int = 256
    """Width of the base MLP."""
    skip_connections: Tuple[int, ...] = (4,)
    """Base-MLP layers that take the encoded position again (empty: none)."""
    head_layers: int = 2
    """Layers of the colour head MLP."""
    head_width: int = 128
    """Width of the colour head MLP."""
    position_frequencies: int = 10
    """Positional-encoding frequencies of the position, 2^0 ... 2^position_max_exponent."""
    position_max_exponent: float = 8.0
    """Highest position frequency as a power of two."""
    direction_frequencies: int = 4
    """Positional-encoding frequencies of the view direction, 2^0 ... 2^4."""
    density_bias: float = 0.0
    """Added to the raw density before its softplus; -1 (mip-NeRF's choice) starts every point nearly empty."""


@dataclass
class SineNeRFModelConfig(VanillaModelConfig, FactorisedMLPOptions, NeRFFieldOptions):
    """Vanilla NeRF whose field MLPs use dense, low-rank or sine low-rank layers (``linear``, ``rank``,
    ``omega``, ``factorise``: ``FactorisedMLPOptions``). The field's shape defaults to vanilla NeRF's."""

    _target: Type = field(default_factory=lambda: SineNeRFModel)
    background_color: Literal["random", "last_sample", "black", "white"] = "white"
    """Background composited behind the field; `sine-fields data scene` images are RGBA meant for white."""
    collider: Literal["near-far", "scene-box"] = "near-far"
    """Where samples lie along a ray: between the near and far planes, or inside the dataset's scene box."""


class ShiftedSoftplus(nn.Module):
    """``softplus(x + bias)``: the density activation, with mip-NeRF's shift when ``bias = -1``."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(x + self.bias)


def build_nerf_field(c: NeRFFieldOptions) -> NeRFField:
    """A dense ``NeRFField`` of the shape the config asks for (its MLPs are factorised afterwards)."""
    position = NeRFEncoding(
        in_dim=3, num_frequencies=c.position_frequencies, min_freq_exp=0.0,
        max_freq_exp=c.position_max_exponent, include_input=True,
    )
    direction = NeRFEncoding(
        in_dim=3, num_frequencies=c.direction_frequencies, min_freq_exp=0.0,
        max_freq_exp=float(c.direction_frequencies), include_input=True,
    )
    nerf_field = NeRFField(
        position_encoding=position,
        direction_encoding=direction,
        base_mlp_num_layers=c.base_layers,
        base_mlp_layer_width=c.base_width,
        head_mlp_num_layers=c.head_layers,
        head_mlp_layer_width=c.head_width,
        skip_connections=tuple(c.skip_connections),
    )
    nerf_field.field_output_density.activation = ShiftedSoftplus(c.density_bias)
    return nerf_field


class SineNeRFModel(StraightAlphaRGBA, NeRFModel):
    """``NeRFModel`` whose coarse and fine fields have the config's shape, density activation and
    layer kind (MLP layers swapped after construction)."""

    config: SineNeRFModelConfig

    def populate_modules(self) -> None:
        allow_checkpoint_globals()
        with lpips_only_if_available():
            super().populate_modules()  # samplers, renderers, losses, metrics; its fields are replaced below
        c = self.config
        if c.collider == "scene-box":
            self.collider = AABBBoxCollider(self.scene_box)
        for name in ("field_coarse", "field_fine"):
            nerf_field = build_nerf_field(c)
            summary = factorise_mlps(nerf_field, NERF_MLPS, c.linear, c.rank, c.omega, c.factorise)
            setattr(self, name, nerf_field)
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
