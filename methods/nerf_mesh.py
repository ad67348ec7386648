"""``sine-fields nerf-mesh CONFIG.yml --output DIR``: marching cubes on a trained nerfstudio model's density.

Works for our methods and for any stock model whose rendered field is a nerfstudio ``Field`` (see
``nerf_density``). The surface is extracted inside the scene box with the shape pipeline's extraction
(``sine_fields.shapes.extract``: coarse-to-fine or dense). That extraction works on a cubic grid over
the padded box ``[-0.55, 0.55]^3``; here ``[-0.5, 0.5]^3`` of it is mapped onto the scene box (axis by
axis) and the 10 % margin around it reads density 0, so a surface cut by the box is closed there
rather than left open, and nothing outside the box (where no camera constrains the model) is meshed.

Writes, in ``DIR``:

- ``mesh.ply``: the mesh in the dataset's frame (``transforms.json``'s frame: the dataparser's
  transform and scale are undone), so it overlays the ground truth and the cameras;
- ``extraction.json``: resolution, method, level (and how ``auto`` chose it), field queries, timings,
  the scene box and the dataparser transform, the checkpoint;
- ``metrics.json`` when the dataset folder holds the ground truth ``mesh.ply``: Chamfer-L1/L2, normal
  consistency and F-score in the shape pipeline's normalised frame (ground truth centred, longest side 1).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from sine_fields.errors import UserError
from sine_fields.io import atomic_write_json
from sine_fields.methods.interior import fill_enclosed
from sine_fields.methods.nerf_density import (
    SceneFrame,
    auto_level,
    default_auto_opacity,
    density_field,
    density_function,
)

try:  # only the CLI reads this marker
    from tyro.conf import Positional
except ImportError:  # pragma: no cover

    class Positional:  # type: ignore[no-redef]
        def __class_getitem__(cls, item):
            return item


__all__ = ["GridBox", "NerfMeshOptions", "check_output", "load_pipeline", "main", "mesh_pipeline", "parse_level", "score_mesh"]

log = logging.getLogger(__name__)

Method = Literal["coarse-to-fine", "dense"]
OUTPUT_FILES = ("mesh.ply", "extraction.json", "metrics.json")
GROUND_TRUTH = "mesh.ply"
# Half-extent of the grid region mapped onto the scene box; extraction's grid spans BOX_HALF = 0.55,
# so the scene box gets a 10 % margin of zero density on each side.
SCENE_HALF = 0.5


@dataclass
class NerfMeshOptions:
    """How to mesh a model (the command's flags, minus paths)."""

    resolution: int = 256
    """Marching-cubes cells per axis over the padded box (coarse-to-fine: 32 * 2^m)."""
    method: Method = "coarse-to-fine"
    """Extraction: coarse-to-fine (queries only near the surface) or dense (every grid point)."""
    level: float | None = None
    """Density iso-level in the model frame's units; None: auto (the density at which training rays'
    rendered opacity reaches ``auto_opacity``)."""
    auto_rays: int = 4096
    """Training rays marched to choose the auto level."""
    auto_opacity: float | None = None
    """Rendered opacity whose crossing along training rays gives the auto level; None: 0.1, or 0.2 when
    ``smooth`` filters the density (``nerf_density.default_auto_opacity``)."""
    smooth: float = 0.0
    """Standard deviation of a Gaussian filter applied to the density before the level and the mesh are
    taken, as a fraction of the scene box's longest side; 0: none. Needs every grid point (dense)."""
    seed: int = 0
    """Seed of the auto level's ray draw."""
    fill_interior: bool = True
    """Fill empty regions that neither the outside nor a camera reaches (no ray sees them) before
    meshing, so that marching cubes does not mesh the walls of bubbles inside an object (``interior``)."""

    @property
    def opacity(self) -> float:
        """The auto level's opacity: ``auto_opacity``, or the default for this ``smooth``."""
        return self.auto_opacity if self.auto_opacity is not None else default_auto_opacity(self.smooth)


@dataclass(frozen=True)
class GridBox:
    """Maps extraction's normalised grid to the scene box: ``model = center + grid * size``, for
    ``|grid| <= 0.5`` on every axis (the margin beyond reads zero density)."""

    low: np.ndarray
    high: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return (self.low + self.high) / 2

    @property
    def size(self) -> np.ndarray:
        return (self.high - self.low) / (2 * SCENE_HALF)

    def to_model(self, grid_points: np.ndarray) -> np.ndarray:
        return self.center + np.asarray(grid_points, dtype=np.float64) * self.size

    def to_grid(self, model_points: np.ndarray) -> np.ndarray:
        """The inverse of ``to_model``."""
        return (np.asarray(model_points, dtype=np.float64) - self.center) / self.size

    def inside(self, grid_points: np.ndarray) -> np.ndarray:
        return np.all(np.abs(grid_points) <= SCENE_HALF, axis=1)

    def to_index(self, model_points: np.ndarray, resolution: int) -> np.ndarray:
        """Fractional indices into extraction's ``(resolution + 1)^3`` grid of model-frame points."""
        from sine_fields.shapes.ground_truth import BOX_HALF

        return (self.to_grid(model_points) + BOX_HALF) * resolution / (2 * BOX_HALF)


def parse_level(text: str) -> float | None:
    """``auto`` -> None; a positive number -> that density; anything else is a ``UserError``."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--level must be 'auto' or a positive density, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise UserError(f"--level must be 'auto' or a positive density, got {text!r}")
    return value


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder without ``--overwrite`` (nothing is replaced unasked)."""
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; expected a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UserError(f"--output {output} exists and is not empty; pass --overwrite to replace its mesh and JSON")


def _dataset_folder(config) -> Path | None:
    data = config.pipeline.datamanager.data or getattr(config.pipeline.datamanager.dataparser, "data", None)
    if data is None:
        return None
    data = Path(data)
    return data.parent if data.suffix == ".json" else data


def load_pipeline(config_path: Path, data: Path | None = None):
    """``(config, pipeline, checkpoint, dataset folder)`` through nerfstudio's ``eval_setup``.

    Checkpoints are read from beside ``config.yml`` (``ns-train`` writes them there), so a run folder
    that was moved or a command run from another folder still loads; ``data`` replaces the dataset
    path recorded in the config. Every problem a user can fix is a ``UserError``.
    """
    import yaml
    from nerfstudio.engine.trainer import TrainerConfig

    config_path = Path(config_path).expanduser()
    if not config_path.is_file():
        raise UserError(f"{config_path}: no such file (expected the config.yml that ns-train wrote in its run folder)")
    try:
        recorded = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except Exception as error:  # yaml raises many types, and unpickling a class that moved raises others
        raise UserError(f"{config_path}: not a readable nerfstudio config ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    if not isinstance(recorded, TrainerConfig):
        raise UserError(f"{config_path}: not a nerfstudio config.yml (it holds a {type(recorded).__name__})")
    from nerfstudio.configs.method_configs import all_methods

    if recorded.method_name not in all_methods:
        raise UserError(f"{config_path}: method {recorded.method_name!r} is not installed here (ns-train --help lists the installed ones)")
    run_folder = config_path.parent.resolve()
    models = run_folder / recorded.relative_model_dir
    if not any(models.glob("step-*.ckpt")):
        raise UserError(f"{config_path}: no checkpoint (step-*.ckpt) in {models}; train longer than steps_per_save or copy the checkpoints there")
    dataset = Path(data).expanduser() if data is not None else _dataset_folder(recorded)
    if dataset is None or not dataset.exists():
        raise UserError(f"dataset {dataset} (recorded in {config_path}) does not exist; pass --data DIR")

    def update(config):
        # eval_setup loads from output_dir/experiment_name/method_name/timestamp/nerfstudio_models,
        # paths relative to wherever training ran; point all of it at the folder holding config.yml.
        config.output_dir, config.experiment_name, config.method_name, config.timestamp = run_folder, ".", ".", "."
        if data is not None:
            config.pipeline.datamanager.data = dataset
            config.pipeline.datamanager.dataparser.data = dataset
        return config

    from nerfstudio.utils.eval_utils import eval_setup

    # Our models allow-list the numpy globals their checkpoints hold when they are built; a stock
    # model's checkpoint holds the same ones.
    from sine_fields.methods.common import allow_checkpoint_globals

    allow_checkpoint_globals()
    _, pipeline, checkpoint, _ = eval_setup(config_path, test_mode="inference", update_config_callback=update)
    return recorded, pipeline, Path(checkpoint), dataset.parent if dataset.suffix == ".json" else dataset


def _count(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def score_mesh(mesh_vertices: np.ndarray, faces: np.ndarray, ground_truth: Path) -> dict:
    """Shape metrics of a dataset-frame mesh against the ground truth, in the normalised frame."""
    import trimesh

    from sine_fields.shapes.ground_truth import Normalisation
    from sine_fields.shapes.metrics import SURFACE_SAMPLES, surface_metrics

    truth = trimesh.load(ground_truth, force="mesh", process=False)
    if not isinstance(truth, trimesh.Trimesh) or len(truth.faces) == 0:
        raise UserError(f"{ground_truth}: the ground-truth mesh holds no triangles")
    normalisation = Normalisation.of(truth)
    truth_normalised = trimesh.Trimesh(normalisation.apply(truth.vertices), truth.faces, process=False)
    vertices = normalisation.apply(mesh_vertices) if len(mesh_vertices) else np.zeros((0, 3))
    predicted = trimesh.Trimesh(vertices, faces, process=False)
    metrics = surface_metrics(predicted, truth_normalised, samples=SURFACE_SAMPLES)
    return metrics | {"ground_truth": str(Path(ground_truth).resolve()), "normalisation": normalisation.to_dict(),
                      "frame": "normalised: ground truth centred, longest side 1"}


@dataclass
class SmoothedGrid:
    """The density on every extraction grid point, Gaussian-filtered, and read back anywhere by
    trilinear interpolation (so that the auto level and the mesh see the same filtered density)."""

    values: np.ndarray
    """``(n, n, n)`` filtered densities on the extraction grid (indexed [x, y, z])."""
    box: GridBox
    resolution: int
    sigma_cells: np.ndarray
    seconds: float

    def density_at(self, model_points: np.ndarray) -> np.ndarray:
        """Filtered density at ``(n, 3)`` model-frame points (the nearest grid value outside the grid)."""
        from scipy.ndimage import map_coordinates

        index = self.box.to_index(model_points, self.resolution)
        return map_coordinates(self.values, index.T, order=1, mode="nearest").astype(np.float32)


def smoothed_grid(grid_density, box: GridBox, resolution: int, smooth: float, progress=None) -> SmoothedGrid:
    """Evaluate ``grid_density`` on the whole extraction grid and filter it with a Gaussian whose
    standard deviation is ``smooth`` times the scene box's longest side.

    Why: a NeRF's density is only constrained where rays see a surface, and a small field leaves
    high-frequency noise in it that renders cancel but an iso-surface does not (many small sheets
    and pits, normals close to random). A filter about as wide as a pixel's footprint removes that
    noise; wider ones round off real detail.
    """
    from scipy.ndimage import gaussian_filter

    from sine_fields.shapes.extract import evaluate_dense
    from sine_fields.shapes.ground_truth import BOX_HALF

    started = time.perf_counter()
    values = evaluate_dense(grid_density, resolution, progress=progress)
    cell = box.size * (2 * BOX_HALF / resolution)  # model units per grid cell, per axis
    sigma_cells = smooth * float((box.high - box.low).max()) / cell
    filtered = gaussian_filter(values, sigma=tuple(sigma_cells), mode="nearest").astype(np.float32)
    return SmoothedGrid(filtered, box, resolution, sigma_cells, time.perf_counter() - started)


def mesh_pipeline(
    pipeline, output: Path, options: NerfMeshOptions, dataset: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None, extra: dict | None = None,
) -> dict:
    """Mesh a loaded pipeline into ``output``; returns extraction.json's content (with ``metrics`` when scored).

    ``pipeline`` needs ``model`` (with a density field, see ``density_field``) and
    ``datamanager.train_dataparser_outputs`` (cameras, scene box, dataparser transform), as every
    nerfstudio pipeline has. ``progress(stage, done, total)`` is told how each stage advances.
    """
    from sine_fields.shapes.export import export_mesh
    from sine_fields.shapes.extract import Extraction, check_resolution, evaluate, mesh_from_values
    from sine_fields.shapes.ground_truth import BOX_HALF

    try:
        check_resolution(options.resolution, options.method)
    except ValueError as error:
        raise UserError(f"--resolution: {error}") from None
    model = pipeline.model
    try:
        field_name, field = density_field(model)
    except ValueError as error:
        raise UserError(str(error)) from None
    outputs = pipeline.datamanager.train_dataparser_outputs
    frame = SceneFrame.of(outputs)
    aabb = np.asarray(outputs.scene_box.aabb.detach().cpu(), dtype=np.float64).reshape(2, 3)
    box = GridBox(aabb[0], aabb[1])
    raw_density = density_function(field)

    def grid_density(points: np.ndarray) -> np.ndarray:
        values = np.zeros(len(points), dtype=np.float32)
        inside = box.inside(points)
        if inside.any():
            values[inside] = raw_density(box.to_model(points[inside]))
        return values

    density, smoothed = raw_density, None
    if options.smooth > 0:
        smoothed = smoothed_grid(grid_density, box, options.resolution, options.smooth,
                                 progress=None if progress is None else lambda d, t: progress("density grid", d, t))
        density = smoothed.density_at

    started = time.perf_counter()  # after the smoothed grid, which the extraction's seconds count
    auto = None
    level = options.level
    if level is None:
        # Half an extraction cell along the smallest box side: finer than the mesh can show.
        step = float((box.size * 2 * BOX_HALF / options.resolution).min() / 2)
        try:
            auto = auto_level(density, outputs.cameras, aabb, step, rays=options.auto_rays, seed=options.seed,
                              progress=None if progress is None else lambda d, t: progress("auto level", d, t),
                              opacity=options.opacity)
        except ValueError as error:
            raise UserError(f"--level auto: {error}; pass a fixed --level") from None
        level = auto.level
    level_seconds = time.perf_counter() - started

    extracted = time.perf_counter()
    if smoothed is not None:
        values, extraction_queries, method = smoothed.values, smoothed.values.size, "dense"
    else:
        values, extraction_queries = evaluate(grid_density, options.resolution, options.method, level=level,
                                              progress=None if progress is None else lambda d, t: progress("extract", d, t))
        method = options.method
    fill = None
    if options.fill_interior:
        cameras = outputs.cameras.camera_to_worlds[:, :3, 3].detach().cpu().numpy()
        values, fill = fill_enclosed(values, level, open_points=box.to_index(cameras, options.resolution))
    mesh_vertices, mesh_faces = mesh_from_values(values, options.resolution, level)
    result = Extraction(mesh_vertices, mesh_faces, options.resolution, method, level, extraction_queries,
                        time.perf_counter() - extracted + (smoothed.seconds if smoothed is not None else 0.0))
    vertices = frame.to_dataset(box.to_model(result.vertices)) if len(result.vertices) else np.zeros((0, 3))
    output.mkdir(parents=True, exist_ok=True)
    export_mesh(vertices, result.faces, output / "mesh.ply")
    info = result.info() | {
        "level": float(level),
        "level_method": "auto" if auto is not None else "fixed",
        "level_units": "density (per unit length in the model frame)",
        "auto_level": auto.info() if auto is not None else None,
        "field_queries": result.field_queries + (auto.queries if auto is not None else 0),
        "extraction_queries": result.field_queries,
        "level_seconds": round(level_seconds, 3),
        "smooth": options.smooth,
        "smooth_sigma_cells": None if smoothed is None else [round(float(c), 3) for c in smoothed.sigma_cells],
        "fill_interior": options.fill_interior,
        "interior_fill": fill.info() if fill is not None else None,
        "model": type(model).__name__,
        "density_field": field_name,
        "field_parameters": _count(field),
        "model_parameters": _count(model),
        "scene_box": aabb.tolist(),
        "frame": "dataset (the dataparser's transform and scale undone)",
        **frame.to_dict(),
        "mesh": "mesh.ply",
        **(extra or {}),
    }
    ground_truth = dataset / GROUND_TRUTH if dataset is not None else None
    metrics_path = output / "metrics.json"
    if ground_truth is not None and ground_truth.is_file():
        metrics = score_mesh(vertices, result.faces, ground_truth)
        metrics |= {"num_parameters": info["model_parameters"], "field_queries": info["field_queries"], "level": float(level),
                    "level_method": info["level_method"]}
        atomic_write_json(metrics_path, metrics)
        info["metrics"] = metrics
    else:
        log.info("no ground truth at %s: metrics.json not written", ground_truth)
        metrics_path.unlink(missing_ok=True)  # a stale score of an earlier mesh must not stay beside this one
    atomic_write_json(output / "extraction.json", {k: v for k, v in info.items() if k != "metrics"})
    return info


def main(
    config: Positional[Path],
    output: Path,
    resolution: int = NerfMeshOptions.resolution,
    method: Method = NerfMeshOptions.method,
    level: str = "auto",
    auto_rays: int = NerfMeshOptions.auto_rays,
    auto_opacity: float | None = None,
    smooth: float = NerfMeshOptions.smooth,
    fill_interior: bool = NerfMeshOptions.fill_interior,
    data: Path | None = None,
    overwrite: bool = False,
) -> int:
    """Mesh a trained nerfstudio model (marching cubes on its density inside the scene box) and score it
    against the dataset's ground-truth mesh.ply when there is one.

    Args:
        config: the config.yml of an ns-train run (its checkpoints are read from beside it).
        output: folder for mesh.ply (dataset frame), extraction.json and metrics.json.
        resolution: marching-cubes cells per axis (coarse-to-fine: 32 * 2^m, e.g. 128, 256, 512).
        method: coarse-to-fine (queries only near the surface) or dense (every grid point).
        level: density iso-level, or auto: the median density at which training rays' rendered opacity
            reaches --auto-opacity.
        auto_rays: training rays marched to choose the auto level.
        auto_opacity: the rendered opacity whose crossing gives the auto level (0.5: the median depth).
            Default: 0.1, or 0.2 with --smooth (the best on the measured scenes; the filter spreads the
            density outwards, so a low opacity is reached outside the surface).
        smooth: Gaussian filter on the density before meshing, its standard deviation as a fraction of the
            scene box's longest side (about one pixel's footprint works; 0: none). Evaluates every grid point.
        fill_interior: fill empty pockets that no camera can see (reached neither from outside the object nor
            from a camera) before meshing, so bubbles inside an object are not meshed as extra walls.
        data: dataset folder, if not where the config says (the ground truth is its mesh.ply).
        overwrite: replace the mesh and JSON in a non-empty output folder.
    """
    options = NerfMeshOptions(resolution=resolution, method=method, level=parse_level(level), auto_rays=auto_rays,
                              auto_opacity=auto_opacity, smooth=smooth, fill_interior=fill_interior)
    from sine_fields.shapes.extract import check_resolution

    try:  # before the (slow) model load
        check_resolution(resolution, method)
    except ValueError as error:
        raise UserError(f"--resolution: {error}") from None
    if auto_rays < 1:
        raise UserError(f"--auto-rays must be >= 1, got {auto_rays}")
    if auto_opacity is not None and not 0.0 < auto_opacity < 1.0:
        raise UserError(f"--auto-opacity must lie strictly between 0 and 1, got {auto_opacity}")
    if not (0.0 <= smooth < 0.5):
        raise UserError(f"--smooth must be a fraction of the scene box in [0, 0.5), got {smooth}")
    check_output(output, overwrite)
    _, pipeline, checkpoint, dataset = load_pipeline(config, data)

    from rich.progress import Progress

    with Progress(transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        info = mesh_pipeline(pipeline, output, options, dataset, progress,
                             extra={"config": str(Path(config).resolve()), "checkpoint": str(checkpoint)})
    text = (f"{output}/mesh.ply: {info['faces']:,} faces at level {info['level']:.4g} ({info['level_method']}), "
            f"{info['field_queries']:,} queries, {info['seconds'] + info['level_seconds']:.1f} s")
    if "metrics" in info:
        m = info["metrics"]
        text += (f"; chamfer_l1 {m['chamfer_l1']:.4g}, chamfer_l2 {m['chamfer_l2']:.4g}, "
                 f"normal_consistency {m['normal_consistency']:.4g}, fscore {m['fscore']:.4g}")
    else:
        text += f"; no ground truth {GROUND_TRUTH} in {dataset}, so no metrics.json"
    print(text)
    return 0
