"""The run folders a viewer shows: ``ShapeRun``s checked up front, all of one ground truth.

Everything the viewer reads (mesh, metrics, ground truth, checkpoint) is checked before the server
starts, so that a missing, incomplete or older folder is a one-line ``UserError`` naming the folder
and what to do, never a stack trace from inside the server.
"""

from __future__ import annotations

from pathlib import Path

from sine_fields.errors import UserError
from sine_fields.shapes.ground_truth import GroundTruth
from sine_fields.shapes.run import ShapeRun

__all__ = ["ground_truth_of", "load_run", "load_runs"]


def load_run(folder: Path | str) -> ShapeRun:
    """One finished run (a shape fit, or a ``nerf-mesh`` folder: a mesh and metrics without a field);
    anything missing or unreadable is a one-line ``UserError``."""
    from sine_fields.methods.nerf_mesh_folder import NerfMeshFolder

    if NerfMeshFolder.holds(folder):
        return NerfMeshFolder.open(folder)  # type: ignore[return-value]
    run = ShapeRun.open(folder).require("mesh.ply", "metrics.json", "ground_truth.ply")
    run.metrics  # reads and checks metrics.json now rather than inside a GUI callback
    run.mesh()  # the same for mesh.ply
    return run


def load_runs(folders: list[Path]) -> list[ShapeRun]:
    """Several runs of one ground truth; different meshes or repeated folder names are user errors."""
    if not folders:
        raise UserError("pass at least one run folder")
    runs = [load_run(folder) for folder in folders]
    sources = sorted({run.mesh_source for run in runs})
    if len(sources) > 1:
        raise UserError(f"the runs fit different meshes ({', '.join(sources)}); view one mesh's runs at a time")
    names = [run.name for run in runs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"two run folders are both named {', '.join(repeated)}; the panels are labelled by folder name")
    return runs


def ground_truth_of(run: ShapeRun) -> GroundTruth:
    """The run's saved ground truth (``ground_truth.ply``) in the normalised frame."""
    return run.ground_truth()
