"""``sine-nerf-lite`` / ``lowrank-nerf-lite``: one NeRF field whose samples a density grid places,
a recipe that converges on a CPU in minutes on small object scenes.

The field is ``sine-nerf``'s (a nerfstudio ``NeRFField`` with factorised MLPs, ``build_nerf_field`` and
``factorise_mlps``), smaller. What differs from vanilla NeRF is where the arithmetic goes: vanilla
NeRF spends a third of its field evaluations on a coarse network whose only job is to place the fine
samples. Here a ``DensityGrid`` (the field's own density, cached on a grid and refreshed every few
steps) places them, so every field evaluation trains the one field that is rendered. The reasons
for each setting are in ``nerf_lite_trainer_config``'s docstring and in docs/radiance-fields.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Dict, List, Literal, Tuple, Type

import torch
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import MSELoss
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch.nn import Parameter

from sine_fields.methods.common import (
    FactorisedMLPOptions,
    allow_checkpoint_globals,
    describe,
    drop_missing_lpips,
    lpips_only_if_available,
    factorise_mlps,
    split_factors_u,
)
from sine_fields.methods.density_grid import DensityGrid
from sine_fields.methods.precision import FieldPrecision, field_autocast, resolve_precision
from sine_fields.methods.rgba import StraightAlphaRGBA
from sine_fields.methods.sine_nerf import NERF_MLPS, NeRFFieldOptions, build_nerf_field, nerf_trainer_config

__all__ = ["FACTORS_U_LR_SCALE", "LiteTrainerConfig", "SineNeRFLiteModel", "SineNeRFLiteModelConfig",
           "nerf_lite_trainer_config"]

FIELD_LR, FIELD_LR_FINAL = 5e-3, 2e-4
FACTORS_U_LR_SCALE = 7.0
"""The lite recipe's learning rate of the ``U`` factors, relative to the rest of the field (about
``sqrt(256 / 5)``, the ratio of the factors' initial sizes in a 256-wide layer at rank 5)."""


@dataclass
class SineNeRFLiteModelConfig(ModelConfig, FactorisedMLPOptions, NeRFFieldOptions):
    """One NeRF field (dense, low-rank or sine low-rank MLPs) sampled through a density grid.

    The field-shape defaults here are the lite field's (4 x 256 base, 1 x 128 head, 5 position and
    2 direction frequencies, ``softplus(raw - 1)`` density)."""

    _target: Type = field(default_factory=lambda: SineNeRFLiteModel)
    background_color: Literal["random", "last_sample", "black", "white"] = "white"
    """Background composited behind the field; `sine-fields data scene` images are RGBA meant for white."""
    base_layers: int = 4
    skip_connections: Tuple[int, ...] = ()
    head_layers: int = 1
    position_frequencies: int = 5
    position_max_exponent: float = 4.0
    direction_frequencies: int = 2
    density_bias: float = -1.0
    num_samples: int = 32
    """Field evaluations per ray, drawn from the density grid's rendering weights."""
    num_candidates: int = 128
    """Grid lookups per ray (stratified in the scene box) from which the samples are drawn."""
    uniform_share: float = 0.1
    """Share of a ray's samples spread uniformly over its whole length, so that matter the grid does
    not yet hold can be found (a ray with no grid weight is sampled uniformly anyway)."""
    empty_ray_samples: int = 8
    """Field evaluations per ray along which the grid holds (almost) nothing, spread uniformly: such
    rays (most of the background) only have to stay empty, and a cell the field fills shows up in
    the grid at its next refresh, after which its rays get ``num_samples`` again."""
    empty_ray_opacity: float = 0.01
    """A ray whose opacity in the grid is below this counts as empty."""
    grid_resolution: int = 64
    """Cells per side of the density grid over the scene box."""
    grid_update_every: int = 16
    """Training steps between refreshes of the density grid from the field."""
    grid_decay: float = 0.5
    """Each refresh keeps ``max(decay * old, new)``: how slowly an emptied cell fades. Fast here, so that
    the untrained field's haze (``softplus(-1)`` = 0.31 everywhere) leaves the grid within a few hundred
    steps and background rays become empty ones (at 0.9 a cell needs about 40 refreshes)."""
    grid_refresh_parts: int = 2
    """Each refresh after the first evaluates one of this many interleaved sets of cells (a cell is
    refreshed every ``grid_refresh_parts * grid_update_every`` steps) at that fraction of the cost."""
    precision: FieldPrecision = "auto"
    """Arithmetic of the field's products: ``auto`` is bfloat16 on a CPU with AMX tiles or AVX512-BF16
    (several times faster there) and float32 elsewhere; parameters, optimiser and rendering stay float32."""

    def __post_init__(self) -> None:
        # tyro builds the config from ns-train's flags and shows a ValueError raised here as a one-line
        # error naming the option; raised later, in populate_modules, it would be a traceback mid-setup.
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option outside its range."""
        if not 0.0 <= self.uniform_share < 1.0:
            raise ValueError(f"uniform-share must lie in [0, 1), got {self.uniform_share}")
        if self.num_samples < 1 or self.empty_ray_samples < 1:
            raise ValueError(f"num-samples and empty-ray-samples must be at least 1, got {self.num_samples}, "
                             f"{self.empty_ray_samples}")
        if not 0.0 <= self.empty_ray_opacity < 1.0:
            raise ValueError(f"empty-ray-opacity must lie in [0, 1), got {self.empty_ray_opacity}")
        if self.grid_update_every < 1:
            raise ValueError(f"grid-update-every must be at least 1, got {self.grid_update_every}")
        DensityGrid.check_settings(self.grid_resolution, self.grid_decay, self.grid_refresh_parts)
        resolve_precision(self.precision, torch.device("cpu"))


class SineNeRFLiteModel(StraightAlphaRGBA, Model):
    """A NeRF field rendered with samples placed by a ``DensityGrid`` of its own density."""

    config: SineNeRFLiteModelConfig

    def populate_modules(self) -> None:
        allow_checkpoint_globals()
        super().populate_modules()
        c = self.config
        c.check()  # a config changed after it was built (not through ns-train's flags) is checked again
        self.collider = AABBBoxCollider(self.scene_box)
        self.field = build_nerf_field(c)
        summary = factorise_mlps(self.field, NERF_MLPS, c.linear, c.rank, c.omega, c.factorise)
        CONSOLE.print(describe("field", summary, c.linear, c.rank, c.omega))
        self.density_grid = DensityGrid(self.scene_box.aabb, c.grid_resolution, c.grid_decay, c.grid_refresh_parts)
        self.sampler_candidates = UniformSampler(num_samples=c.num_candidates)
        # PDFSampler adds `histogram_padding` to every candidate's weight before normalising; a ray's
        # weights sum to its opacity (at most 1), so padding p over n candidates puts about
        # n p / (1 + n p) of the samples uniformly. Solve for the p that gives `uniform_share`.
        padding = c.uniform_share / (c.num_candidates * (1.0 - c.uniform_share))
        self.sampler_pdf = PDFSampler(num_samples=c.num_samples, include_original=False, histogram_padding=padding)
        self.renderer_rgb = RGBRenderer(background_color=c.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer()
        self.rgb_loss = MSELoss()
        self._field_dtype: Dict[str, torch.dtype] = {}
        self.busy_ray_share = 1.0

        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure
        with lpips_only_if_available():
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        # the U factors of the rank-k layers get their own optimiser (a higher learning rate, see
        # split_factors_u); a dense field has none, and nerfstudio skips a configured group it is not given
        rest, factors_u = split_factors_u(self.field)
        return {"fields": rest, "factors_u": factors_u} if factors_u else {"fields": rest}

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        def refresh_grid(step: int) -> None:
            device = self.density_grid.density.device
            with field_autocast(self.field_dtype(device), device):
                self.density_grid.update(self.field.density_fn)

        return [
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=self.config.grid_update_every,
                func=refresh_grid,
            )
        ]

    def field_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype of the field's products on ``device`` (resolved once per device type, and said)."""
        if device.type not in self._field_dtype:
            dtype = resolve_precision(self.config.precision, device)
            self._field_dtype[device.type] = dtype
            CONSOLE.print(f"field products on {device.type}: {str(dtype).removeprefix('torch.')} (precision {self.config.precision})")
        return self._field_dtype[device.type]

    def evaluate_field(self, ray_samples) -> Dict[FieldHeadNames, torch.Tensor]:
        """The field's outputs at ``ray_samples``, computed in the field's precision, returned in float32."""
        device = ray_samples.frustums.origins.device
        with field_autocast(self.field_dtype(device), device):
            outputs = self.field.forward(ray_samples)
        return {name: value.float() for name, value in outputs.items()}

    def sample(self, ray_bundle: RayBundle) -> List[Tuple[torch.Tensor, RaySamples]]:
        """The field's samples, as ``(rays, samples)`` groups (``rays`` a boolean mask over the bundle).

        Each ray reads the grid at ``num_candidates`` stratified points. Rays that hold matter in the
        grid get ``num_samples`` drawn from those rendering weights (a share spread uniformly); rays
        that are empty in the grid get ``empty_ray_samples`` spread uniformly, so that a NeRF's usual
        majority of background rays costs a quarter of the field evaluations."""
        candidates = self.sampler_candidates(ray_bundle)
        grid_density = self.density_grid(candidates.frustums.get_positions())
        weights = candidates.get_weights(grid_density)
        busy = weights.sum(dim=-2)[..., 0] >= self.config.empty_ray_opacity
        empty = ~busy
        self.busy_ray_share = float(busy.float().mean()) if busy.numel() else 0.0
        if bool(empty.all()):
            return [(empty, self.sampler_candidates(ray_bundle, num_samples=self.config.empty_ray_samples))]
        # drawn for the whole bundle, then selected: the candidates' spacing function (which the PDF
        # sampler uses) holds the whole bundle's near and far planes, so it cannot take a subset
        drawn = self.sampler_pdf(ray_bundle, candidates, weights)
        if bool(busy.all()):
            return [(busy, drawn)]
        return [
            (busy, drawn[busy]),
            (empty, self.sampler_candidates(ray_bundle[empty], num_samples=self.config.empty_ray_samples)),
        ]

    def density_in_box(self, ray_samples: RaySamples, density: torch.Tensor) -> torch.Tensor:
        """``density`` where a sample lies in the scene box, 0 outside it.

        A ray that misses the box gets ``far = near + 1e-6`` from ``AABBBoxCollider``, with ``near`` the
        last of its per-axis entry distances: hundreds of units away for a ray almost parallel to a face.
        Its samples read the field far outside anything it was trained on, and there float32 rounds
        ``far - near`` into negative deltas; a large density times a negative delta made the transmittance
        overflow and the backward pass NaN (plain low-rank, Duck, seed 1, step 2,140). Nothing outside the
        box is part of the scene, so such samples are empty; a ray inside the box is unchanged."""
        aabb = self.scene_box.aabb.to(density.device)
        slack = 1e-5 * (aabb[1] - aabb[0])  # samples on a face, rounded outward, still count as inside
        positions = ray_samples.frustums.get_positions()
        inside = ((positions >= aabb[0] - slack) & (positions <= aabb[1] + slack)).all(dim=-1, keepdim=True)
        return torch.where(inside, density, torch.zeros_like(density))

    def render(self, ray_samples: RaySamples) -> Dict[str, torch.Tensor]:
        """Colour, opacity and depth of the rays of ``ray_samples`` (one group of ``sample``)."""
        field_outputs = self.evaluate_field(ray_samples)
        density = self.density_in_box(ray_samples, field_outputs[FieldHeadNames.DENSITY])
        # a sample's length cannot be negative; rounding far from the origin can make it so (see density_in_box)
        ray_samples.deltas = ray_samples.deltas.clamp_min(0.0)
        weights = ray_samples.get_weights(density)
        return {
            "rgb": self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights),
            "depth": self.renderer_depth(weights, ray_samples),
        }

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, torch.Tensor]:
        groups = self.sample(ray_bundle)
        if len(groups) == 1:
            return self.render(groups[0][1])
        # two groups of rays rendered apart (their sample counts differ), put back in the bundle's order
        parts = [(rays, self.render(samples)) for rays, samples in groups]
        outputs = {}
        for name, value in parts[0][1].items():
            whole = value.new_empty((*ray_bundle.shape, *value.shape[1:]))
            for rays, rendered in parts:
                whole[rays] = rendered[name]
            outputs[name] = whole
        return outputs

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, torch.Tensor]:
        image = batch["image"].to(outputs["rgb"].device)
        pred, target = self.renderer_rgb.blend_background_for_loss_computation(
            pred_image=outputs["rgb"], pred_accumulation=outputs["accumulation"], gt_image=image
        )
        return {"rgb_loss": self.rgb_loss(target, pred)}

    def get_metrics_dict(self, outputs, batch) -> Dict[str, torch.Tensor]:
        image = self.renderer_rgb.blend_background(batch["image"].to(outputs["rgb"].device))
        # the share of rays that got full samples: how much of the batch the grid still sees as matter
        return {"psnr": self.psnr(outputs["rgb"], image), "busy_ray_share": self.busy_ray_share}

    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        image = self.renderer_rgb.blend_background(batch["image"].to(outputs["rgb"].device))
        rgb = outputs["rgb"]
        accumulation = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        # [H, W, C] -> [1, C, H, W] for the metrics
        image_nchw = torch.moveaxis(image, -1, 0)[None, ...]
        rgb_nchw = torch.moveaxis(rgb, -1, 0)[None, ...]
        metrics = {
            "psnr": float(self.psnr(image_nchw, rgb_nchw).item()),
            "ssim": float(self.ssim(image_nchw, rgb_nchw)),  # type: ignore[arg-type]
            "lpips": float(self.lpips(image_nchw, rgb_nchw)),
        }
        images = {"img": torch.cat([image, rgb], dim=1), "accumulation": accumulation, "depth": depth}
        return drop_missing_lpips(self, metrics), images


@dataclass
class LiteTrainerConfig(TrainerConfig):
    """nerfstudio's ``TrainerConfig`` whose learning-rate schedules span the run: the lite recipe decays
    two optimisers' rates (``fields`` and ``factors_u``) over the run, and a user who asks for another run
    length should not have to repeat it for each scheduler."""

    schedules_follow_iterations: bool = True
    """Set every optimiser's scheduler ``max-steps`` to ``--max-num-iterations`` (so a longer or shorter run
    decays its learning rates over its own length); ``False`` keeps each scheduler's own ``max-steps``."""

    def __post_init__(self) -> None:
        # tyro builds the config from ns-train's flags through this constructor, so the final run length is
        # known here; a config loaded from config.yml is not rebuilt and keeps what it saved
        if self.schedules_follow_iterations:
            for group in self.optimizers.values():
                scheduler = group.get("scheduler")
                if scheduler is not None and hasattr(scheduler, "max_steps"):
                    scheduler.max_steps = self.max_num_iterations


def nerf_lite_trainer_config(method_name: str = "sine-nerf-lite", linear: str = "sine") -> TrainerConfig:
    """The ``-lite`` recipe: ``nerf_trainer_config`` (the base of every NeRF variant) with the lite
    model and only the changes below, for small object scenes (``sine-fields data scene``, 64 px) on a
    CPU, where arithmetic per step is the budget.

    - one field, sampled through a density grid of its own density (``SineNeRFLiteModel``), instead of
      a coarse and a fine field: every field evaluation trains the rendered field and lies near a
      surface; the grid's lookups cost no network arithmetic;
    - samples only inside the scene box ([-1, 1]^3 for ``sine-fields data scene``), not between the
      near and far planes (2 to 6), and no density outside it (``SineNeRFLiteModel.density_in_box``);
    - a shallower field (4 x 256 base MLP without skip, 1 x 128 head; 5 factorised layers, 5.3 % of its
      dense twin at rank 5): on a CPU rays per step buy more than depth;
    - position encoded with 2^0 ... 2^4 (5 frequencies), 2 direction frequencies (the scenes are shaded
      view-independently): on the Duck at 64 px the sine field reached 20.2 dB after 300 steps with
      2^0 ... 2^6, 20.9 with 2^0 ... 2^5, 22.1 with 2^0 ... 2^4 and 21.7 with 2^0 ... 2^3 (one seed each);
      the sine weights add high frequencies of their own, and more encoded ones made its renders noisy;
    - 32 samples per ray drawn from 128 grid lookups, a tenth of them spread uniformly: with 16 the held-out
      PSNR fell back between steps 250 and 500 in two runs (the field filled with noise), with 32 it rose;
    - density ``softplus(raw - 1)`` (mip-NeRF's choice): every point starts nearly empty but with a
      gradient (a ReLU density can die into an all-white field, seen with sine low-rank layers);
    - Adam 5e-3 decaying exponentially to 2e-4 over the run (with 32 samples, 2e-3 reached 20.0 dB after
      300 steps where 5e-3 reached 20.4; with 16, 1e-2 reached 20.3 where 5e-3 reached 20.2), 1,024 rays
      per step (2,048 gained per step but not per second);
    - the ``U`` factors of the rank-k layers at 7x that rate, start and end (their own optimiser,
      ``factors_u``; ``split_factors_u`` says why): in screening runs of the 2,000-step recipe with one rate
      against the same with ``U`` at 7x (one thread each, beside each other), ``U`` x7 ended at 26.7 dB
      against 26.2 with seed 42, and at 27.1 against 21.6 with seed 7, where the one-rate run fell back from
      21.5 to 19.5 dB between steps 500 and 1,000; ``U`` x2.7 with ``V`` x0.37 reached 26.5 (seed 42);
    - the field's products in bfloat16 on a CPU with AMX tiles or AVX512-BF16 (``precision auto``,
      ``precision.py``; speed in ``benchmarks/field_precision.py``): in a screening run of 1,000 steps the
      held-out PSNR curve followed the float32 run's within 0.6 dB (20.4 / 22.9 / 24.1 against 21.0 / 23.0 / 24.2 at steps
      250 / 500 / 750, one seed each);
    - rays that the grid holds empty (opacity below 0.01: most of an object scene's background) get 8
      uniform field samples instead of 32: 23 % less time per step once half the rays are empty, and over
      1,800 steps the held-out PSNR was ahead of the same run with 32 samples on every ray at five of the
      six points to step 1,500 (25.6 against 24.4 dB there; one seed each, both runs beside each other);
    - the grid refreshed in two interleaved halves (each cell every 32 steps) with decay 0.5;
    - 2,300 steps: what fits in ten minutes on two idle cores with the above, with a margin (2,000 steps
      took 468 to 508 s; in screening with seed 42, 2,300 ended at 27.0 dB against 26.7 for 2,000, and
      all rates 1.4x higher, or ``U`` at 10x instead of 7x, were 2.2 and 1.4 dB behind at step 1,500;
      before the ``U`` rate, 2,500 steps took 754 s and reached 26.7 dB; omega 300 instead of 100 reached
      16.7 dB at step 250 where 100 reached 20.0).
    """
    base = nerf_trainer_config(method_name, linear)
    config = LiteTrainerConfig(**{f.name: getattr(base, f.name) for f in fields(base) if f.init})
    config.max_num_iterations = 2300
    # held-out PSNR over every eval image (about 3 s) each quarter of the run (ns-eval gives the last point):
    # a curve with its last-quarter point
    quarter = config.max_num_iterations // 4
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = quarter
    config.steps_per_save = quarter
    config.pipeline.datamanager.train_num_rays_per_batch = 1024
    config.pipeline.datamanager.eval_num_rays_per_batch = 4096
    config.pipeline.model = SineNeRFLiteModelConfig(linear=linear, eval_num_rays_per_chunk=4096)  # type: ignore[arg-type]
    config.optimizers = {
        name: {
            "optimizer": AdamOptimizerConfig(lr=FIELD_LR * scale, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=FIELD_LR_FINAL * scale,
                                                         max_steps=config.max_num_iterations),
        }
        for name, scale in (("fields", 1.0), ("factors_u", FACTORS_U_LR_SCALE))
    }
    return config
