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


def test_chamfer_directions_differ_when_the_prediction_has_an_extra_part():
    # Prediction: the true sphere plus a same-sized sphere centred 1 away. Completeness (truth ->
    # prediction) is only sampling noise; accuracy (prediction -> truth) is half the samples at the
    # extra sphere's mean distance to the true one. For a sphere of radius r centred at distance d > r
    # the mean of |x| over its surface is d + r^2 / (3 d), and the mean of |x|^2 is d^2 + r^2.
    r, d = 0.3, 1.0
    truth = sphere(r)
    extra = sphere(r)
    extra.apply_translation([d, 0.0, 0.0])
    predicted = trimesh.util.concatenate([sphere(r), extra])
    mean_abs = d + r**2 / (3 * d)
    accuracy_l1 = 0.5 * (mean_abs - r)
    accuracy_l2 = 0.5 * (d**2 + r**2 - 2 * r * mean_abs + r**2)
    samples = 20_000
    m = surface_metrics(predicted, truth, samples=samples, tau=0.05)
    # Sampling only adds distance, at most about the sample spacing on the shared sphere; either
    # direction alone (or one direction twice) is off by a factor of 2 or of 30.
    spacing = math.sqrt(4 * math.pi * r**2 / (samples / 2))
    assert 0.5 * accuracy_l1 <= m["chamfer_l1"] <= 0.5 * accuracy_l1 + spacing
    assert 0.5 * accuracy_l2 <= m["chamfer_l2"] <= 0.5 * accuracy_l2 + spacing**2 + 0.01 * accuracy_l2
    # At tau = 0.05 (several sample spacings): precision 1/2 (half the prediction is on the truth),
    # recall 1 (the truth is covered).
    assert m["fscore"] == pytest.approx(2 * 0.5 * 1.0 / 1.5, abs=0.01)
    swapped = surface_metrics(truth, predicted, samples=samples, tau=0.05)
    assert swapped["chamfer_l1"] == pytest.approx(m["chamfer_l1"], rel=0.02)
    assert swapped["fscore"] == pytest.approx(m["fscore"], abs=0.01)


def square(angle_degrees=0.0):
    """A 0.6 x 0.6 square in the z = 0 plane, rotated about the x axis by ``angle_degrees``."""
    plane = trimesh.creation.box(extents=[0.6, 0.6, 1e-9])
    plane = trimesh.Trimesh(plane.vertices, plane.faces[plane.face_normals[:, 2] > 0.5])  # its top only
    plane = plane.subdivide().subdivide()
    plane.apply_transform(trimesh.transformations.rotation_matrix(math.radians(angle_degrees), [1, 0, 0]))
    return plane


def flipped(mesh, every=1):
    """The mesh with every ``every``-th face's orientation (and so its normal) reversed."""
    faces = mesh.faces.copy()
    faces[::every] = faces[::every, ::-1]
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


def test_normal_consistency_ignores_orientation():
    # Closed form: two squares crossing at 30 degrees pair normals 30 degrees apart: |cos| = cos 30.
    truth, tilted = square(), square(30.0)
    expected = math.cos(math.radians(30.0))
    for predicted in (tilted, flipped(tilted), flipped(tilted, every=2)):
        assert surface_metrics(predicted, truth, samples=20_000)["normal_consistency"] == pytest.approx(expected, abs=0.01)
    # The same surface with outward, inward or mixed normals is perfectly consistent.
    for predicted in (flipped(sphere(0.4)), flipped(sphere(0.4), every=3)):
        m = surface_metrics(predicted, sphere(0.4), samples=20_000)
        assert m["normal_consistency"] > 0.99
