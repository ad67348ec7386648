import numpy as np

from sine_fields.shapes.ground_truth import BOX_HALF, GroundTruth
from sine_fields.shapes.sampling import NEAR_SIGMAS, evaluation_points, training_points

from .conftest import SPHERE_RADIUS, sphere_mesh


def test_training_points_are_seeded_labelled_and_split():
    gt = GroundTruth(sphere_mesh())
    a = training_points(gt, 10_001, seed=3)
    b = training_points(gt, 10_001, seed=3)
    c = training_points(gt, 10_001, seed=4)
    assert a.points.shape == (10_001, 3) and a.points.dtype == np.float32
    assert np.array_equal(a.points, b.points) and not np.array_equal(a.points, c.points)
    assert np.abs(a.points).max() <= BOX_HALF
    radius = np.linalg.norm(a.points, axis=1)
    surface = SPHERE_RADIUS * gt.normalisation.scale  # ~0.5: the icosphere's box is a little narrower than 2 r
    clear = np.abs(radius - surface) > 2e-3  # away from the facets, the mesh is the sphere
    assert np.array_equal(a.occupancy[clear], radius[clear] < surface)
    # Second half is near the surface: within a few of the wider sigma.
    assert np.abs(radius[5001:] - surface).max() < 6 * max(NEAR_SIGMAS) + 2e-3
    assert np.allclose(a.sdf, np.where(a.occupancy, -1, 1) * np.abs(a.sdf))


def test_evaluation_points_do_not_depend_on_anything_but_the_mesh():
    gt = GroundTruth(sphere_mesh())
    u1, n1 = evaluation_points(gt, 1000)
    u2, n2 = evaluation_points(gt, 1000)
    assert np.array_equal(u1.points, u2.points) and np.array_equal(n1.points, n2.points)
    assert 0 < u1.occupancy.mean() < 1 and 0.2 < n1.occupancy.mean() < 0.8
