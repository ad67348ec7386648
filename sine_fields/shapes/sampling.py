"""Seeded point sets: training samples and the fixed evaluation set for IoU.

Both mix points uniform in the padded box (the shape's overall volume) with points jittered off
the surface (where the decision boundary lies and where most of the error is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sine_fields.shapes.ground_truth import BOX_HALF, GroundTruth

__all__ = ["NEAR_SIGMAS", "EVAL_NEAR_SIGMA", "PointSet", "evaluation_points", "near_surface_points", "training_points", "uniform_points"]

# Gaussian offsets off the surface for training, in units of the shape's longest side: a wide band
# and a narrow one, in equal shares (DeepSDF-style two-scale sampling).
NEAR_SIGMAS = (0.01, 0.002)
# Offset of the near-surface IoU points (a near-surface share, counted separately).
EVAL_NEAR_SIGMA = 0.01
# Seed of the evaluation set: fixed, so every run of a mesh is scored on the same points.
EVAL_SEED = 1234


@dataclass
class PointSet:
    """``points (n, 3) float32`` in the normalised frame with ``occupancy (n,) bool`` and ``sdf (n,) float32``."""

    points: np.ndarray
    occupancy: np.ndarray
    sdf: np.ndarray

    @classmethod
    def label(cls, gt: GroundTruth, points: np.ndarray) -> "PointSet":
        points = points.astype(np.float32)
        occupancy = gt.occupancy(points)
        distance = gt.unsigned_distance(points)
        return cls(points, occupancy, np.where(occupancy, -distance, distance).astype(np.float32))


def uniform_points(count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, 3)`` points uniform in the padded box."""
    return rng.uniform(-BOX_HALF, BOX_HALF, size=(count, 3))


def near_surface_points(gt: GroundTruth, count: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``(count, 3)`` surface samples moved by isotropic Gaussian noise of std ``sigma``, kept in the box."""
    points, _ = gt.surface_samples(count, rng)
    return np.clip(points + rng.normal(scale=sigma, size=points.shape), -BOX_HALF, BOX_HALF)


def training_points(gt: GroundTruth, count: int, seed: int, uniform_share: float = 0.5) -> PointSet:
    """A labelled pool of ``count`` training points: ``uniform_share`` uniform, the rest split over ``NEAR_SIGMAS``."""
    rng = np.random.default_rng(seed)
    n_uniform = int(round(count * uniform_share))
    parts = [uniform_points(n_uniform, rng)]
    remaining = count - n_uniform
    for i, sigma in enumerate(NEAR_SIGMAS):
        share = remaining // len(NEAR_SIGMAS) + (1 if i < remaining % len(NEAR_SIGMAS) else 0)
        parts.append(near_surface_points(gt, share, sigma, rng))
    return PointSet.label(gt, np.concatenate(parts))


def evaluation_points(gt: GroundTruth, count: int) -> tuple[PointSet, PointSet]:
    """The fixed IoU sets: ``count`` uniform points and ``count`` near-surface points (seed ``EVAL_SEED``)."""
    rng = np.random.default_rng(EVAL_SEED)
    uniform = PointSet.label(gt, uniform_points(count, rng))
    near = PointSet.label(gt, near_surface_points(gt, count, EVAL_NEAR_SIGMA, rng))
    return uniform, near
