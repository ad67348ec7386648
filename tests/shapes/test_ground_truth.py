import numpy as np
import pytest
import trimesh

from sine_fields.errors import UserError
from sine_fields.shapes.ground_truth import GroundTruth, Normalisation, NotWatertightWarning

from .conftest import SPHERE_CENTER, SPHERE_RADIUS, sphere_mesh


def test_normalisation_centres_and_scales_longest_side_to_one():
    gt = GroundTruth(sphere_mesh())
    assert np.allclose(gt.mesh.bounds.mean(axis=0), 0, atol=1e-9)
    assert gt.mesh.extents.max() == pytest.approx(1.0)
    back = gt.normalisation.invert(gt.mesh.vertices)
    assert np.allclose(back, gt.original.vertices)
    assert Normalisation.from_dict(gt.normalisation.to_dict()) == gt.normalisation


def test_signed_distance_closed_form_on_sphere():
    # Normalised, the sphere has radius 0.5: a point at radius r is at signed distance r - 0.5.
    gt = GroundTruth(sphere_mesh(5))
    directions = np.random.default_rng(0).normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = np.random.default_rng(1).uniform(0.05, 0.54, size=200)
    points = directions * radii[:, None]
    sdf = gt.signed_distance(points)
    # The tessellated sphere lies inside the true one by at most ~1e-3 at 5 subdivisions.
    assert np.allclose(sdf, radii - 0.5, atol=2e-3)
    assert np.array_equal(gt.occupancy(points), radii < 0.5)
    assert gt.watertight and gt.rays == 1


def test_mesh_with_hole_warns_and_keeps_the_majority_answer():
    mesh = sphere_mesh(3)
    mesh.update_faces(np.arange(len(mesh.faces)) != 0)  # punch out one triangle
    with pytest.warns(NotWatertightWarning, match="not watertight"):
        gt = GroundTruth(mesh, name="holey")
    assert not gt.watertight
    inside = gt.occupancy(np.array([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05], [0.45, 0.45, 0.45]]))
    assert inside.tolist() == [True, True, False]


def test_empty_mesh_is_a_user_error():
    with pytest.raises(UserError, match="no triangles"):
        GroundTruth(trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int)), name="empty.ply")


def test_sphere_center_constants_are_used():
    gt = GroundTruth(sphere_mesh())
    assert np.allclose(gt.normalisation.center, SPHERE_CENTER, atol=1e-9)
    assert gt.normalisation.scale == pytest.approx(1 / (2 * SPHERE_RADIUS), rel=1e-3)


def test_surface_samples_are_area_weighted_seeded_and_thread_one_stream():
    from sine_fields.shapes.ground_truth import sample_surface

    # Two triangles in z = 0 with areas 0.5 and 1.5: a quarter of the samples land on the first.
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [4, 0, 0], [3, 3, 0]],
                           [[0, 1, 2], [3, 4, 5]], process=False)
    points, normals = sample_surface(mesh, 20_000, np.random.default_rng(0))
    assert points.shape == normals.shape == (20_000, 3)
    assert np.allclose(points[:, 2], 0) and np.allclose(np.abs(normals[:, 2]), 1)
    first = points[:, 0] < 2
    assert abs(first.mean() - 0.25) < 0.015
    assert (points[first, 0] + points[first, 1] <= 1 + 1e-9).all()  # inside the first triangle
    again, _ = sample_surface(mesh, 20_000, np.random.default_rng(0))
    assert np.array_equal(points, again)
    rng = np.random.default_rng(0)
    a, _ = sample_surface(mesh, 100, rng)
    b, _ = sample_surface(mesh, 100, rng)  # the same generator continues: new points
    assert not np.array_equal(a, b)
