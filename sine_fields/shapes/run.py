"""A run folder and its one owner, ``ShapeRun``: fit -> extract -> score, each step reading and
writing files in one folder. The CLI, the report, the viewer and the benchmarks all go through it.

``DIR/config.json``      what was fitted (``FitConfig.to_dict``), normalisation, parameter count
``DIR/checkpoint.pt``    model, optimiser and batch-order state (resumable)
``DIR/ground_truth.ply`` the ground-truth mesh, in its own coordinates (for viewers and reports)
``DIR/mesh.ply``         the extracted mesh, in the ground-truth mesh's own coordinates
``DIR/extraction.json``  resolution, method, level, field_queries, seconds
``DIR/metrics.json``     ``METRIC_KEYS`` plus timings
``DIR/omega.json``       ``--omega auto`` only: the probe's candidates, scores, chosen omega and seconds

Every JSON and mesh is written atomically. A folder that holds a different run, or files that are not
a run's, is refused rather than overwritten; the same fit run again resumes.

Adding a metric touches ``ShapeRun._metrics`` (and ``METRIC_KEYS`` beside the metric's code); adding a
field option touches ``FieldConfig`` only (it is the CLI flag, the config.json entry and the network).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from sine_fields.device import torch_device
from sine_fields.errors import UserError
from sine_fields.io import atomic_write_json, read_json
from sine_fields.shapes.config import ExtractConfig, FitConfig
from sine_fields.shapes.export import export_mesh
from sine_fields.shapes.extract import Extraction, extract
from sine_fields.shapes.field import FieldConfig, ShapeField, field_summary
from sine_fields.shapes.fit import TrainConfig, fit, load_field, new_field, save_checkpoint
from sine_fields.shapes.ground_truth import GroundTruth, Normalisation
from sine_fields.shapes.metrics import METRIC_KEYS, SURFACE_SAMPLES, iou, surface_metrics
from sine_fields.shapes.sampling import evaluation_points

__all__ = ["RUN_FILES", "RunPaths", "ShapeRun", "load_ground_truth", "refuse_run_file"]

FORMAT_VERSION = 1
# Points per IoU set (uniform and near-surface each): Occupancy Networks uses 100k uniform points.
IOU_POINTS = 100_000
SCORE_SURFACE_SAMPLES = SURFACE_SAMPLES
RUN_FILES = ("config.json", "checkpoint.pt", "ground_truth.ply", "mesh.ply", "extraction.json", "metrics.json", "omega.json")
Frame = Literal["normalised", "original"]


@dataclass(frozen=True)
class RunPaths:
    """Where each file of a run folder lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def ground_truth(self) -> Path:
        return self.root / "ground_truth.ply"

    @property
    def mesh(self) -> Path:
        return self.root / "mesh.ply"

    @property
    def extraction(self) -> Path:
        return self.root / "extraction.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def omega(self) -> Path:
        return self.root / "omega.json"


def refuse_run_file(path: Path, option: str) -> None:
    """A ``UserError`` when ``path`` is one of a run folder's own files (its config, checkpoint,
    ground truth, mesh, extraction or metrics): writing there would corrupt that run."""
    path = Path(path).resolve()
    if path.name in RUN_FILES and (path.parent / "config.json").exists():
        raise UserError(f"{option} {path}: that is the run file {path.name} of {path.parent}; choose another path")


def load_ground_truth(source: str) -> GroundTruth:
    """The named source or path as a ``GroundTruth``; data errors become one-line ``UserError``s."""
    from sine_fields.data.meshes import load_mesh
    from sine_fields.data.recipes import DataError

    try:
        mesh = load_mesh(source)
    except DataError as error:
        raise UserError(str(error)) from None
    return GroundTruth(mesh, name=source)


def _read_mesh(path: Path, root: Path) -> trimesh.Trimesh:
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # trimesh raises many types for a damaged file; one line is enough
        raise UserError(f"{root}: cannot read {path.name} ({type(error).__name__}); run `sine-fields extract {root}` to write it again") from None
    if not isinstance(mesh, trimesh.Trimesh):  # an empty mesh file loads as an empty scene
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    return mesh


class ShapeRun:
    """One run folder: its config, field, meshes (in either frame), ground truth, extraction and metrics.

    Open a finished (or interrupted) run with ``ShapeRun.open``; make one with ``ShapeRun.fit``.
    """

    def __init__(self, root: Path, config: dict) -> None:
        self.paths = RunPaths(Path(root))
        self.config = config
        """config.json: mesh source, normalisation, field and training configs, parameter count."""
        try:
            self.field_config = FieldConfig.from_dict(config["field"])
            self.train_config = TrainConfig(**config["train"])
            self.normalisation = Normalisation.from_dict(config["normalisation"])
        except (KeyError, TypeError, ValueError) as error:  # a config.json this version cannot read
            raise UserError(f"{self.paths.config}: written by another version of sine-fields ({type(error).__name__}: "
                            f"{error}); fit it again") from None

    # ----- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str) -> "ShapeRun":
        """Read a run's config (a finished or interrupted fit); a folder that is not one is a ``UserError``."""
        paths = RunPaths(Path(root).expanduser())
        if not paths.root.exists():
            raise UserError(f"{paths.root}: no such run folder")
        if not paths.root.is_dir():
            raise UserError(f"{paths.root} is not a folder")
        if not paths.config.exists():
            raise UserError(f"{paths.root} holds no config.json: not a sine-fields run folder")
        config = read_json(paths.config)
        if config.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{paths.config}: format_version {config.get('format_version')!r}, this version reads {FORMAT_VERSION}")
        if not paths.checkpoint.exists():
            raise UserError(f"{paths.root} holds no checkpoint.pt: run `sine-fields fit` with the same options to finish it")
        return cls(paths.root, config)

    def require(self, *names: str) -> "ShapeRun":
        """Check that the run has these files (``RUN_FILES`` names); says how to make the missing ones."""
        missing = [name for name in names if not (self.root / name).exists()]
        if missing:
            raise UserError(f"{self.root}: incomplete run, no {', '.join(missing)}; run the same `sine-fields fit` "
                            "command again to finish it")
        return self

    # ----- what it holds ------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.paths.root

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def mesh_source(self) -> str:
        """The ground truth's source name or path, as given to ``sine-fields fit --mesh``."""
        return str(self.config["mesh"])

    @property
    def target(self) -> str:
        return self.field_config.target

    @property
    def summary(self) -> dict:
        """``field_summary`` of the field: kind, rank, omega, activation, width."""
        return field_summary(self.field_config)

    @property
    def fit_config(self) -> FitConfig:
        """The fit as it was asked for (the extraction settings of the last extraction, if any): omega is
        "auto" when a probe chose it (omega.json); ``field_config`` holds the chosen number."""
        extract = None
        if self.paths.extraction.exists():
            info = self.extraction
            extract = ExtractConfig(int(info["resolution"]), info["method"])
        field = replace(self.field_config, omega="auto") if self.paths.omega.exists() else self.field_config
        return FitConfig(self.mesh_source, field, self.train_config, extract or ExtractConfig())

    @property
    def metrics(self) -> dict:
        """metrics.json (``METRIC_KEYS``, timings, final loss)."""
        if not self.paths.metrics.exists():
            raise UserError(f"{self.root} has no metrics.json: not a finished sine-fields run; run the same "
                            "`sine-fields fit` command again to finish it")
        metrics = read_json(self.paths.metrics)
        if "num_parameters" not in metrics:
            raise UserError(f"{self.paths.metrics}: no num_parameters; run `sine-fields eval {self.root}` to score it again")
        return metrics

    @property
    def extraction(self) -> dict:
        """extraction.json: resolution, method, level, field_queries, seconds, mesh path."""
        if not self.paths.extraction.exists():
            raise UserError(f"{self.root} has no extraction.json: run `sine-fields extract {self.root}` first")
        return read_json(self.paths.extraction)

    @property
    def num_parameters(self) -> int:
        """Exact parameter count of the field, as recorded by the fit."""
        return int(self.config["num_parameters"])

    def load_field(self, device="cpu") -> ShapeField:
        """The trained ``ShapeField`` on ``device``, in eval mode."""
        try:
            return load_field(self.field_config, self.paths.checkpoint, torch_device(str(device)))
        except RuntimeError as error:  # tensor shapes differ: config.json and the checkpoint disagree
            raise UserError(f"{self.root}: checkpoint.pt does not match config.json ({str(error).splitlines()[0]}); fit it again") from None

    def ground_truth(self) -> GroundTruth:
        """The copy of the ground truth saved at fit time, so a run scores the same wherever it moves."""
        self.require("ground_truth.ply")
        return load_ground_truth(str(self.paths.ground_truth))

    def ground_truth_mesh(self, frame: Frame = "normalised") -> trimesh.Trimesh:
        """ground_truth.ply as a plain mesh (no inside test), in either frame."""
        self.require("ground_truth.ply")
        return self.mesh(frame, self.paths.ground_truth)

    def mesh_path(self) -> Path:
        """The mesh the last extraction wrote (``mesh.ply`` unless ``extract --mesh`` chose another)."""
        if not self.paths.extraction.exists():
            return self.paths.mesh
        return self.root / self.extraction.get("mesh", "mesh.ply")

    def mesh(self, frame: Frame = "normalised", path: Path | None = None) -> trimesh.Trimesh:
        """The extracted mesh (default ``mesh.ply``) in the normalised frame (where fields are
        evaluated and metrics reported) or in the ground truth's own coordinates; may have no faces."""
        path = self.paths.mesh if path is None else Path(path)
        if not path.exists():
            raise UserError(f"{path} is missing: run `sine-fields extract {self.root}` to write it again")
        mesh = _read_mesh(path, self.root)
        if frame == "normalised" and len(mesh.vertices):
            mesh = trimesh.Trimesh(self.normalisation.apply(mesh.vertices), mesh.faces, process=False)
        return mesh

    # ----- the steps ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, root: Path | str, config: FitConfig, device: str = "auto", progress: bool = True) -> "ShapeRun":
        """Fit, extract and score one run in ``root`` (resuming the same fit); metrics in ``run.metrics``."""
        config.check()
        torch_dev = torch_device(device)
        gt = probe = None
        if config.field.omega == "auto":  # the probe needs the data; it replaces "auto" by the chosen number
            gt = load_ground_truth(config.mesh)
            config, probe, probe_state = cls._resolve_omega(Path(root), config, gt, torch_dev, progress)
        field = new_field(config.field, config.train.seed, torch_dev)  # the one field of this fit
        gt = load_ground_truth(config.mesh) if gt is None else gt
        run = cls._create(Path(root), config, gt, field.num_parameters())
        if probe is not None:  # the chosen candidate's probe state is where this fit starts
            atomic_write_json(run.paths.omega, probe.to_dict())
            if not run.paths.checkpoint.exists():
                save_checkpoint(run.paths.checkpoint, probe_state)
        result = fit(gt, field, config.train, checkpoint=run.paths.checkpoint, progress=progress)
        start = time.perf_counter()
        extraction = run.extract(result.field, config.extract, progress=progress)
        # Scored as extracted, in the normalised frame (the file on disk is in the original one).
        mesh = trimesh.Trimesh(extraction.vertices, extraction.faces, process=False)
        metrics = run._metrics(gt, result.field, mesh, extraction.field_queries)
        metrics["timings"] = {"fit_seconds": round(result.seconds, 2), "resumed_from_step": result.resumed_from,
                              "extract_seconds": round(extraction.seconds, 2),
                              "eval_seconds": round(time.perf_counter() - start - extraction.seconds, 2),
                              "device": str(torch_dev)}
        if run.paths.omega.exists():
            metrics["timings"]["omega_probe_seconds"] = read_json(run.paths.omega)["seconds"]
        metrics["final_loss"] = result.losses[-1] if result.losses else None
        atomic_write_json(run.paths.metrics, metrics)
        return run

    @classmethod
    def _resolve_omega(cls, root: Path, config: FitConfig, gt: GroundTruth, device, progress: bool):
        """``--omega auto``: the omega this run folder recorded (a resumed run does not probe again), or a
        new probe's choice; returns the config with a number, and the probe and its state when one ran."""
        from rich.progress import Progress

        from sine_fields.shapes.omega import choose_omega

        paths = RunPaths(root)
        if paths.config.exists():
            if paths.omega.exists():
                chosen = float(read_json(paths.omega)["chosen"])
                return replace(config, field=replace(config.field, omega=chosen)), None, None
            fixed = read_json(paths.config).get("field", {}).get("mlp", {}).get("omega")
            raise UserError(f"{root} holds a run fitted with omega {fixed} (not --omega auto); pass --omega {fixed} to "
                            "resume it, or choose a new --output folder")
        cls._refuse_foreign(root)
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("probe omega (--omega auto)", total=None)
            return choose_omega(gt, config, device, on_candidate=lambda done, total: bar.update(task, completed=done, total=total))

    @staticmethod
    def _refuse_foreign(root: Path) -> None:
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root} is not empty and holds no sine-fields run; choose a new or empty --output folder")

    @classmethod
    def _create(cls, root: Path, config: FitConfig, gt: GroundTruth, num_parameters: int) -> "ShapeRun":
        """The run folder for ``config``: a new one (config.json and ground truth written) or the same
        fit to resume; a folder holding anything else is refused."""
        paths = RunPaths(root)
        run_config = {"format_version": FORMAT_VERSION, **config.to_dict(),
                      "normalisation": gt.normalisation.to_dict(), "watertight": gt.watertight,
                      "num_parameters": num_parameters, "summary": field_summary(config.field)}
        if paths.config.exists():
            existing = read_json(paths.config)
            if {k: existing.get(k) for k in config.to_dict()} != config.to_dict():
                raise UserError(f"{root} holds another run (its config.json differs); choose a new --output folder")
            return cls(root, existing)
        cls._refuse_foreign(root)
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(paths.config, run_config)
        export_mesh(gt.original.vertices, gt.original.faces, paths.ground_truth)
        return cls(root, run_config)

    def extract(self, field: ShapeField, config: ExtractConfig, level: float | None = None, mesh_path: Path | None = None,
                progress: bool = True) -> Extraction:
        """Mesh ``field`` at ``level`` (the field's units; None: the surface); writes the mesh in the
        original frame (default ``mesh.ply``) and extraction.json; returns the normalised-frame mesh."""
        inside_level = self.field_config.inside_sign * self.field_config.raw_level(level)
        mesh_path = self.paths.mesh if mesh_path is None else Path(mesh_path)
        from rich.progress import Progress

        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task(f"extract {config.method} {config.resolution}^3", total=None)
            result = extract(field.inside_values, config.resolution, config.method, level=inside_level,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
        export_mesh(self.normalisation.invert(result.vertices), result.faces, mesh_path)
        info = result.info() | {"level": self.field_config.surface_level if level is None else level,
                                "level_units": self.field_config.level_units,
                                # Relative inside the run folder (the folder can move), absolute elsewhere.
                                "mesh": str(mesh_path.relative_to(self.root)) if mesh_path.is_relative_to(self.root)
                                else str(mesh_path.resolve())}
        atomic_write_json(self.paths.extraction, info)
        return result

    def _metrics(self, gt: GroundTruth, field: ShapeField, mesh: trimesh.Trimesh, field_queries: int) -> dict:
        """``METRIC_KEYS`` of a normalised-frame mesh and its field: the one place a metric is added."""
        uniform, near = evaluation_points(gt, IOU_POINTS)
        metrics = {
            "iou": iou(field.inside(uniform.points), uniform.occupancy),
            "iou_near_surface": iou(field.inside(near.points), near.occupancy),
            **surface_metrics(mesh, gt.mesh, samples=SCORE_SURFACE_SAMPLES),
            "num_parameters": field.num_parameters(),
            "field_queries": int(field_queries),
        }
        assert tuple(metrics) == METRIC_KEYS
        return metrics

    def score(self, device: str = "auto") -> dict:
        """Re-score the run's current mesh and field; rewrites metrics.json and returns it."""
        extraction = self.extraction
        mesh = self.mesh("normalised", self.mesh_path())
        metrics = self._metrics(self.ground_truth(), self.load_field(device), mesh, extraction["field_queries"])
        previous = read_json(self.paths.metrics) if self.paths.metrics.exists() else {}
        metrics["timings"] = previous.get("timings", {})
        metrics["final_loss"] = previous.get("final_loss")
        atomic_write_json(self.paths.metrics, metrics)
        return metrics
