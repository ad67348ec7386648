"""``sine-fields pack`` / ``unpack`` / ``fit-many``, and scoring a packed file (``sine-fields eval SHAPE.sfz --mesh GT``).

The library functions here (``pack_run``, ``extract_packed``, ``score_packed``) are what the commands,
``fit-many`` and the compression benchmark share: a run folder in, a packed file's bytes out; a packed
file in, a mesh (and its metrics against a ground truth) out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field as default
from pathlib import Path
from typing import Annotated, Literal

import trimesh
import tyro

from sine_fields.errors import UserError
from sine_fields.shapes.config import ExtractConfig, FitConfig
from sine_fields.shapes.extract import Extraction
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.fit import TrainConfig
from sine_fields.shapes.pack import BITS, PackedShape, code_widths, load_packed, pack_bytes

__all__ = ["FINETUNE_STEPS", "FitMany", "Pack", "Unpack", "evaluate_packed", "extract_packed", "finetune_for_pack", "pack_run",
           "score_packed", "surface_chamfer"]

Method = Literal["dense", "coarse-to-fine"]
# Quantisation-aware fine-tuning for 8-bit files, towards the run's own outputs (``finetune_for_pack``).
# Measured on the rank-1 bunny by benchmarks/pack_precision.py: with every tensor at 8 bits it halves the
# surface's distance to the run's mesh (0.013 -> 0.0056) but 600 steps stop there too, above the 0.005 asked
# for; with the sine factors at SINE_FACTOR_BITS it takes the distance from 0.0026 to 0.0014, at about a minute of
# CPU time per pack.
FINETUNE_STEPS = 200
FINETUNE_LR = 1e-4


def _open_run(root: Path):
    """The finished run in ``root``: the one place that knows how run folders are read."""
    from sine_fields.shapes.run import ShapeRun

    run = ShapeRun.open(root)
    run.metrics  # noqa: B018 - raises a one-line UserError when the fit is not finished
    return run


def finetune_for_pack(run, field, steps: int, widths: dict[str, int], lr: float = FINETUNE_LR,
                      target: Literal["run", "labels"] = "run", block: int = 0, affine_dtype=None) -> list[float]:
    """Quantisation-aware fine-tuning of ``field`` (the run's trained field, changed in place) on the run's
    own training pool and loss, with the codes of ``widths`` in the loop.

    ``target="run"`` fits the quantised field to the trained field's own outputs (its probabilities, or its
    distances), ``"labels"`` to the ground truth's: a packed file should hold the run's shape, and on a
    run that stopped short of convergence the labels keep training it, moving its surface away from the
    run's (measured by benchmarks/pack_precision.py)."""
    import torch

    from sine_fields.shapes.fit import _loss
    from sine_fields.shapes.qat import finetune_quantised
    from sine_fields.shapes.sampling import training_points

    train = run.train_config
    pool = training_points(run.ground_truth(), train.samples, seed=train.seed)
    points = torch.from_numpy(pool.points).to(field.device)
    if target == "labels":
        key = "occupancy" if run.field_config.target == "occupancy" else "sdf"
        values = torch.from_numpy(getattr(pool, key).astype("float32")).to(field.device)
    else:
        with torch.no_grad():
            raw = torch.cat([field(chunk) for chunk in points.split(65536)])
        # Occupancy: the trained probabilities as soft BCE targets; SDF: its distances for the L1 loss.
        values = torch.sigmoid(raw) if run.field_config.target == "occupancy" else raw
    return finetune_quantised(field, points, values, lambda f, p, t: _loss(f, p, t, train), steps,
                              train.batch_size, lr, widths, seed=train.seed, block=block,
                              affine_dtype=torch.float32 if affine_dtype is None else affine_dtype)


def pack_run(root: Path, bits: int = 16, finetune_steps: int = 0, device: str = "cpu") -> bytes:
    """The packed file's content for the finished run in ``root``; at 8 bits, ``finetune_steps`` of
    quantisation-aware fine-tuning first (the run itself is not changed)."""
    if bits not in BITS:
        raise UserError(f"--bits must be one of {', '.join(map(str, BITS))}, got {bits}")
    if finetune_steps < 0:
        raise UserError(f"--finetune-steps must be >= 0, got {finetune_steps}")
    run = _open_run(root)
    field = run.load_field(device)
    widths = code_widths(run.field_config, list(field.state_dict()), bits)
    if bits == 8 and finetune_steps:
        finetune_for_pack(run, field, finetune_steps, widths)
    return pack_bytes(run.field_config, field.state_dict(), run.normalisation, bits, widths)


def extract_packed(packed: PackedShape, resolution: int = 256, method: Method = "coarse-to-fine",
                   progress: bool = False) -> Extraction:
    """The packed field's surface (probability 0.5 / distance 0), in the normalised frame."""
    from rich.progress import Progress

    from sine_fields.shapes.extract import extract

    ExtractConfig(resolution, method).check()
    config = packed.field.config
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"extract {method} {resolution}^3", total=None)
        return extract(packed.field.inside_values, resolution, method, level=config.inside_sign * config.raw_level(None),
                       progress=lambda done, total: bar.update(task, completed=done, total=total))


def score_packed(packed: PackedShape, mesh: str, resolution: int = 256, method: Method = "coarse-to-fine",
                 progress: bool = False) -> dict:
    """The run metrics (``METRIC_KEYS``) of what ``packed`` unpacks to, against the ground truth ``mesh``
    (a source name or path): the extracted mesh for the surface metrics, the dequantised field for IoU."""
    import warnings

    import numpy as np

    from sine_fields.shapes.run import ShapeRun, load_ground_truth

    gt = load_ground_truth(mesh)
    stored, given = packed.normalisation, gt.normalisation
    offset = np.abs(np.asarray(stored.center) - np.asarray(given.center)).max() * given.scale
    if abs(stored.scale / given.scale - 1) > 1e-3 or offset > 1e-3:
        warnings.warn(f"{mesh}: its bounding box differs from that of the mesh the packed shape was fitted to; "
                      "the metrics compare shapes in different frames", stacklevel=2)
    extraction = extract_packed(packed, resolution, method, progress)
    surface = trimesh.Trimesh(extraction.vertices, extraction.faces, process=False)
    # The run's scorer, so that a packed file and its run are measured the same way; it reads nothing
    # from the run folder (``self`` is unused), hence no run here.
    return ShapeRun._metrics(None, gt, packed.field, surface, extraction.field_queries)


def _mean_distance_to_surface(source: trimesh.Trimesh, target: trimesh.Trimesh, samples: int, seed: int) -> float:
    """Mean exact distance from ``samples`` points on ``source`` to the triangles of ``target`` (open3d)."""
    import numpy as np
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(target.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(target.faces, dtype=np.uint32)))
    points = trimesh.sample.sample_surface(source, samples, seed=seed)[0]
    return float(scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy().mean())


def surface_chamfer(mesh: trimesh.Trimesh, reference: trimesh.Trimesh, samples: int = 50_000, seed: int = 0) -> float:
    """Chamfer-L1 between two surfaces: half the sum of the mean distances from ``samples`` points on each
    mesh to the other's triangles (inf when either has no faces).

    Points against the other surface rather than against its samples (the metrics' Chamfer): two samplings
    of one bunny are about 0.003 apart at 50k points (their spacing), which would hide a packed file's
    quantisation error of a thousandth."""
    if len(mesh.faces) == 0 or len(reference.faces) == 0:
        return float("inf")
    return 0.5 * (_mean_distance_to_surface(mesh, reference, samples, seed)
                  + _mean_distance_to_surface(reference, mesh, samples, seed))


def evaluate_packed(packed: Path, mesh: str | None, resolution: int = 256, method: Method = "coarse-to-fine",
                    device: str = "auto") -> dict:
    """Metrics of a packed file against the ground truth ``mesh`` (``sine-fields eval SHAPE.sfz --mesh GT``)."""
    from sine_fields.device import torch_device

    if mesh is None:
        raise UserError(f"{packed} is a packed shape: pass its ground truth with --mesh (a name such as bunny, or a file)")
    shape = load_packed(packed)
    shape.field.to(torch_device(device))
    return score_packed(shape, mesh, resolution, method, progress=True)


def _check_new_file(path: Path, option: str, overwrite: bool) -> None:
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{option} {path} exists; pass --overwrite to replace it")


@dataclass
class Pack:
    """Pack a finished shape run into one small file: the field's tensors as integer codes with one offset
    and step per row, its configuration and the normalisation back to the mesh's own coordinates. Prints
    the file's exact size in bytes."""

    run: tyro.conf.Positional[Path]
    """run folder written by `sine-fields fit`."""
    output: Path
    """the packed file to write (e.g. shape.sfz)."""
    bits: Literal[16, 8] = 16
    """16 (16-bit codes) or 8 (8-bit codes; wider ones for the factors of sine layers, whose error omega multiplies)."""
    finetune_steps: int = FINETUNE_STEPS
    """8 bits only: steps of quantisation-aware fine-tuning towards the run's own outputs on its training points (0: quantise as trained)."""
    overwrite: bool = False
    """replace OUTPUT if it exists."""
    device: str = "auto"
    """where the fine-tuning runs: auto (CUDA if available), cpu, cuda, ..."""

    def main(self) -> int:
        from sine_fields.device import torch_device
        from sine_fields.io import atomic_write_bytes

        _check_new_file(self.output, "--output", self.overwrite)
        data = pack_run(self.run, self.bits, self.finetune_steps if self.bits == 8 else 0, str(torch_device(self.device)))
        atomic_write_bytes(self.output, data)
        print(f"{self.output}: {len(data)} bytes ({self.bits}-bit)")
        return 0


@dataclass
class Unpack:
    """Rebuild a packed shape's field from the file alone and extract its surface, in the original
    mesh's coordinates."""

    packed: tyro.conf.Positional[Path]
    """a file written by `sine-fields pack`."""
    output: Path
    """mesh file to write (.ply, .obj, .off, .glb)."""
    resolution: int = 256
    """marching-cubes grid cells per axis (coarse-to-fine: 32 * 2^m)."""
    method: Method = "coarse-to-fine"
    """dense (every grid point) or coarse-to-fine (only near the surface)."""
    overwrite: bool = False
    """replace OUTPUT if it exists."""
    device: str = "auto"
    """auto (CUDA if available), cpu, cuda, ..."""

    def main(self) -> int:
        from sine_fields.device import torch_device
        from sine_fields.shapes.export import MESH_EXPORT_FORMATS, export_mesh

        if self.output.suffix.lower() not in MESH_EXPORT_FORMATS:
            raise UserError(f"--output {self.output}: unsupported mesh format {self.output.suffix or '(none)'!r}; "
                            f"expected one of {', '.join(MESH_EXPORT_FORMATS)}")
        _check_new_file(self.output, "--output", self.overwrite)
        ExtractConfig(self.resolution, self.method).check()
        shape = load_packed(self.packed)
        shape.field.to(torch_device(self.device))
        start = time.perf_counter()
        extraction = extract_packed(shape, self.resolution, self.method, progress=True)
        export_mesh(shape.normalisation.invert(extraction.vertices), extraction.faces, self.output)
        print(f"{self.output}: {len(extraction.vertices)} vertices, {len(extraction.faces)} faces ({self.method} "
              f"{self.resolution}^3, {extraction.field_queries} field queries, {time.perf_counter() - start:.1f} s)")
        return 0


def _fit_options():
    # fit's own option groups (same flags, same defaults, same help), so fit-many cannot drift from fit.
    from sine_fields.shapes.commands import Flat, Untitled

    return Flat, Untitled


_Flat, _Untitled = _fit_options()


@dataclass(kw_only=True)
class FitMany:
    """Fit one field per mesh, each as a Ray task (a local cluster unless --address is given), pack each
    run, and write OUTPUT/summary.md and OUTPUT/summary.csv. Run the same command again to resume:
    finished runs are skipped, interrupted ones continue from their checkpoints. A mesh that fails is
    reported with its reason while the others go on. Needs Ray: pip install -e '.[scale]'."""

    meshes: tyro.conf.Positional[tuple[str, ...]] = ()
    """mesh sources: `bunny`, `cgal:<name>` or mesh files."""
    list: Path | None = None
    """a text file of mesh sources, one per line (# starts a comment); added to MESHES."""
    output: Path
    """folder of the run folders (one per mesh) and the summary."""
    field: Annotated[FieldConfig, _Flat, _Untitled] = default(default_factory=FieldConfig)
    train: Annotated[TrainConfig, _Flat, _Untitled] = default(default_factory=TrainConfig)
    extract: Annotated[ExtractConfig, _Flat, _Untitled] = default(default_factory=ExtractConfig)
    address: str | None = None
    """address of a running Ray cluster to join (e.g. 10.0.0.1:6379 or auto); default: start a local one."""
    cpus_per_fit: int = 1
    """CPUs Ray reserves for each fit, and torch threads inside it."""
    bits: tuple[Literal[16, 8], ...] = (16,)
    """packed sizes to report: the run is packed at each of these bit widths (shape-16bit.sfz, ...)."""
    finetune_steps: int = FINETUNE_STEPS
    """8 bits only: quantisation-aware fine-tuning steps before packing."""
    device: str = "cpu"
    """device of each fit: cpu, cuda, ... (auto picks CUDA when a worker sees one)."""
    executor: Literal["ray", "local"] = "ray"
    """ray: one Ray task per fit; local: the same fits one after another in this process (no cluster)."""

    def main(self) -> int:
        from sine_fields.shapes.many import fit_many, read_mesh_list

        meshes = list(self.meshes) + (read_mesh_list(self.list) if self.list is not None else [])
        config = FitConfig(meshes[0] if meshes else "", self.field, self.train, self.extract)
        result = fit_many(meshes, self.output, config, address=self.address, cpus_per_fit=self.cpus_per_fit,
                          bits=tuple(self.bits), finetune_steps=self.finetune_steps, device=self.device,
                          executor=self.executor)
        print(result.summary_md.read_text(), end="")
        print(f"summary: {result.summary_md} and {result.summary_csv}; {len(result.rows) - len(result.failed)} of "
              f"{len(result.rows)} meshes fitted")
        for row in result.failed:
            print(f"failed: {row['mesh']}: {row['reason']}")
        return 1 if result.failed else 0
