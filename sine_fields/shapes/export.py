"""Writing meshes (PLY, OBJ, OFF, GLB through trimesh) atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from sine_fields.errors import UserError
from sine_fields.io import atomic_write_bytes

__all__ = ["MESH_EXPORT_FORMATS", "export_mesh"]

MESH_EXPORT_FORMATS = (".ply", ".obj", ".off", ".glb")


def export_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path) -> Path:
    """Write ``(V, 3)`` vertices and ``(F, 3)`` faces to ``path``; the suffix picks the format."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_EXPORT_FORMATS:
        raise UserError(f"{path}: unsupported mesh format {suffix or '(none)'!r}; expected one of {', '.join(MESH_EXPORT_FORMATS)}")
    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
    data = mesh.export(file_type=suffix[1:])
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)
    return path
