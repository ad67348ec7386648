"""Marching-cubes extraction of a field's level set: dense, or coarse-to-fine near the surface.

Both work on a grid of ``resolution + 1`` points per axis spanning the padded box, so their meshes
are directly comparable, and both count the field queries they make. Coarse-to-fine follows
Occupancy Networks' MISE: evaluate a coarse grid, then repeatedly halve the cell size, evaluating the
field only at new points inside cells where the level is crossed (plus a one-cell margin); every other
new point takes the trilinear value of its coarse cell, which lies on the same side of the level.
A thin feature that falls entirely inside one coarse cell can be missed, as in MISE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from scipy import ndimage

from sine_fields.shapes.ground_truth import BOX_HALF

__all__ = ["Extraction", "check_resolution", "extract", "extract_coarse_to_fine", "extract_dense", "grid_points"]

FieldFn = Callable[[np.ndarray], np.ndarray]
"""``(n, 3) float32`` normalised points -> ``(n,)`` field values."""
Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)``: grid chunks (dense) or refinement levels (coarse-to-fine)."""


@dataclass
class Extraction:
    """A mesh in the normalised frame and what it cost."""

    vertices: np.ndarray
    """``(V, 3) float64``."""
    faces: np.ndarray
    """``(F, 3) int64``."""
    resolution: int
    method: str
    level: float
    field_queries: int
    seconds: float

    def info(self) -> dict:
        return {"resolution": self.resolution, "method": self.method, "level": self.level,
                "field_queries": self.field_queries, "seconds": round(self.seconds, 3),
                "vertices": len(self.vertices), "faces": len(self.faces)}


def grid_points(index: np.ndarray, resolution: int) -> np.ndarray:
    """``(n, 3)`` integer grid indices in ``[0, resolution]`` -> ``(n, 3) float32`` points in the padded box."""
    return (index.astype(np.float32) * (2 * BOX_HALF / resolution) - BOX_HALF).astype(np.float32)


def _evaluate_indices(field: FieldFn, index: np.ndarray, resolution: int, chunk: int) -> np.ndarray:
    out = np.empty(len(index), dtype=np.float32)
    for start in range(0, len(index), chunk):
        out[start : start + chunk] = field(grid_points(index[start : start + chunk], resolution))
    return out


def _mesh_from_grid(values: np.ndarray, resolution: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    import mcubes

    # A grid that never crosses the level has no surface; mcubes would return an empty mesh anyway,
    # but checking first keeps the "empty" case explicit.
    if not (values.min() < level < values.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    # With the field larger inside, PyMCubes' triangles face outwards (positive volume; tested).
    vertices, faces = mcubes.marching_cubes(values, level)
    vertices = vertices * (2 * BOX_HALF / resolution) - BOX_HALF
    return vertices, faces.astype(np.int64)


def extract_dense(field: FieldFn, resolution: int, level: float = 0.0, chunk: int = 262144, progress: Progress | None = None) -> Extraction:
    """Evaluate all ``(resolution + 1)^3`` grid points, then run marching cubes.

    ``field`` must be larger inside than outside (occupancy logits; pass ``-sdf`` for distances),
    and ``level`` is in the same units.
    """
    start = time.perf_counter()
    n = resolution + 1
    index = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    values = np.empty(len(index), dtype=np.float32)
    for begin in range(0, len(index), chunk):
        values[begin : begin + chunk] = _evaluate_indices(field, index[begin : begin + chunk], resolution, chunk)
        if progress is not None:
            progress(min(begin + chunk, len(index)), len(index))
    vertices, faces = _mesh_from_grid(values.reshape(n, n, n), resolution, level)
    return Extraction(vertices, faces, resolution, "dense", level, len(index), time.perf_counter() - start)


def check_resolution(resolution: int, method: str, initial_resolution: int = 32) -> None:
    """Raise ``ValueError`` unless ``method`` can extract at ``resolution`` (coarse-to-fine doubles from 32)."""
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    steps = resolution // initial_resolution
    if method == "coarse-to-fine" and (resolution % initial_resolution or steps < 1 or steps & (steps - 1)):
        raise ValueError(
            f"coarse-to-fine needs resolution = {initial_resolution} * 2^m (e.g. 64, 128, 256, 512), got {resolution}"
        )


def _crossing_cells(values: np.ndarray, level: float) -> np.ndarray:
    """``(N+1)^3`` point values -> ``N^3`` bool: cells whose 8 corners are not all on one side."""
    inside = values > level
    corners = [inside[i : i + inside.shape[0] - 1, j : j + inside.shape[1] - 1, k : k + inside.shape[2] - 1]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    return np.logical_or.reduce(corners) & ~np.logical_and.reduce(corners)


def extract_coarse_to_fine(
    field: FieldFn, resolution: int, level: float = 0.0, initial_resolution: int = 32, chunk: int = 262144,
    progress: Progress | None = None,
) -> Extraction:
    """MISE-style extraction: same grid and conventions as ``extract_dense``, far fewer queries.

    ``resolution`` must be ``initial_resolution * 2^m``.
    """
    check_resolution(resolution, "coarse-to-fine", initial_resolution)
    start = time.perf_counter()
    res = initial_resolution
    index = np.stack(np.meshgrid(*(np.arange(res + 1),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    values = _evaluate_indices(field, index, res, chunk).reshape((res + 1,) * 3)
    queries = len(index)
    while res < resolution:
        # Cells to refine: those crossing the level, grown by one cell so a surface that just
        # leaves a crossing cell is still resolved at the finer level.
        active = ndimage.binary_dilation(_crossing_cells(values, level), iterations=1)
        fine_res = res * 2
        # Trilinear upsampling with aligned corners: exact at old points, interpolated between.
        fine = ndimage.zoom(values, (fine_res + 1) / (res + 1), order=1, grid_mode=False)
        # Fine points touched by an active coarse cell: each coarse cell spans 3 fine points per axis.
        fine_cells = np.repeat(np.repeat(np.repeat(active, 2, 0), 2, 1), 2, 2)
        touched = np.zeros((fine_res + 1,) * 3, dtype=bool)
        for i in (0, 1):
            for j in (0, 1):
                for k in (0, 1):
                    touched[i : i + fine_res, j : j + fine_res, k : k + fine_res] |= fine_cells
        touched[::2, ::2, ::2] = False  # old grid points are known already
        new = np.argwhere(touched)
        if len(new):
            fine[touched] = _evaluate_indices(field, new, fine_res, chunk)
        queries += len(new)
        values, res = fine, fine_res
        if progress is not None:
            progress(int(np.log2(res // initial_resolution)), int(np.log2(resolution // initial_resolution)))
    vertices, faces = _mesh_from_grid(values, resolution, level)
    return Extraction(vertices, faces, resolution, "coarse-to-fine", level, queries, time.perf_counter() - start)


def extract(
    field: FieldFn, resolution: int, method: Literal["dense", "coarse-to-fine"] = "coarse-to-fine", level: float = 0.0, **kwargs
) -> Extraction:
    """Dispatch on ``method``; see ``extract_dense`` and ``extract_coarse_to_fine``."""
    if method == "dense":
        return extract_dense(field, resolution, level, **kwargs)
    if method == "coarse-to-fine":
        return extract_coarse_to_fine(field, resolution, level, **kwargs)
    raise ValueError(f"method must be 'dense' or 'coarse-to-fine', got {method!r}")
