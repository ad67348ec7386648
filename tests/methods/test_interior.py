"""``interior.fill_enclosed``: closed-form grids of hollow balls, open cups and cameras in free space."""

from __future__ import annotations

import numpy as np
import pytest

from sine_fields.methods.interior import fill_enclosed

N = 41  # grid points per axis; the centre is index 20


def _radius_grid() -> np.ndarray:
    index = np.arange(N) - (N - 1) / 2
    x, y, z = np.meshgrid(index, index, index, indexing="ij")
    return np.sqrt(x * x + y * y + z * z)


def _shell(inner: float, outer: float) -> np.ndarray:
    """Density 1 on the shell ``inner < r <= outer`` (in grid cells), 0 elsewhere."""
    radius = _radius_grid()
    return ((radius > inner) & (radius <= outer)).astype(np.float32)


def test_the_void_of_a_hollow_ball_is_filled_and_nothing_else_changes():
    values = _shell(6.0, 12.0)
    filled, fill = fill_enclosed(values, 0.5)
    void = _radius_grid() <= 6.0
    assert fill.regions == 1 and fill.points == int(void.sum()) and fill.kept_for_cameras == 0
    assert np.all(filled[void] > 0.5)
    assert np.array_equal(filled[~void], values[~void])  # the shell and the outside are untouched
    assert np.array_equal(values, _shell(6.0, 12.0))  # the input is not changed


def test_two_voids_are_two_regions():
    values = _shell(4.0, 18.0)
    values[20, 20, 20] = 0.0  # already in the void: still one region
    values[:, :, 20] = np.where(_radius_grid()[:, :, 20] <= 4.0, 1.0, values[:, :, 20])  # a wall through the void
    _, fill = fill_enclosed(values, 0.5)
    assert fill.regions == 2 and fill.points == int((_radius_grid() <= 4.0).sum()) - int((_radius_grid()[:, :, 20] <= 4.0).sum())


def test_a_cup_open_to_the_outside_is_not_filled():
    values = _shell(6.0, 12.0)
    values[20, 20, 26:] = 0.0  # a one-point-wide tunnel from the void out through the shell
    filled, fill = fill_enclosed(values, 0.5)
    assert fill.regions == 0 and fill.points == 0
    assert np.array_equal(filled, values)


def test_a_void_holding_a_camera_stays_empty():
    values = _shell(6.0, 12.0)
    camera_in_void, camera_outside, camera_off_grid = [20.3, 19.6, 21.0], [2.0, 2.0, 2.0], [-30.0, 20.0, 20.0]
    filled, fill = fill_enclosed(values, 0.5, open_points=np.array([camera_in_void, camera_outside, camera_off_grid]))
    assert fill.regions == 0 and fill.kept_for_cameras == 1
    assert np.array_equal(filled, values)


def test_a_grid_with_nothing_above_the_level_is_returned_unchanged():
    values = np.zeros((5, 5, 5), dtype=np.float32)
    filled, fill = fill_enclosed(values, 0.5)
    assert np.array_equal(filled, values) and fill.info() == {"filled_regions": 0, "filled_points": 0,
                                                               "regions_kept_for_cameras": 0}
    with pytest.raises(ValueError, match="3D grid"):
        fill_enclosed(np.zeros((4, 4)), 0.5)
