"""A trained nerfstudio model's density as a plain function of points, and the level at which to mesh it.

Three things ``sine-fields nerf-mesh`` needs from a loaded pipeline, kept apart from the command:

- ``density_field``: the model's field that is rendered (``field`` for nerfacto-like models,
  ``field_fine`` for vanilla NeRF), i.e. a nerfstudio ``Field``, whose ``density_fn`` gives the
  density at points;
- ``SceneFrame``: the dataparser's transform, so that meshes go back to the dataset's own frame (the
  frame of ``transforms.json`` and of a ground-truth ``mesh.ply``);
- ``auto_level``: the density at which the rendered opacity of training rays reaches one half (or
  another share, ``opacity``).

Why that level: volume rendering composites colour with weights ``T_i (1 - exp(-sigma_i delta_i))``,
where the transmittance ``T`` falls from 1 to 0 as a ray passes through a surface. A surface is where a
ray's accumulated opacity ``1 - T`` crosses 0.5 (the median of the ray's weight distribution, which is
also where an opaque surface's depth is usually read off). Marching along training rays with a
step ``delta``, each step adds ``sigma delta`` to the optical depth; the ray crosses opacity 0.5
within the step where the optical depth first reaches ``ln 2``, and the density of that step is the
density the model puts at its surface. The median over the rays that cross is the level: a density
iso-surface at that value passes where the model's own renders see the surface, whatever scale the
model's densities happen to have (they differ by orders of magnitude between models and runs).

A NeRF's density does not jump at a surface: it ramps up over a few cells, and the rendered opacity
reaches one half part-way up the ramp, inside the object. ``opacity`` below one half reads the level
where the ramp starts instead (optical depth ``-ln(1 - opacity)``); docs/radiance-fields.md measures
which share matches the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["DEFAULT_AUTO_OPACITY", "DEFAULT_SMOOTHED_AUTO_OPACITY", "DENSITY_FIELDS", "AutoLevel", "SceneFrame", "auto_level",
           "box_intersections", "default_auto_opacity", "density_field", "density_function"]

# Attributes under which nerfstudio models keep the field they render, in the order tried: nerfacto,
# mip-NeRF and most others call it ``field``; vanilla NeRF renders ``field_fine`` (``field_coarse``
# only places the fine samples).
DENSITY_FIELDS = ("field", "field_fine")
# The rendered opacity whose crossing gives the auto level when none is asked for: on the unsmoothed
# meshes of both scenes in docs/radiance-fields.md (benchmarks/nerf_mesh.py) 0.1 scored better against the
# ground truth than 0.2 and 0.5 (0.5 is the median depth, inside the objects). A Gaussian filter spreads the
# density's ramp outwards, so a low opacity is reached outside the surface: on every smoothed mesh there
# (three Duck runs, one Spider run) 0.2 scored better than 0.1, so it is the default with --smooth.
DEFAULT_AUTO_OPACITY = 0.1
DEFAULT_SMOOTHED_AUTO_OPACITY = 0.2


def default_auto_opacity(smooth: float) -> float:
    """The auto level's opacity when none is asked for, for a density filtered with ``smooth`` (0: none)."""
    return DEFAULT_SMOOTHED_AUTO_OPACITY if smooth > 0 else DEFAULT_AUTO_OPACITY


def opacity_depth(opacity: float) -> float:
    """Optical depth ``tau`` at which a ray's opacity ``1 - exp(-tau)`` reaches ``opacity``."""
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"opacity must lie strictly between 0 and 1, got {opacity}")
    return -math.log1p(-opacity)

DensityFn = Callable[[np.ndarray], np.ndarray]
"""``(n, 3)`` points in the model's frame -> ``(n,)`` float32 densities."""


def density_field(model: nn.Module) -> tuple[str, nn.Module]:
    """``(attribute name, field)`` of the model's rendered density field.

    Raises ``ValueError`` naming the model class when it has none (a Gaussian-splatting model, say).
    """
    from nerfstudio.fields.base_field import Field

    for name in DENSITY_FIELDS:
        candidate = getattr(model, name, None)
        if isinstance(candidate, Field):
            return name, candidate
    raise ValueError(
        f"{type(model).__name__} has no density field (looked for a nerfstudio Field named "
        f"{' or '.join(DENSITY_FIELDS)}); nerf-mesh needs a model that renders a density"
    )


def _device_of(module: nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def density_function(field: nn.Module, chunk: int = 65536) -> DensityFn:
    """The field's density as a numpy function, evaluated in chunks without gradients on the field's device."""
    device = _device_of(field)

    def evaluate(points: np.ndarray) -> np.ndarray:
        out = np.empty(len(points), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(points), chunk):
                positions = torch.as_tensor(np.asarray(points[start : start + chunk], dtype=np.float32), device=device)
                density = field.density_fn(positions)
                out[start : start + chunk] = density.reshape(-1).float().cpu().numpy()
        # A NaN would make marching cubes silently drop cells; say it is nothing there instead of guessing.
        return np.nan_to_num(out, nan=0.0, posinf=np.finfo(np.float32).max, neginf=0.0)

    return evaluate


@dataclass(frozen=True)
class SceneFrame:
    """The dataparser's map from the dataset frame to the model frame: ``model = scale * (T @ [p; 1])``.

    ``transform`` is nerfstudio's ``dataparser_transform`` (3 x 4) and ``scale`` its ``dataparser_scale``.
    """

    transform: np.ndarray
    scale: float

    @classmethod
    def of(cls, dataparser_outputs) -> "SceneFrame":
        transform = np.asarray(torch.as_tensor(dataparser_outputs.dataparser_transform).cpu(), dtype=np.float64)
        return cls(transform.reshape(3, 4), float(dataparser_outputs.dataparser_scale))

    def _matrix(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3] = self.transform
        return matrix

    def to_model(self, points: np.ndarray) -> np.ndarray:
        """``(n, 3)`` dataset-frame points -> model-frame points."""
        points = np.asarray(points, dtype=np.float64)
        return self.scale * (points @ self.transform[:, :3].T + self.transform[:, 3])

    def to_dataset(self, points: np.ndarray) -> np.ndarray:
        """``(n, 3)`` model-frame points -> dataset-frame points (the inverse of ``to_model``)."""
        inverse = np.linalg.inv(self._matrix())
        points = np.asarray(points, dtype=np.float64) / self.scale
        return points @ inverse[:3, :3].T + inverse[:3, 3]

    def to_dict(self) -> dict:
        return {"dataparser_transform": self.transform.tolist(), "dataparser_scale": self.scale}


def box_intersections(origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test: ``(n,)`` entry and exit distances of rays ``origins + t directions`` with the box
    ``aabb = [[min], [max]]``; entry is clamped at 0 (a camera inside the box), and a ray that misses
    has exit <= entry."""
    with torch.no_grad():
        safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        t0 = (aabb[0] - origins) / safe
        t1 = (aabb[1] - origins) / safe
        near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
        far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far


@dataclass
class AutoLevel:
    """The level ``auto_level`` chose and the evidence for it."""

    level: float
    """Median density at the opacity crossing of the rays that cross."""
    rays: int
    """Training rays marched (those that hit the scene box)."""
    crossing: int
    """Rays whose opacity reaches ``opacity`` inside the scene box."""
    step: float
    """Marching step in model units."""
    quantiles: dict[str, float]
    """10 %, 50 % and 90 % quantiles of the crossing densities (their spread)."""
    queries: int
    """Density evaluations made."""
    opacity: float = DEFAULT_AUTO_OPACITY
    """The rendered opacity whose crossing gives the level."""

    def info(self) -> dict:
        return {"level": self.level, "opacity": self.opacity, "rays": self.rays, "crossing_rays": self.crossing,
                "step": self.step,
                "crossing_density_quantiles": self.quantiles, "field_queries": self.queries}


def crossing_densities(density: torch.Tensor, step: float, opacity: float = DEFAULT_AUTO_OPACITY) -> torch.Tensor:
    """``(rays, samples)`` densities at equal steps along rays -> ``(rays,)`` density of the step where
    the optical depth first reaches ``-ln(1 - opacity)`` (ln 2 for opacity 0.5); NaN for rays that never
    get there.

    The optical depth over a step of constant density ``sigma`` grows by ``sigma * step``, so the
    crossing lies inside the first step whose cumulative depth reaches it, at that step's density.
    """
    depth = torch.cumsum(density * step, dim=1)
    reached = depth >= opacity_depth(opacity)
    first = reached.float().argmax(dim=1)
    values = density.gather(1, first[:, None])[:, 0]
    return torch.where(reached.any(dim=1), values, torch.full_like(values, float("nan")))


def auto_level(
    density: DensityFn, cameras, aabb: np.ndarray, step: float, rays: int = 4096, seed: int = 0,
    progress: Callable[[int, int], None] | None = None, opacity: float = DEFAULT_AUTO_OPACITY,
) -> AutoLevel:
    """The density at which rendered opacity crosses ``opacity`` along training rays (see the module
    docstring).

    Args:
        density: points in the model frame -> densities.
        cameras: nerfstudio ``Cameras`` of the training set (model frame).
        aabb: ``(2, 3)`` scene box in the model frame; rays are marched between their entry and exit.
        step: marching step in model units (a fraction of an extraction cell is plenty).
        rays: how many training pixels to march, drawn uniformly over cameras and pixels.
        seed: seed of the pixel draw.
        opacity: the rendered opacity whose crossing is read (0.5: the median of the rendering weights;
            the default reads where the density ramp starts).

    Raises ``ValueError`` when no ray reaches ``opacity`` (the model renders nothing in the box).
    """
    opacity_depth(opacity)  # a bad share fails before any marching
    generator = torch.Generator().manual_seed(seed)
    count = len(cameras)
    index = torch.randint(0, count, (rays,), generator=generator)
    heights = cameras.height.reshape(-1)[index].float()
    widths = cameras.width.reshape(-1)[index].float()
    # Pixel centres, as nerfstudio's ray generators cast them: (row, column) + 0.5.
    rows = torch.floor(torch.rand(rays, generator=generator) * heights) + 0.5
    columns = torch.floor(torch.rand(rays, generator=generator) * widths) + 0.5
    with torch.no_grad():
        bundle = cameras.generate_rays(camera_indices=index[:, None], coords=torch.stack([rows, columns], dim=-1))
    origins, directions = bundle.origins.reshape(-1, 3).cpu().double(), bundle.directions.reshape(-1, 3).cpu().double()
    directions = directions / directions.norm(dim=-1, keepdim=True)
    near, far = box_intersections(origins, directions, torch.as_tensor(aabb, dtype=torch.float64))
    hit = far > near
    origins, directions, near, far = origins[hit], directions[hit], near[hit], far[hit]
    if len(origins) == 0:
        raise ValueError("no training ray passes through the scene box")
    samples = max(int(math.ceil(float((far - near).max()) / step)), 1)
    # Midpoints of equal steps from each ray's entry; steps past the exit count as empty (density 0).
    t = near[:, None] + (torch.arange(samples, dtype=torch.float64) + 0.5) * step
    inside = t < far[:, None]
    crossing = torch.empty(len(origins), dtype=torch.float64)
    queries = 0
    batch = max(1, 262144 // samples)
    for start in range(0, len(origins), batch):
        stop = start + batch
        points = origins[start:stop, None] + t[start:stop, :, None] * directions[start:stop, None]
        mask = inside[start:stop]
        values = torch.zeros(mask.shape, dtype=torch.float64)
        values[mask] = torch.from_numpy(density(points[mask].numpy().astype(np.float32))).double()
        queries += int(mask.sum())
        crossing[start:stop] = crossing_densities(values, step, opacity)
        if progress is not None:
            progress(min(stop, len(origins)), len(origins))
    found = crossing[~torch.isnan(crossing)]
    if len(found) == 0:
        raise ValueError(f"none of {len(origins)} training rays reaches opacity {opacity:g} inside the scene box: "
                         "the model renders no surface there")
    q10, q50, q90 = (float(v) for v in torch.quantile(found, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)))
    return AutoLevel(level=q50, rays=len(origins), crossing=len(found), step=float(step),
                     quantiles={"q10": q10, "q50": q50, "q90": q90}, queries=queries, opacity=opacity)
