"""A run folder: fit -> extract -> evaluate, each step reading and writing files in one folder.

``DIR/config.json``     what was fitted (mesh source, normalisation, field and training configs)
``DIR/checkpoint.pt``   model, optimiser and batch-order state (resumable)
``DIR/ground_truth.ply`` the ground-truth mesh, in its own coordinates (for viewers and reports)
``DIR/mesh.ply``        the extracted mesh, in the ground-truth mesh's own coordinates
``DIR/extraction.json`` resolution, method, level, field_queries, seconds
``DIR/metrics.json``    ``METRIC_KEYS`` plus timings

Every JSON and mesh is written atomically. A folder that holds a different run, or files that are not
a run's, is refused rather than overwritten; the same command run again resumes.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from sine_fields.errors import UserError
from sine_fields.io import atomic_write_json as write_json
from sine_fields.shapes.export import export_mesh, read_json
from sine_fields.shapes.extract import Extraction, extract
from sine_fields.shapes.field import LEVEL, FieldConfig, ShapeField, field_summary
from sine_fields.shapes.fit import TrainConfig, fit, load_field, pick_device
from sine_fields.shapes.ground_truth import GroundTruth, Normalisation
from sine_fields.shapes.metrics import METRIC_KEYS, SURFACE_SAMPLES, iou, surface_metrics
from sine_fields.shapes.sampling import evaluation_points

__all__ = ["RunPaths", "evaluate_run", "extract_run", "fit_run", "load_ground_truth", "open_run", "surface_level"]

FORMAT_VERSION = 1
# Points per IoU set (uniform and near-surface each): Occupancy Networks uses 100k uniform points.
IOU_POINTS = 100_000
SCORE_SURFACE_SAMPLES = SURFACE_SAMPLES
ExtractMethod = Literal["dense", "coarse-to-fine"]


@dataclass(frozen=True)
class RunPaths:
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


def load_ground_truth(source: str) -> GroundTruth:
    """The named source or path as a ``GroundTruth``; data errors become one-line ``UserError``s."""
    from sine_fields.data.meshes import load_mesh
    from sine_fields.data.recipes import DataError

    try:
        mesh = load_mesh(source)
    except DataError as error:
        raise UserError(str(error)) from None
    return GroundTruth(mesh, name=source)


def surface_level(target: str, level: float | None) -> float:
    """The user's level (a probability for occupancy, a distance for SDF; None = the surface) in the
    field's output units (logit / distance)."""
    if level is None:
        return LEVEL
    if target == "occupancy":
        if not 0 < level < 1:
            raise UserError(f"--level for an occupancy field is a probability in (0, 1), got {level}")
        return math.log(level / (1 - level))
    return float(level)


def _oriented(field: ShapeField):
    """The field as a numpy function that is larger inside, as extraction expects."""
    sign = 1.0 if field.config.target == "occupancy" else -1.0
    return lambda points: sign * field.evaluate(points)


def _run_config(source: str, gt: GroundTruth, config: FieldConfig, train: TrainConfig, num_parameters: int) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "mesh": source,
        "normalisation": gt.normalisation.to_dict(),
        "watertight": gt.watertight,
        "field": config.to_dict(),
        "train": train.to_dict(),
        "num_parameters": num_parameters,
        "summary": field_summary(config),
    }


def _check_output(paths: RunPaths, config: dict) -> bool:
    """True to resume an identical run; raises if the folder holds something else."""
    if paths.config.exists():
        existing = read_json(paths.config)
        same = {k: existing.get(k) for k in ("mesh", "field", "train")} == {k: config[k] for k in ("mesh", "field", "train")}
        if not same:
            raise UserError(f"{paths.root} holds another run (its config.json differs); choose a new --output folder")
        return True
    if paths.root.exists() and any(paths.root.iterdir()):
        raise UserError(f"{paths.root} is not empty and holds no sine-fields run; choose a new or empty --output folder")
    return False


@dataclass
class OpenRun:
    paths: RunPaths
    config: dict
    field_config: FieldConfig


def open_run(root: Path) -> OpenRun:
    """Read a finished (or interrupted) run's config; a folder that is not a run is a ``UserError``."""
    paths = RunPaths(Path(root))
    if not paths.root.is_dir():
        raise UserError(f"{paths.root} is not a folder")
    if not paths.config.exists():
        raise UserError(f"{paths.root} holds no config.json: not a sine-fields run folder")
    config = read_json(paths.config)
    if config.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{paths.config}: format_version {config.get('format_version')!r}, this version reads {FORMAT_VERSION}")
    if not paths.checkpoint.exists():
        raise UserError(f"{paths.root} holds no checkpoint.pt: run `sine-fields fit` with the same options to finish it")
    return OpenRun(paths, config, FieldConfig.from_dict(config["field"]))


def _extract_and_save(run: OpenRun, field: ShapeField, resolution: int, method: ExtractMethod, level: float | None,
                      mesh_path: Path, progress: bool) -> Extraction:
    value = surface_level(run.field_config.target, level)
    sign = 1.0 if run.field_config.target == "occupancy" else -1.0
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"extract {method} {resolution}^3", total=None)
        result = extract(_oriented(field), resolution, method, level=sign * value,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    normalisation = Normalisation.from_dict(run.config["normalisation"])
    export_mesh(normalisation.invert(result.vertices), result.faces, mesh_path)
    occupancy = run.field_config.target == "occupancy"
    surface = 0.5 if occupancy else 0.0  # LEVEL in the user's units: probability 0.5, distance 0
    info = result.info() | {"level": surface if level is None else level,
                            "level_units": "probability" if occupancy else "distance",
                            # Relative inside the run folder (the folder can move), absolute elsewhere.
                            "mesh": str(mesh_path.relative_to(run.paths.root)) if mesh_path.is_relative_to(run.paths.root)
                            else str(mesh_path.resolve())}
    write_json(run.paths.extraction, info)
    return result


def _score(gt: GroundTruth, field: ShapeField, mesh_path: Path, field_queries: int) -> dict:
    uniform, near = evaluation_points(gt, IOU_POINTS)
    level = LEVEL
    mesh = trimesh.load(mesh_path, force="mesh", process=False)
    if not isinstance(mesh, trimesh.Trimesh):  # an empty file loads as an empty scene
        mesh = trimesh.Trimesh()
    # Metrics live in the normalised frame (see ground_truth.py); the mesh file is in the original one.
    normalised = trimesh.Trimesh(gt.normalisation.apply(mesh.vertices) if len(mesh.vertices) else np.zeros((0, 3)),
                                 mesh.faces, process=False)
    inside = _oriented(field)
    metrics = {
        "iou": iou(inside(uniform.points) > level, uniform.occupancy),
        "iou_near_surface": iou(inside(near.points) > level, near.occupancy),
        **surface_metrics(normalised, gt.mesh, samples=SCORE_SURFACE_SAMPLES),
        "num_parameters": field.num_parameters(),
        "field_queries": int(field_queries),
    }
    assert tuple(metrics) == METRIC_KEYS
    return metrics


def fit_run(source: str, output: Path, config: FieldConfig, train: TrainConfig, resolution: int = 256,
            method: ExtractMethod = "coarse-to-fine", device: str = "auto", progress: bool = True) -> dict:
    """Fit, extract and score one run in ``output``; returns the metrics (also in metrics.json)."""
    paths = RunPaths(Path(output))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gt = load_ground_truth(source)
    for warning in caught:
        print(f"warning: {warning.message}")
    torch_device = pick_device(device)
    num_parameters = ShapeField(config).num_parameters()
    run_config = _run_config(source, gt, config, train, num_parameters)
    resuming = _check_output(paths, run_config)
    paths.root.mkdir(parents=True, exist_ok=True)
    if not resuming:
        write_json(paths.config, run_config)
        export_mesh(gt.original.vertices, gt.original.faces, paths.ground_truth)
    result = fit(gt, config, train, torch_device, checkpoint=paths.checkpoint, progress=progress)
    run = OpenRun(paths, run_config, config)
    start = time.perf_counter()
    extraction = _extract_and_save(run, result.field, resolution, method, None, paths.mesh, progress)
    metrics = _score(gt, result.field, paths.mesh, extraction.field_queries)
    metrics["timings"] = {"fit_seconds": round(result.seconds, 2), "resumed_from_step": result.resumed_from,
                          "extract_seconds": round(extraction.seconds, 2),
                          "eval_seconds": round(time.perf_counter() - start - extraction.seconds, 2),
                          "device": str(torch_device)}
    metrics["final_loss"] = result.losses[-1] if result.losses else None
    write_json(paths.metrics, metrics)
    return metrics


def extract_run(root: Path, resolution: int, method: ExtractMethod, level: float | None = None,
                mesh: Path | None = None, device: str = "auto", progress: bool = True) -> dict:
    """Re-extract a run's mesh (default ``DIR/mesh.ply``); returns extraction.json's content."""
    run = open_run(root)
    field = load_field(run.field_config, run.paths.checkpoint, pick_device(device))
    target = Path(mesh) if mesh is not None else run.paths.mesh
    _extract_and_save(run, field, resolution, method, level, target, progress)
    return read_json(run.paths.extraction)


def evaluate_run(root: Path, device: str = "auto") -> dict:
    """Re-score a run's current mesh and field; rewrites metrics.json and returns it."""
    run = open_run(root)
    if not run.paths.extraction.exists():
        raise UserError(f"{run.paths.root} has no extraction.json: run `sine-fields extract {run.paths.root}` first")
    extraction = read_json(run.paths.extraction)
    mesh_path = run.paths.root / extraction.get("mesh", "mesh.ply")
    if not mesh_path.exists():
        raise UserError(f"{mesh_path} is missing: run `sine-fields extract {run.paths.root}` to write it again")
    # The copy saved at fit time, so a run scores the same wherever it is moved or re-run from.
    gt = load_ground_truth(str(run.paths.ground_truth))
    field = load_field(run.field_config, run.paths.checkpoint, pick_device(device))
    metrics = _score(gt, field, mesh_path, extraction["field_queries"])
    previous = read_json(run.paths.metrics) if run.paths.metrics.exists() else {}
    metrics["timings"] = previous.get("timings", {})
    metrics["final_loss"] = previous.get("final_loss")
    write_json(run.paths.metrics, metrics)
    return metrics
