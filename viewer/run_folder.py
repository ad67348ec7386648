"""Load and validate shape-fit run folders (``sine-fields fit``) for the viewer.

Builds on ``sine_fields.shapes.run.open_run`` (config, format version, checkpoint) and adds what
the viewer needs on top: the extracted mesh, the metrics and the saved ground truth, all checked
up front so that a missing, incomplete or older folder is a one-line ``UserError`` naming the
folder and what to do, never a stack trace from inside the server. Meshes are returned in the
normalised frame (sine_fields.shapes.ground_truth), where fields are evaluated and metrics are reported; run
folders store them in the mesh's own coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from sine_fields.errors import UserError

__all__ = ["Run", "ground_truth_of", "load_run", "load_runs"]


@dataclass
class Run:
    """A finished run as the viewer shows it."""

    path: Path
    config: dict
    """config.json: mesh source, normalisation, field and training configs."""
    field_config: object
    """``sine_fields.shapes.field.FieldConfig``."""
    metrics: dict
    """metrics.json."""
    mesh: trimesh.Trimesh
    """The extracted mesh (mesh.ply) in the normalised frame; may have no faces."""
    checkpoint: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def mesh_source(self) -> str:
        """The ground truth's source name or path, as given to ``sine-fields fit --mesh``."""
        return str(self.config["mesh"])

    @property
    def target(self) -> str:
        return self.field_config.target

    @property
    def num_parameters(self) -> int:
        """Exact parameter count of the field, as recorded by the fit."""
        return int(self.metrics.get("num_parameters", self.config.get("num_parameters")))

    def load_field(self, device):
        """The trained ``ShapeField`` on ``device``, in eval mode."""
        from sine_fields.shapes.fit import load_field

        try:
            return load_field(self.field_config, self.checkpoint, device)
        except RuntimeError as error:  # tensor shapes differ: config.json and the checkpoint disagree
            raise UserError(f"{self.path}: checkpoint.pt does not match config.json ({str(error).splitlines()[0]}); fit it again") from None


def _read_mesh(path: Path, folder: Path) -> trimesh.Trimesh:
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # trimesh raises many types for a damaged file; one line is enough
        raise UserError(f"{folder}: cannot read {path.name} ({type(error).__name__}); run `sine-fields extract {folder}` to write it again") from None
    if not isinstance(mesh, trimesh.Trimesh):  # an empty mesh file loads as an empty scene
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    return mesh


def load_run(folder: Path | str) -> Run:
    """Read one run folder; anything missing or unreadable is a one-line ``UserError``."""
    from sine_fields.shapes.export import read_json
    from sine_fields.shapes.ground_truth import Normalisation
    from sine_fields.shapes.run import RunPaths, open_run

    folder = Path(folder).expanduser()
    if not folder.exists():
        raise UserError(f"{folder}: no such run folder")
    try:
        opened = open_run(folder)  # folder, config.json, format_version, checkpoint.pt
    except (KeyError, TypeError, ValueError) as error:  # a config.json whose field entry this version cannot read
        raise UserError(f"{folder}: config.json is from another version of sine-fields ({type(error).__name__}: {error}); fit it again") from None
    paths: RunPaths = opened.paths
    missing = [p.name for p in (paths.mesh, paths.metrics, paths.ground_truth) if not p.exists()]
    if missing:
        raise UserError(f"{folder}: incomplete run, no {', '.join(missing)}; run the same `sine-fields fit` command again to finish it")
    metrics = read_json(paths.metrics)
    if "num_parameters" not in metrics and "num_parameters" not in opened.config:
        raise UserError(f"{paths.metrics}: no num_parameters; run `sine-fields eval {folder}` to score it again")
    try:
        normalisation = Normalisation.from_dict(opened.config["normalisation"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{paths.config}: no valid 'normalisation' entry; fit it again") from None
    mesh = _read_mesh(paths.mesh, folder)
    if len(mesh.vertices):
        mesh = trimesh.Trimesh(normalisation.apply(mesh.vertices), mesh.faces, process=False)
    return Run(folder, opened.config, opened.field_config, metrics, mesh, paths.checkpoint)


def load_runs(folders: list[Path]) -> list[Run]:
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


def ground_truth_of(run: Run):
    """The run's saved ground truth (``ground_truth.ply``) as a ``GroundTruth`` in the normalised frame."""
    from sine_fields.shapes.run import RunPaths, load_ground_truth

    return load_ground_truth(str(RunPaths(run.path).ground_truth))
