"""A plane through the field: sample it on a pixel grid and place the image in the scene.

The plane is perpendicular to one axis at an offset along it, covering the padded box
``[-BOX_HALF, BOX_HALF]^2``. Pixel ``(row, col)`` maps to a 3D point such that the image, shown by
viser's ``add_image`` at ``slice_pose``, lies over the points it was sampled at. viser 0.2.7 draws
the image as a quad in its local xy plane turned by 180 degrees about x (the camera convention):
columns run along local +x and rows run downwards along local +y (client ``MessageHandler.tsx``).
"""

from __future__ import annotations

import numpy as np

from sine_fields.shapes.ground_truth import BOX_HALF

__all__ = ["AXES", "slice_points", "slice_pose"]

AXES = ("x", "y", "z")
# For each normal axis: the world axes that the image's columns (local x) and rows (local y, up) run along.
_IN_PLANE = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}
# Quaternions (w, x, y, z) taking local x, y, z to the world axes (u, v, normal) of each plane:
# x-normal: local x->world y, local y->world z, local z->world x (rotation about (1,1,1) by 120 degrees).
# y-normal: local x->world z, local y->world x, local z->world y (the inverse rotation, -120 degrees).
# z-normal: identity.
_WXYZ = {"x": (0.5, 0.5, 0.5, 0.5), "y": (0.5, -0.5, -0.5, -0.5), "z": (1.0, 0.0, 0.0, 0.0)}


def slice_points(axis: str, offset: float, resolution: int) -> np.ndarray:
    """``(resolution, resolution, 3)`` float32 points of the plane, indexed ``[row, col]`` like the image."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    u_axis, v_axis = _IN_PLANE[axis]
    # Pixel centres, so that the image covers the box exactly.
    ticks = (np.arange(resolution) + 0.5) / resolution * (2 * BOX_HALF) - BOX_HALF
    points = np.zeros((resolution, resolution, 3), dtype=np.float32)
    points[..., AXES.index(axis)] = offset
    points[..., u_axis] = ticks[None, :]
    points[..., v_axis] = ticks[:, None]  # rows run along local +y (see the module docstring)
    return points


def slice_pose(axis: str, offset: float) -> tuple[tuple[float, float, float, float], tuple[float, float, float]]:
    """``(wxyz, position)`` for viser's ``add_image`` so the quad lies on the sampled plane."""
    position = [0.0, 0.0, 0.0]
    position[AXES.index(axis)] = float(offset)
    return _WXYZ[axis], tuple(position)
