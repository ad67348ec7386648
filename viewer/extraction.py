"""Re-extract a run's mesh at another resolution or level, with progress and cancellation.

The meshing itself is the shape pipeline's (``sine_fields.shapes.extract``, coarse-to-fine or
dense); this wraps the field so that every chunk of points it evaluates advances the viewer's
progress bar and checks for a shutdown, which a 256^3 grid needs (tens of seconds on two cores).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import trimesh

__all__ = ["Cancelled", "Progress", "re_extract"]

# Coarse-to-fine starts at this grid (sine_fields.shapes.extract's default) and doubles it.
INITIAL_RESOLUTION = 32


class Cancelled(Exception):
    """The extraction was stopped through its ``cancel`` event (the server is shutting down)."""


@dataclass
class Progress:
    fraction: float
    """0..1, an estimate for coarse-to-fine (see ``re_extract``)."""
    queries: int
    """Field queries so far."""


def re_extract(
    field,
    resolution: int,
    method: str,
    level: float | None,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[trimesh.Trimesh, int]:
    """Mesh a ``ShapeField``'s level set; returns the mesh (normalised frame) and the field queries.

    Args:
        field: a ``ShapeField`` (occupancy logits or signed distances).
        resolution: grid cells per axis (coarse-to-fine: 32 * 2^m).
        method: ``coarse-to-fine`` or ``dense``.
        level: a probability for occupancy fields, a distance for SDF fields; None is the surface.
        progress: called after every evaluated chunk. Dense: the exact fraction of grid points.
            Coarse-to-fine: the fraction of refinement levels done, where a level counts as much
            as the new points it evaluates (the work grows about 4x per level, with the surface area).
        cancel: when set, evaluation stops before the next chunk with ``Cancelled``.

    Raises:
        ValueError: a level outside (0, 1) for occupancy or a resolution coarse-to-fine cannot reach
            (``UserError`` from the pipeline for the level, whose message is one line).
    """
    from sine_fields.shapes.extract import extract

    # The pipeline's extraction wants values that grow inside: the field's inside_values, compared
    # with its level oriented the same way.
    value = field.config.inside_sign * field.config.raw_level(level)
    n = resolution + 1
    counted = {"queries": 0, "done": 0.0}
    levels = max(1, round(math.log2(resolution / INITIAL_RESOLUTION))) if method == "coarse-to-fine" else 1

    def report(fraction: float) -> None:
        if progress is not None:
            progress(Progress(min(1.0, fraction), counted["queries"]))

    def evaluate(points: np.ndarray) -> np.ndarray:
        if cancel is not None and cancel.is_set():
            raise Cancelled("extraction cancelled")
        values = field.inside_values(points)
        counted["queries"] += len(points)
        if method == "dense":
            report(counted["queries"] / n**3)
        return values

    def level_done(*_) -> None:
        # Coarse-to-fine calls back once per refinement; count the calls rather than read the
        # arguments (their meaning is the pipeline's business). Level i counts 4^i (surface work).
        counted["done"] += 1
        report((4 ** counted["done"] - 1) / (4**levels - 1))

    kwargs = {"chunk": 65536, "progress": level_done if method == "coarse-to-fine" else None}
    result = extract(evaluate, resolution, method, level=value, **kwargs)
    report(1.0)
    mesh = trimesh.Trimesh(result.vertices, result.faces, process=False)
    return mesh, result.field_queries
