import numpy as np
import pytest
import trimesh

from sine_fields.shapes.extract import extract, extract_coarse_to_fine, extract_dense


def sphere_field(radius):
    calls = []

    def field(points):
        calls.append(len(points))
        return radius - np.linalg.norm(points, axis=1)  # larger inside

    return field, calls


@pytest.mark.parametrize("resolution", [64, 128])
def test_coarse_to_fine_matches_dense_with_fewer_queries(resolution):
    field, calls = sphere_field(0.3)
    dense = extract_dense(field, resolution)
    assert dense.field_queries == sum(calls) == (resolution + 1) ** 3
    calls.clear()
    fine = extract_coarse_to_fine(field, resolution, initial_resolution=16)
    assert fine.field_queries == sum(calls) < 0.35 * dense.field_queries
    assert np.allclose(np.sort(dense.vertices, axis=0), np.sort(fine.vertices, axis=0), atol=1e-6)
    mesh = trimesh.Trimesh(fine.vertices, fine.faces)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.3**3, rel=0.01)  # outward faces: positive volume


def test_level_moves_the_surface():
    field, _ = sphere_field(0.3)
    result = extract(field, 64, "dense", level=0.1)  # the set {0.3 - r > 0.1}: radius 0.2
    radii = np.linalg.norm(result.vertices, axis=1)
    assert np.allclose(radii, 0.2, atol=2e-3)


def test_no_crossing_gives_an_empty_mesh_and_bad_resolution_raises():
    field, _ = sphere_field(-1.0)  # everywhere outside
    for method in ("dense", "coarse-to-fine"):
        result = extract(field, 32, method)
        assert result.vertices.shape == (0, 3) and result.faces.shape == (0, 3)
    with pytest.raises(ValueError, match="32 \\* 2\\^m"):
        extract_coarse_to_fine(field, 96)
    with pytest.raises(ValueError, match="method must be"):
        extract(field, 32, "marching")
