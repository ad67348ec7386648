"""Shape metrics with Occupancy Networks' definitions, in the normalised frame.

- ``chamfer_l1``: 0.5 * (accuracy + completeness), mean nearest-neighbour distances between
  ``n`` surface samples of each mesh (accuracy: predicted -> ground truth; completeness: the reverse).
- ``chamfer_l2``: the same with squared distances.
- ``normal_consistency``: 0.5 * both directions of the mean |cos| between a sample's normal and its
  nearest neighbour's normal (orientation-free, as in Occupancy Networks).
- ``fscore``: harmonic mean of precision and recall at ``tau`` = 0.01.
- ``iou`` / ``iou_near_surface``: the field's inside set against the ground-truth inside test on the
  fixed uniform and near-surface point sets.

An empty predicted mesh gets the same keys with the worst values: distances equal to the padded
box's diagonal (no two points in the box are farther apart), its square for L2, 0 for the rest.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from sine_fields.shapes.ground_truth import BOX_HALF, sample_surface

__all__ = ["FSCORE_TAU", "METRIC_KEYS", "SURFACE_SAMPLES", "iou", "surface_metrics", "worst_surface_metrics"]

FSCORE_TAU = 0.01
SURFACE_SAMPLES = 100_000
METRIC_KEYS = ("iou", "iou_near_surface", "chamfer_l1", "chamfer_l2", "normal_consistency", "fscore",
               "num_parameters", "field_queries")
_WORST_DISTANCE = 2 * BOX_HALF * math.sqrt(3)


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two ``(n,)`` bool arrays; 1.0 when both are empty (nothing to miss)."""
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


def worst_surface_metrics() -> dict[str, float]:
    return {"chamfer_l1": _WORST_DISTANCE, "chamfer_l2": _WORST_DISTANCE**2, "normal_consistency": 0.0, "fscore": 0.0}


def surface_metrics(
    predicted: trimesh.Trimesh, truth: trimesh.Trimesh, samples: int = SURFACE_SAMPLES, seed: int = 0, tau: float = FSCORE_TAU
) -> dict[str, float]:
    """Chamfer-L1/L2, normal consistency and F-score between two meshes in the same frame."""
    if len(predicted.faces) == 0 or predicted.area <= 0:
        return worst_surface_metrics()
    rng = np.random.default_rng(seed)
    pred_points, pred_normals = sample_surface(predicted, samples, rng)
    true_points, true_normals = sample_surface(truth, samples, rng)
    to_truth, nearest_truth = cKDTree(true_points).query(pred_points, workers=-1)
    to_pred, nearest_pred = cKDTree(pred_points).query(true_points, workers=-1)
    accuracy_normals = np.abs((pred_normals * true_normals[nearest_truth]).sum(-1))
    completeness_normals = np.abs((true_normals * pred_normals[nearest_pred]).sum(-1))
    precision = float((to_truth < tau).mean())
    recall = float((to_pred < tau).mean())
    return {
        "chamfer_l1": float(0.5 * (to_truth.mean() + to_pred.mean())),
        "chamfer_l2": float(0.5 * ((to_truth**2).mean() + (to_pred**2).mean())),
        "normal_consistency": float(0.5 * (accuracy_normals.mean() + completeness_normals.mean())),
        "fscore": 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0,
    }
