"""Reading a ``sine-fields nerf-mesh`` output folder: its mesh, extraction and metrics, and its ground truth.

The folder holds ``mesh.ply`` (dataset frame), ``extraction.json`` and, when the dataset had a ground
truth, ``metrics.json`` (which names the ground-truth file and its normalisation). This reader needs
neither nerfstudio nor the trained model, so the viewer can show the mesh beside the ground truth with the
same distance colouring as a shape fit. It offers the read side of a shape run's interface (``name``,
``mesh``, ``metrics``, ``num_parameters``, ``summary``, ``mesh_source``, ``ground_truth``); it has no field
to slice or re-extract (``field_config`` is None), since that field lives in a nerfstudio checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from sine_fields.errors import UserError

__all__ = ["EXTRACTION", "MESH", "METRICS", "NerfMeshFolder"]

MESH, EXTRACTION, METRICS = "mesh.ply", "extraction.json", "metrics.json"


class NerfMeshFolder:
    """A finished ``nerf-mesh`` folder that was scored against a ground truth."""

    field_config = None
    """No field the viewer can evaluate (the density lives in a nerfstudio checkpoint)."""
    target = "density"

    def __init__(self, root: Path, extraction: dict, metrics: dict) -> None:
        self.root, self.extraction, self._metrics = root, extraction, metrics

    @staticmethod
    def holds(root: Path | str) -> bool:
        """True for a folder that nerf-mesh wrote (its extraction.json names a density field)."""
        path = Path(root).expanduser() / EXTRACTION
        if not path.is_file():
            return False
        from sine_fields.io import read_json

        return "density_field" in read_json(path)

    @classmethod
    def open(cls, root: Path | str) -> "NerfMeshFolder":
        from sine_fields.io import read_json

        root = Path(root).expanduser()
        for name in (MESH, EXTRACTION, METRICS):
            if not (root / name).is_file():
                raise UserError(f"{root}: no {name}; run `sine-fields nerf-mesh` on a dataset whose folder holds the "
                                "ground-truth mesh.ply to write it")
        metrics = read_json(root / METRICS)
        for key in ("ground_truth", "normalisation"):
            if key not in metrics:
                raise UserError(f"{root / METRICS}: no {key!r}; run `sine-fields nerf-mesh ... --overwrite` again")
        return cls(root, read_json(root / EXTRACTION), metrics)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def mesh_source(self) -> str:
        """The ground-truth mesh file the folder was scored against."""
        return str(self._metrics["ground_truth"])

    @property
    def metrics(self) -> dict:
        """The shape metrics (numbers only; the ground truth's path and frame are in ``mesh_source``)."""
        return {k: v for k, v in self._metrics.items() if k not in ("ground_truth", "normalisation", "frame")}

    @property
    def num_parameters(self) -> int:
        """Parameters of the whole NeRF model (every field, coarse and fine)."""
        return int(self.extraction["model_parameters"])

    @property
    def summary(self) -> dict:
        e = self.extraction
        return {"model": e.get("model"), "density field": e.get("density_field"), "level": e.get("level"),
                "level method": e.get("level_method"), "resolution": e.get("resolution")}

    def _normalisation(self):
        from sine_fields.shapes.ground_truth import Normalisation

        return Normalisation.from_dict(self._metrics["normalisation"])

    def mesh(self, frame: Literal["normalised", "original"] = "normalised") -> trimesh.Trimesh:
        """mesh.ply in the normalised frame (ground truth centred, longest side 1) or the dataset's."""
        try:
            mesh = trimesh.load(self.root / MESH, force="mesh", process=False)
        except Exception as error:  # trimesh raises many types for a damaged file
            raise UserError(f"{self.root}: cannot read {MESH} ({type(error).__name__})") from None
        if not isinstance(mesh, trimesh.Trimesh):  # an empty mesh file loads as an empty scene
            return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
        if frame == "normalised" and len(mesh.vertices):
            mesh = trimesh.Trimesh(self._normalisation().apply(mesh.vertices), mesh.faces, process=False)
        return mesh

    def ground_truth(self):
        """The ground truth it was scored against, as a ``GroundTruth`` (normalised frame)."""
        from sine_fields.shapes.run import load_ground_truth

        path = Path(self.mesh_source)
        if not path.is_file():
            raise UserError(f"{self.root}: its ground truth {path} is gone (metrics.json names it)")
        return load_ground_truth(str(path))
