"""Colour maps for the viewer: error per vertex, field values on the slice plane, the colour bar.

All functions take plain numpy arrays and return ``uint8`` RGB, so they are tested without a browser.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ERROR_CMAP", "colour_bar_image", "error_colours", "field_colours", "to_rgb"]

# Perceptually uniform and readable for colour-blind users; low error is dark, high error is yellow.
ERROR_CMAP = "viridis"
# Diverging map for field values: blue inside, red outside, white at the surface level.
FIELD_CMAP = "RdBu_r"


def to_rgb(values: np.ndarray, cmap: str) -> np.ndarray:
    """``(...)`` values in [0, 1] -> ``(..., 3)`` uint8 RGB through a matplotlib colour map."""
    from matplotlib import colormaps  # imported on use: matplotlib costs ~0.3 s

    # np.asarray: a scalar input comes back as a tuple
    rgba = np.asarray(colormaps[cmap](np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def error_colours(distances: np.ndarray, vmax: float) -> np.ndarray:
    """``(n,)`` distances to the ground truth -> ``(n, 3)`` uint8; ``vmax`` and above get the top colour."""
    if vmax <= 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    return to_rgb(np.asarray(distances) / vmax, ERROR_CMAP)


def field_colours(values: np.ndarray, target: str, level: float, half_range: float) -> np.ndarray:
    """Field values -> uint8 RGB, white at ``level`` (the surface), blue inside, red outside.

    ``values`` are occupancy probabilities in [0, 1] (level a probability) or signed distances
    (level a distance, negative inside). ``half_range`` is the value distance from the level that
    reaches full colour.
    """
    values = np.asarray(values, dtype=np.float64)
    # Inside is high probability for occupancy but negative distance for SDF: flip so inside is blue.
    signed = (level - values) if target == "occupancy" else (values - level)
    return to_rgb(0.5 + 0.5 * signed / half_range, FIELD_CMAP)


def colour_bar_image(cmap: str = ERROR_CMAP, width: int = 256, height: int = 16) -> np.ndarray:
    """``(height, width, 3)`` uint8 horizontal gradient of ``cmap`` from 0 (left) to 1 (right)."""
    row = to_rgb(np.linspace(0.0, 1.0, width), cmap)
    return np.broadcast_to(row, (height, width, 3)).copy()
