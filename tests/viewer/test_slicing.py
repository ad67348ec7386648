"""The slice plane's pixels land where they were sampled, for every axis and offset."""

import numpy as np
import pytest

from sine_fields.shapes.ground_truth import BOX_HALF
from sine_fields.viewer.slicing import AXES, slice_points, slice_pose


def rotate(wxyz, vectors):
    """Rotate ``(n, 3)`` vectors by a unit quaternion (w, x, y, z)."""
    w, q = wxyz[0], np.asarray(wxyz[1:])
    t = 2 * np.cross(q, vectors)
    return vectors + w * t + np.cross(q, t)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("offset", [-0.3, 0.0, 0.21])
def test_pixels_land_on_their_sample_points(axis, offset):
    resolution = 8
    points = slice_points(axis, offset, resolution)
    wxyz, position = slice_pose(axis, offset)
    # viser 0.2.7 draws the image in its local xy plane with columns along +x and rows along +y
    # (a plane geometry turned by pi about x); pixel centres of a side-2*BOX_HALF square:
    centres = (np.arange(resolution) + 0.5) / resolution * 2 * BOX_HALF - BOX_HALF
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    local = np.stack([cols, rows, np.zeros_like(rows)], axis=-1).reshape(-1, 3)
    world = rotate(wxyz, local) + np.asarray(position)
    np.testing.assert_allclose(world, points.reshape(-1, 3), atol=1e-6)


def test_quaternions_are_unit_and_plane_is_perpendicular_to_axis():
    for axis in AXES:
        wxyz, _ = slice_pose(axis, 0.0)
        assert np.isclose(np.linalg.norm(wxyz), 1.0)
        normal = rotate(wxyz, np.array([[0.0, 0.0, 1.0]]))[0]
        np.testing.assert_allclose(np.abs(normal), np.eye(3)[AXES.index(axis)], atol=1e-12)
        assert np.all(slice_points(axis, 0.1, 4)[..., AXES.index(axis)] == np.float32(0.1))


def test_unknown_axis_is_rejected():
    with pytest.raises(ValueError, match="axis"):
        slice_points("w", 0.0, 4)
