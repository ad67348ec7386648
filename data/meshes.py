"""Mesh sources: ``bunny`` (npm package ``bunny``), ``cgal:<name>`` (Debian ``libcgal-demo``) and paths.

``resolve_mesh(name_or_path)`` returns a local file that trimesh can read; ``load_mesh`` reads it
as one triangle mesh in the file's own coordinates (normalising is the shape pipeline's job).
"""

from __future__ import annotations

import difflib
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import trimesh

from sine_fields.data.debian import debian_members, debian_package
from sine_fields.data.recipes import Archive, DataError, atomic_write_bytes, cache_dir, fetch_archive

__all__ = ["MESH_FORMATS", "cgal_names", "describe_sources", "load_mesh", "resolve_mesh"]

# File suffixes trimesh reads as triangle meshes (GLB/GLTF scenes are merged into one mesh).
MESH_FORMATS = (".off", ".ply", ".obj", ".stl", ".glb", ".gltf")

# The Stanford bunny as published on npm (public domain, 1,839 vertices, watertight).
BUNNY = Archive(
    filename="bunny-1.0.1.tgz",
    sha256="381e02c74b98cf18814d7bec794726ef70b9c67e037273e82054d0043f6ae303",
    command=("npm", "pack", "bunny@1.0.1"),
)
# CGAL's example meshes (CC0) ship in Debian's libcgal-demo as usr/share/doc/libcgal-dev/data.tar.gz.
CGAL = debian_package("libcgal-demo", "5.5.1-2", "78b09b23d4d6d1bf15552a1060b419ab3fc09918486462faed197e5fc6ac3735")
_CGAL_INNER = "usr/share/doc/libcgal-dev/data.tar.gz"
_CGAL_PREFIX = "data/meshes/"


def _bunny_file() -> Path:
    target = cache_dir() / "meshes" / "bunny.ply"
    if target.exists():
        return target
    archive = fetch_archive(BUNNY)
    with tarfile.open(archive) as tar:
        source = tar.extractfile("package/index.js")
        if source is None:
            raise DataError(f"{archive} holds no package/index.js; delete it and retry")
        text = source.read().decode("utf-8")
    arrays = {}
    for key in ("positions", "cells"):
        # index.js is `exports.positions=[[x,y,z],...]` and `exports.cells=[[i,j,k],...]`: plain JSON arrays.
        found = re.search(rf"exports\.{key}\s*=\s*(\[\[.*?\]\])", text, flags=re.S)
        if found is None:
            raise DataError(f"{archive}: package/index.js has no `exports.{key}` array; delete it and retry")
        arrays[key] = np.asarray(json.loads(found.group(1)))
    mesh = trimesh.Trimesh(arrays["positions"].astype(np.float64), arrays["cells"].astype(np.int64), process=False)
    atomic_write_bytes(target, mesh.export(file_type="ply"))
    return target


def _cgal_folder() -> Path:
    """Unpack CGAL's ``data/meshes/`` into the cache once; return that folder."""
    folder = cache_dir() / "meshes" / "cgal"
    done = folder / ".complete"
    if done.exists():
        return folder
    (inner,) = debian_members(CGAL, [_CGAL_INNER])
    with tarfile.open(inner, mode="r:gz") as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if member.isfile() and member.name.startswith(_CGAL_PREFIX) and path.suffix.lower() in MESH_FORMATS:
                atomic_write_bytes(folder / path.name, tar.extractfile(member).read())
    atomic_write_bytes(done, b"")
    return folder


def cgal_names() -> list[str]:
    """Names accepted after ``cgal:`` (fetches the package on first use)."""
    return sorted({p.stem for p in _cgal_folder().iterdir() if p.suffix.lower() in MESH_FORMATS})


def describe_sources() -> list[tuple[str, str]]:
    """``(name, description)`` rows for ``sine-fields data list`` (fetches nothing)."""
    cached = (cache_dir() / "meshes" / "cgal" / ".complete").exists()
    cgal_hint = "e.g. cgal:armadillo, cgal:bunny00, cgal:camel, cgal:fandisk"
    if cached:
        names = cgal_names()
        cgal_hint = f"{len(names)} meshes: {', '.join(names)}"
    return [
        ("bunny", f"Stanford bunny, 1,839 vertices, watertight (npm {BUNNY.command[-1]}); cached: "
                  f"{(cache_dir() / 'meshes' / 'bunny.ply').exists()}"),
        ("cgal:<name>", f"CGAL example meshes, CC0 (Debian {CGAL.command[-1]}); cached: {cached}; {cgal_hint}"),
        ("<path>", f"any mesh file trimesh reads: {', '.join(MESH_FORMATS)}"),
    ]


def resolve_mesh(name_or_path: str | Path) -> Path:
    """A local mesh file for a source name (fetched into the cache on first use) or a path."""
    text = str(name_or_path)
    if text == "bunny":
        return _bunny_file()
    if text.startswith("cgal:"):
        name = text[len("cgal:") :]
        folder = _cgal_folder()
        matches = [p for p in folder.iterdir() if p.stem == name and p.suffix.lower() in MESH_FORMATS]
        if not matches:
            close = difflib.get_close_matches(name, cgal_names(), n=5)
            hint = f"; close names: {', '.join(close)}" if close else "; `sine-fields data list` shows all names"
            raise DataError(f"unknown CGAL mesh {name!r}{hint}")
        return matches[0]
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"mesh {text!r} is neither a file nor a known source name (bunny, cgal:<name>)")
    if path.suffix.lower() not in MESH_FORMATS:
        raise DataError(f"{path}: unsupported mesh format {path.suffix or '(none)'!r}; expected one of {', '.join(MESH_FORMATS)}")
    return path


def load_mesh(name_or_path: str | Path) -> trimesh.Trimesh:
    """Read a source or file as one triangle mesh ``(V, 3) float64`` / ``(F, 3) int64``.

    Raises ``DataError`` for an unknown name, a missing, unreadable or unsupported file, or a mesh
    without triangles.
    """
    path = resolve_mesh(name_or_path)
    try:
        loaded = trimesh.load(path, force="mesh", process=True)
    except Exception as error:  # trimesh raises many types for a corrupt file; report it as one line
        raise DataError(f"{path}: cannot read mesh ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise DataError(f"{path}: holds no triangles (an empty mesh or a point cloud)")
    extent = loaded.bounds[1] - loaded.bounds[0]
    if not np.all(np.isfinite(loaded.vertices)) or float(extent.max()) <= 0:
        raise DataError(f"{path}: vertices are not finite or span no volume")
    return loaded
