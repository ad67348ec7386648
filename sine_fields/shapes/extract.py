"""Marching-cubes extraction of a field's level set: dense, or coarse-to-fine near the surface.

Both work on a grid of ``resolution + 1`` points per axis spanning the padded box, so their meshes
are directly comparable, and both count the field queries they make. Coarse-to-fine follows
Occupancy Networks' MISE: evaluate a coarse grid, then repeatedly halve the cell size. At every level
each grid value is either known (the field was queried there) or interpolated (trilinear from the
coarser level). Active cells are those whose corners cross the level, grown by one cell in all 26
directions; every corner of an active cell that is only interpolated is queried, which can reveal
new crossings and so new active cells, until all corners of all active cells are known. Then the
next level. A cell that is not active has all its corners on one side of the level, so marching
cubes makes triangles only from queried values. A thin feature that falls entirely between the
coarse grid points can still be missed, as in MISE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from sine_fields.shapes.ground_truth import BOX_HALF

__all__ = ["Extraction", "check_resolution", "evaluate", "evaluate_coarse_to_fine", "evaluate_dense", "extract",
           "extract_coarse_to_fine", "extract_dense", "grid_points", "mesh_from_values"]

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


def mesh_from_values(values: np.ndarray, resolution: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on ``(n, n, n)`` grid values (``evaluate_dense``'s layout, larger inside):
    ``(vertices, faces)`` in the normalised frame."""
    import mcubes

    # A grid that never crosses the level has no surface; mcubes would return an empty mesh anyway,
    # but checking first keeps the "empty" case explicit.
    if not (values.min() < level < values.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    # With the field larger inside, PyMCubes' triangles face outwards (positive volume; tested).
    vertices, faces = mcubes.marching_cubes(values, level)
    vertices = vertices * (2 * BOX_HALF / resolution) - BOX_HALF
    return vertices, faces.astype(np.int64)


def evaluate_dense(field: FieldFn, resolution: int, chunk: int = 262144, progress: Progress | None = None) -> np.ndarray:
    """The field at all ``(resolution + 1)^3`` grid points, as an ``(n, n, n) float32`` array indexed [x, y, z]."""
    n = resolution + 1
    index = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    values = np.empty(len(index), dtype=np.float32)
    for begin in range(0, len(index), chunk):
        values[begin : begin + chunk] = _evaluate_indices(field, index[begin : begin + chunk], resolution, chunk)
        if progress is not None:
            progress(min(begin + chunk, len(index)), len(index))
    return values.reshape(n, n, n)


def extract_dense(field: FieldFn, resolution: int, level: float = 0.0, chunk: int = 262144, progress: Progress | None = None) -> Extraction:
    """Evaluate all ``(resolution + 1)^3`` grid points, then run marching cubes.

    ``field`` must be larger inside than outside (occupancy logits; pass ``-sdf`` for distances),
    and ``level`` is in the same units.
    """
    return extract(field, resolution, "dense", level, chunk=chunk, progress=progress)


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
    """``(a+1, b+1, c+1)`` point values -> ``(a, b, c)`` bool: cells whose 8 corners are not all on one side."""
    inside = values > level
    any_inside = np.zeros(tuple(n - 1 for n in inside.shape), dtype=bool)
    all_inside = np.ones_like(any_inside)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                corner = inside[i : i + any_inside.shape[0], j : j + any_inside.shape[1], k : k + any_inside.shape[2]]
                any_inside |= corner
                all_inside &= corner
    return any_inside & ~all_inside


def _grow(cells: np.ndarray) -> np.ndarray:
    """Dilate a 3D bool array by one cell with 26-connectivity (the 3x3x3 cube), one axis at a time."""
    grown = cells.copy()
    for axis in range(3):
        source = grown.copy()
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        grown[tuple(lower)] |= source[tuple(upper)]
        grown[tuple(upper)] |= source[tuple(lower)]
    return grown


def _corners(cells: np.ndarray) -> np.ndarray:
    """``(a, b, c)`` bool cells -> ``(a+1, b+1, c+1)`` bool: the grid points that are a corner of one of them."""
    points = np.zeros(tuple(n + 1 for n in cells.shape), dtype=bool)
    a, b, c = cells.shape
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                points[i : i + a, j : j + b, k : k + c] |= cells
    return points


def _upsample(values: np.ndarray) -> np.ndarray:
    """``(n+1)^3 -> (2n+1)^3`` trilinear with aligned corners: exact at old points, midpoints between."""
    for axis in range(3):
        shape = list(values.shape)
        shape[axis] = 2 * shape[axis] - 1
        fine = np.empty(shape, dtype=values.dtype)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis], odd[axis] = slice(None, None, 2), slice(1, None, 2)
        head = [slice(None)] * 3
        tail = [slice(None)] * 3
        head[axis], tail[axis] = slice(None, -1), slice(1, None)
        fine[tuple(even)] = values
        fine[tuple(odd)] = 0.5 * (values[tuple(head)] + values[tuple(tail)])
        values = fine
    return values


# Newly queried points change the crossing state only of cells that have them as a corner, and the
# active state one cell further; their new corners lie within 2 points of a queried point. A box 3
# points wider than the queried points on every side therefore holds every change of one pass.
_BOX_MARGIN = 3


def _query_active_corners(
    field: FieldFn, values: np.ndarray, known: np.ndarray, resolution: int, level: float, chunk: int
) -> int:
    """Query every unknown corner of every active cell, repeatedly, until none is left; returns the count.

    ``values`` and ``known`` (both ``(resolution + 1)^3``) are updated in place.
    """
    queries = 0
    lower = np.zeros(3, dtype=np.int64)
    upper = np.array(values.shape, dtype=np.int64)  # exclusive
    while True:
        box = tuple(slice(lo, hi) for lo, hi in zip(lower, upper))
        active = _grow(_crossing_cells(values[box], level))
        missing = _corners(active) & ~known[box]
        new = np.argwhere(missing)
        if len(new) == 0:
            return queries
        new += lower
        values[tuple(new.T)] = _evaluate_indices(field, new, resolution, chunk)
        known[tuple(new.T)] = True
        queries += len(new)
        lower = np.maximum(new.min(axis=0) - _BOX_MARGIN, 0)
        upper = np.minimum(new.max(axis=0) + _BOX_MARGIN + 1, values.shape)


def evaluate_coarse_to_fine(
    field: FieldFn, resolution: int, level: float = 0.0, initial_resolution: int = 32, chunk: int = 262144,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """The ``(resolution + 1)^3`` grid values coarse-to-fine meshes (queried near the level crossing,
    trilinear from coarser levels elsewhere) and the number of field queries made.

    ``resolution`` must be ``initial_resolution * 2^m``.
    """
    check_resolution(resolution, "coarse-to-fine", initial_resolution)
    res = initial_resolution
    index = np.stack(np.meshgrid(*(np.arange(res + 1),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    values = _evaluate_indices(field, index, res, chunk).reshape((res + 1,) * 3)
    known = np.ones(values.shape, dtype=bool)
    queries = len(index)
    levels = int(np.log2(resolution // initial_resolution))
    while res < resolution:
        res *= 2
        values = _upsample(values)
        fine_known = np.zeros(values.shape, dtype=bool)
        fine_known[::2, ::2, ::2] = known  # the old points keep what they were: queried or interpolated
        known = fine_known
        queries += _query_active_corners(field, values, known, res, level, chunk)
        if progress is not None:
            progress(int(np.log2(res // initial_resolution)), levels)
    return values, queries


def extract_coarse_to_fine(
    field: FieldFn, resolution: int, level: float = 0.0, initial_resolution: int = 32, chunk: int = 262144,
    progress: Progress | None = None,
) -> Extraction:
    """MISE-style extraction: same grid and conventions as ``extract_dense``, far fewer queries.

    ``resolution`` must be ``initial_resolution * 2^m``.
    """
    return extract(field, resolution, "coarse-to-fine", level, initial_resolution=initial_resolution, chunk=chunk,
                   progress=progress)


def evaluate(
    field: FieldFn, resolution: int, method: Literal["dense", "coarse-to-fine"] = "coarse-to-fine", level: float = 0.0,
    **kwargs,
) -> tuple[np.ndarray, int]:
    """The grid values ``extract`` would mesh with ``method``, and the field queries made: for callers that
    change the values (fill, filter) before ``mesh_from_values``."""
    if method == "dense":
        values = evaluate_dense(field, resolution, **kwargs)
        return values, values.size
    if method == "coarse-to-fine":
        return evaluate_coarse_to_fine(field, resolution, level, **kwargs)
    raise ValueError(f"method must be 'dense' or 'coarse-to-fine', got {method!r}")


def extract(
    field: FieldFn, resolution: int, method: Literal["dense", "coarse-to-fine"] = "coarse-to-fine", level: float = 0.0, **kwargs
) -> Extraction:
    """``evaluate`` with ``method`` (see ``extract_dense`` and ``extract_coarse_to_fine``), then marching cubes."""
    start = time.perf_counter()
    values, queries = evaluate(field, resolution, method, level, **kwargs)
    vertices, faces = mesh_from_values(values, resolution, level)
    return Extraction(vertices, faces, resolution, method, level, queries, time.perf_counter() - start)
