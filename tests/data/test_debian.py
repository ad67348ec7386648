"""Debian packages: members unpacked with dpkg-deb and with the standard-library fallback agree."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sine_fields.data import debian
from sine_fields.data.recipes import DataError, sha256_of

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed to build the test package")


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A two-file package built with dpkg-deb (xz, which the fallback reads too) and put in the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SINE_FIELDS_CACHE", str(cache))
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: sf-test\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    (root / "usr/share/sf/models").mkdir(parents=True)
    (root / "usr/share/sf/models/model.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (root / "usr/share/sf/models/texture.bin").write_bytes(bytes(range(256)) * 3)
    deb = tmp_path / "sf-test_1.0_all.deb"
    subprocess.run(["dpkg-deb", "-Zxz", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    archive = debian.debian_package("sf-test", "1.0", sha256_of(deb))
    (cache / "downloads").mkdir(parents=True)
    shutil.copy(deb, cache / "downloads" / archive.filename)  # in the cache: nothing is fetched
    return archive, root


MEMBERS = ["usr/share/sf/models/model.obj", "usr/share/sf/models/texture.bin"]


@pytest.mark.parametrize("with_dpkg", [True, False])
def test_members_unpack_with_and_without_dpkg(package, monkeypatch, with_dpkg):
    archive, root = package
    if not with_dpkg:
        monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    assert debian.cached_members(archive, MEMBERS) is None
    paths = debian.debian_members(archive, MEMBERS)
    assert [p.read_bytes() for p in paths] == [(root / m).read_bytes() for m in MEMBERS]
    # the folder layout is kept, so a model finds its texture by relative path
    assert paths[0].parent == paths[1].parent and paths[0].relative_to(paths[0].parents[4]).as_posix() == MEMBERS[0]
    assert debian.cached_members(archive, MEMBERS) == paths


@pytest.mark.parametrize("with_dpkg", [True, False])
def test_a_missing_member_is_a_one_line_data_error(package, monkeypatch, with_dpkg):
    archive, _ = package
    if not with_dpkg:
        monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="holds no file usr/share/sf/missing.txt") as error:
        debian.debian_members(archive, ["usr/share/sf/missing.txt"])
    assert "\n" not in str(error.value)
