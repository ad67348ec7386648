"""Shapes generated in the test (no network): an off-centre sphere, saved as a mesh file."""

import numpy as np
import pytest
import trimesh

SPHERE_CENTER = np.array([1.0, 2.0, 3.0])
SPHERE_RADIUS = 2.0


def sphere_mesh(subdivisions: int = 4) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=SPHERE_RADIUS)
    mesh.apply_translation(SPHERE_CENTER)
    return mesh


@pytest.fixture
def sphere_file(tmp_path):
    path = tmp_path / "sphere.off"
    path.write_text(sphere_mesh(3).export(file_type="off"))
    return path
