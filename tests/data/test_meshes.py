"""Mesh recipes: named sources through the cache helper, and one-line errors for everything else."""

import shutil

import pytest

from sine_fields.data import meshes, recipes
from sine_fields.data.meshes import load_mesh, resolve_mesh
from sine_fields.data.recipes import Archive, DataError, fetch_archive


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed: the bunny recipe uses `npm pack`")
def test_bunny_is_fetched_checked_and_converted():
    mesh = load_mesh("bunny")
    assert len(mesh.vertices) == 1839 and mesh.is_watertight
    assert resolve_mesh("bunny").suffix == ".ply"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get is not installed: CGAL meshes come from libcgal-demo")
def test_cgal_mesh_and_close_name_hint():
    mesh = load_mesh("cgal:fandisk")
    assert mesh.is_watertight and len(mesh.faces) > 10_000
    with pytest.raises(DataError, match="unknown CGAL mesh 'armadilo'.*armadillo"):
        resolve_mesh("cgal:armadilo")


def test_wrong_checksum_is_reported_with_the_manual_route(tmp_path, monkeypatch):
    monkeypatch.setenv(recipes.CACHE_ENV, str(tmp_path))
    archive = Archive("thing-1.0.tgz", "0" * 64, ("npm", "pack", "thing@1.0"))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "thing-1.0.tgz").write_bytes(b"not the real file")
    with pytest.raises(DataError, match=r"has sha256 .* expected 000000000000.*by hand"):
        fetch_archive(archive)


def test_missing_client_says_how_to_supply_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(recipes.CACHE_ENV, str(tmp_path))
    archive = Archive("thing-1.0.tgz", "0" * 64, ("no-such-client-xyz", "pack", "thing"))
    with pytest.raises(DataError, match=r"`no-such-client-xyz` is not installed; or place thing-1.0.tgz"):
        fetch_archive(archive)
    assert not (tmp_path / "downloads" / "thing-1.0.tgz").exists()


def test_failing_client_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(recipes.CACHE_ENV, str(tmp_path))
    archive = Archive("thing-1.0.tgz", "0" * 64, ("false",))
    with pytest.raises(DataError, match=r"`false` failed"):
        fetch_archive(archive)


def test_paths_unknown_names_and_bad_files(tmp_path):
    with pytest.raises(DataError, match="neither a file nor a known source"):
        resolve_mesh("rabbit")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported mesh format '.txt'"):
        resolve_mesh(tmp_path / "a.txt")
    (tmp_path / "empty.off").write_text("OFF\n0 0 0\n")
    with pytest.raises(DataError, match="no triangles"):
        load_mesh(tmp_path / "empty.off")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(DataError, match="broken.ply"):
        load_mesh(tmp_path / "broken.ply")
    assert meshes.MESH_FORMATS[0] == ".off"
