"""``sine-nerf`` / ``lowrank-nerf`` and their ``-lite`` recipes: nerfstudio's vanilla NeRF with
low-rank field MLPs.

The coarse and fine ``NeRFField`` are built as vanilla-nerf builds them (encodings, an 8-layer 256-wide
base MLP with a skip, a 2-layer 128-wide head: the defaults of ``SineNeRFModelConfig``), then the
linear layers of both MLPs are replaced by ``SineLowRankLinear`` (``W = sin(omega U V) / sqrt(in)``,
Ji et al. ICLR 2025) or ``LowRankLinear`` (``W = U V``). At rank 5 with every MLP layer factorised a
field keeps 4.8 % of its dense parameters, the budget of the paper's NeRF experiment (LLFF Flower, 4.7 %).

``nerf_lite_trainer_config`` derives the ``-lite`` recipes from the same base config: a shallower
field, fewer positional-encoding frequencies, samples only inside the scene box, a shifted softplus
density, more rays per step and a decaying learning rate, so that a 64 px object scene converges on
a CPU in minutes (the reasons are in the function's docstring).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, Literal, Tuple, Type

import torch
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig, RAdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
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

__all__ = ["SineNeRFModel", "SineNeRFModelConfig", "derive", "nerf_lite_trainer_config", "nerf_trainer_config"]

# The two MLPs of nerfstudio's NeRFField; its density and RGB heads stay dense.
NERF_MLPS = ["mlp_base", "mlp_head"]


@dataclass
class SineNeRFModelConfig(VanillaModelConfig, FactorisedMLPOptions):
    """Vanilla NeRF whose field MLPs use dense, low-rank or sine low-rank layers (``linear``, ``rank``,
    ``omega``, ``factorise``: ``FactorisedMLPOptions``). The field's shape defaults to vanilla NeRF's."""

    _target: Type = field(default_factory=lambda: SineNeRFModel)
    background_color: Literal["random", "last_sample", "black", "white"] = "white"
    """Background composited behind the field; `sine-fields data scene` images are RGBA meant for white."""
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
    collider: Literal["near-far", "scene-box"] = "near-far"
    """Where samples lie along a ray: between the near and far planes, or inside the dataset's scene box."""


class ShiftedSoftplus(nn.Module):
    """``softplus(x + bias)``: the density activation, with mip-NeRF's shift when ``bias = -1``."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(x + self.bias)


def build_nerf_field(c: SineNeRFModelConfig) -> NeRFField:
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


class SineNeRFModel(NeRFModel):
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


def nerf_lite_trainer_config(method_name: str = "sine-nerf-lite", linear: str = "sine") -> TrainerConfig:
    """The ``-lite`` recipe: ``nerf_trainer_config`` with only the changes below, for small object
    scenes (``sine-fields data scene``, 64 px) on a CPU, where arithmetic per step is the budget.

    - samples lie inside the scene box ([-1, 1]^3 for ``sine-fields data scene``), not between the
      near and far planes (2 to 6): the same sample count covers the object about twice as densely,
      so 16 coarse + 16 importance samples find and resolve the surface;
    - a shallower field (4 x 256 base MLP without skip, 1 x 128 head; 5 factorised layers, 5.3 % of
      its dense twin at rank 5): half the arithmetic per sample, and on a CPU rays per step buy more
      than depth;
    - position encoded with 2^0 ... 2^6 (7 frequencies, not 10 up to 2^8): at 64 px the object spans
      64 pixels and higher frequencies only add noise; 2 direction frequencies (the scenes are shaded
      view-independently);
    - density ``softplus(raw - 1)`` (mip-NeRF's choice): every point starts nearly empty but with a
      gradient (a ReLU density can die into an all-white field, seen with sine low-rank layers);
    - Adam 2e-3 decaying exponentially to a tenth over the run (on the Duck at 64 px, starting at 2e-3
      reached 15.5 dB held-out after 100 steps where starting at 1e-3 reached 13.2, one seed each),
      1,024 rays per step, 1,000 iterations: about 72 GFLOP per step (1,024 rays x 48 field samples,
      forward and backward), so 7 to 9 minutes of matrix products at the 130 to 170 GFLOP/s two idle
      cores reach in float32, plus sampling and rendering.
    """
    config = nerf_trainer_config(method_name, linear)
    config.max_num_iterations = 1000
    config.steps_per_eval_batch = 100
    config.steps_per_eval_image = 200
    config.steps_per_eval_all_images = 250
    config.steps_per_save = 500
    config.pipeline.datamanager.train_num_rays_per_batch = 1024
    config.pipeline.datamanager.eval_num_rays_per_batch = 4096
    model = config.pipeline.model
    model.eval_num_rays_per_chunk = 4096
    model.num_coarse_samples = 16
    model.num_importance_samples = 16
    model.base_layers, model.base_width, model.skip_connections = 4, 256, ()
    model.head_layers, model.head_width = 1, 128
    model.position_frequencies, model.position_max_exponent = 7, 6.0
    model.direction_frequencies = 2
    model.density_bias = -1.0
    model.collider = "scene-box"
    config.optimizers = {
        "fields": {
            "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=2e-4, max_steps=config.max_num_iterations),
        }
    }
    return config


def derive(base: TrainerConfig, method_name: str, **model_changes) -> TrainerConfig:
    """A copy of ``base`` under another method name with some model-config fields changed."""
    config = copy.deepcopy(base)
    config.method_name = method_name
    for key, value in model_changes.items():
        if not hasattr(config.pipeline.model, key):
            raise AttributeError(f"{type(config.pipeline.model).__name__} has no field {key!r}")
        setattr(config.pipeline.model, key, value)
    return config
