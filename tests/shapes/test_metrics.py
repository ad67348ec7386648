import math

import numpy as np
import pytest
import trimesh

from sine_fields.shapes.metrics import iou, surface_metrics, worst_surface_metrics


def sphere(radius, subdivisions=5):
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


def test_identical_meshes_score_perfectly():
    samples = 100_000
    m = surface_metrics(sphere(0.4), sphere(0.4), samples=samples)
    # Only the sampling remains: nearest neighbours are about half the sample spacing apart.
    spacing = math.sqrt(4 * math.pi * 0.4**2 / samples)
    assert m["chamfer_l1"] < 0.6 * spacing and m["fscore"] == pytest.approx(1.0)
    assert m["normal_consistency"] > 0.99


def test_concentric_spheres_chamfer_is_the_radius_gap():
    gap = 0.02
    m = surface_metrics(sphere(0.4 + gap), sphere(0.4), samples=20_000)
    # Every nearest neighbour is ~gap away (plus sampling spacing): closed form up to a few percent.
    assert m["chamfer_l1"] == pytest.approx(gap, rel=0.1)
    assert m["chamfer_l2"] == pytest.approx(gap**2, rel=0.2)
    assert m["fscore"] < 0.05  # gap is twice tau


def test_empty_prediction_gets_the_same_keys_with_worst_values():
    m = surface_metrics(trimesh.Trimesh(), sphere(0.4))
    assert m == worst_surface_metrics()
    assert set(m) == {"chamfer_l1", "chamfer_l2", "normal_consistency", "fscore"}
    assert m["chamfer_l1"] == pytest.approx(1.1 * math.sqrt(3))


def test_iou_closed_form():
    a = np.array([1, 1, 0, 0], dtype=bool)
    b = np.array([1, 0, 1, 0], dtype=bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, a) == 1.0 and iou(~a & a, ~a & a) == 1.0
