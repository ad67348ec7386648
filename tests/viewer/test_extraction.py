"""Re-extraction with progress on closed-form fields: a sphere of radius 0.3 as occupancy logits and as SDF."""

import threading

import numpy as np
import pytest

from sine_fields.errors import UserError
from sine_fields.shapes.field import FieldConfig, ShapeField
from sine_fields.viewer.extraction import Cancelled, re_extract

RADIUS = 0.3
SHARPNESS = 40.0  # logits per unit distance of the occupancy sphere


class SphereField(ShapeField):
    """A ``ShapeField`` (its config owns level and sign) whose values are a closed-form sphere."""

    def __init__(self, target: str) -> None:
        super().__init__(FieldConfig(target=target, linear="dense", width=4, hidden_layers=1))

    def values(self, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
        distance = np.linalg.norm(points, axis=-1) - RADIUS  # negative inside
        return (-SHARPNESS * distance if self.config.target == "occupancy" else distance).astype(np.float32)


@pytest.mark.parametrize("target", ["occupancy", "sdf"])
@pytest.mark.parametrize("method", ["coarse-to-fine", "dense"])
def test_sphere_is_recovered_and_progress_reaches_one(target, method):
    updates = []
    mesh, queries = re_extract(SphereField(target), 64, method, None, progress=updates.append)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    cell = 1.1 / 64
    assert len(mesh.faces) > 100 and np.abs(radii - RADIUS).max() < cell
    assert mesh.is_watertight and mesh.volume > 0  # faces wound outward for both targets
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 2
    assert updates[-1].queries == queries > 0
    if method == "dense":
        assert queries == 65**3


def test_level_moves_the_surface():
    # Occupancy probability p is reached where logit(p) = SHARPNESS * (RADIUS - r).
    p = 0.9
    mesh, _ = re_extract(SphereField("occupancy"), 64, "dense", p)
    expected = RADIUS - np.log(p / (1 - p)) / SHARPNESS
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - expected) < 1.1 / 64
    mesh, _ = re_extract(SphereField("sdf"), 64, "dense", 0.05)
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - (RADIUS + 0.05)) < 1.1 / 64


def test_bad_level_and_cancel():
    with pytest.raises(UserError, match="probability"):
        re_extract(SphereField("occupancy"), 64, "dense", 1.5)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        re_extract(SphereField("sdf"), 64, "dense", None, cancel=cancel)


def test_coarse_to_fine_progress_over_several_levels():
    updates = []
    re_extract(SphereField("sdf"), 128, "coarse-to-fine", None, progress=updates.append)
    fractions = [u.fraction for u in updates]
    # Two refinements (32 -> 64 -> 128): the first is worth 3/15 of the work, both 15/15.
    assert fractions[-2:] == [1.0, 1.0] and 0 < fractions[0] < 1 and fractions == sorted(fractions)
