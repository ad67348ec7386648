"""CLI commands of the shape pipeline: ``fit``, ``extract``, ``eval``, ``compare``, ``data list|get``.

Each command is a dataclass that tyro turns into flags (attribute docstrings are the ``--help``) and
whose ``main()`` runs it, as nerfstudio's ``ns-export`` does. ``fit`` holds the config tree itself
(``FitConfig``: mesh, field, train, extract), with the prefixes left out so the flags stay short.
"""

from __future__ import annotations

from dataclasses import dataclass, field as default
from pathlib import Path
from typing import Annotated

import tyro

from sine_fields.errors import UserError
from sine_fields.shapes.config import ExtractConfig, FitConfig
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.fit import TrainConfig

Flat = tyro.conf.OmitArgPrefixes
"""A nested config whose flags keep their own names (``--rank``, not ``--field.rank``)."""
Untitled = tyro.conf.arg(help="")
"""No description under the group's title: the flags' own help says it."""


def _print_metrics(root: Path, metrics: dict) -> None:
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                      if not isinstance(v, dict))
    print(f"{root}: {shown}")


def check_new_file(path: Path, option: str, overwrite: bool) -> None:
    """Refuse to write ``path`` when it is a run's own file, or exists and ``overwrite`` is off."""
    from sine_fields.shapes.run import refuse_run_file

    refuse_run_file(path, option)
    if Path(path).exists() and not overwrite:
        raise UserError(f"{option} {path} exists; pass --overwrite to replace it")


@dataclass
class Fit:
    """Fit a neural field to a mesh, extract its surface and score it; writes config.json,
    checkpoint.pt, ground_truth.ply, mesh.ply, extraction.json and metrics.json into OUTPUT.
    Run the same command again to resume an interrupted fit."""

    mesh: str
    """`bunny`, `cgal:<name>` (e.g. cgal:armadillo) or a mesh file (OFF, PLY, OBJ, STL, GLB)."""
    output: Path
    """run folder (new or empty; or this same run, to resume)."""
    field: Annotated[FieldConfig, Flat, Untitled] = default(default_factory=FieldConfig)
    train: Annotated[TrainConfig, Flat, Untitled] = default(default_factory=TrainConfig)
    extract: Annotated[ExtractConfig, Flat, Untitled] = default(default_factory=ExtractConfig)
    device: str = "auto"
    """auto (CUDA if available), cpu, cuda, cuda:1, ..."""

    @property
    def config(self) -> FitConfig:
        return FitConfig(self.mesh, self.field, self.train, self.extract)

    def main(self) -> int:
        from sine_fields.shapes.run import ShapeRun

        run = ShapeRun.fit(self.output, self.config, device=self.device)
        _print_metrics(self.output, run.metrics)
        return 0


@dataclass
class Extract:
    """Re-extract the mesh of a finished run; writes the mesh and extraction.json."""

    run: tyro.conf.Positional[Path]
    """run folder written by `sine-fields fit`."""
    extract: Annotated[ExtractConfig, Flat, Untitled] = default(default_factory=ExtractConfig)
    level: float | None = None
    """iso-level: a probability for occupancy runs (default 0.5), a distance for sdf runs (default 0)."""
    mesh: Path | None = None
    """output mesh file (.ply, .obj, .off, .glb); default RUN/mesh.ply."""
    overwrite: bool = False
    """replace an existing --mesh file."""
    device: str = "auto"
    """auto, cpu, cuda, ..."""

    def main(self) -> int:
        from sine_fields.shapes.run import ShapeRun

        if self.mesh is not None:
            from sine_fields.shapes.export import MESH_EXPORT_FORMATS

            if self.mesh.suffix.lower() not in MESH_EXPORT_FORMATS:
                raise UserError(f"--mesh {self.mesh}: unsupported format {self.mesh.suffix or '(none)'!r}; expected one of {', '.join(MESH_EXPORT_FORMATS)}")
        self.extract.check()
        run = ShapeRun.open(self.run)
        if self.mesh is not None and self.mesh.resolve() != run.paths.mesh.resolve():
            check_new_file(self.mesh, "--mesh", self.overwrite)
        run.field_config.raw_level(self.level)  # a bad level fails before the field is loaded
        run.extract(run.load_field(self.device), self.extract, self.level, self.mesh)
        print(f"{self.run}: {run.extraction}")
        return 0


@dataclass
class Score:
    """Re-score a run's mesh and field; rewrites metrics.json. Given a packed file (sine-fields pack)
    and its ground truth (--mesh), scores what the file unpacks to and writes nothing."""

    run: tyro.conf.Positional[Path]
    """run folder written by `sine-fields fit`, or a packed file written by `sine-fields pack`."""
    device: str = "auto"
    """auto, cpu, cuda, ..."""
    mesh: str | None = None
    """packed files only: the ground truth (`bunny`, `cgal:<name>` or a mesh file)."""
    resolution: int = 256
    """packed files only: extraction grid cells per axis (coarse-to-fine: 32 * 2^m)."""

    def main(self) -> int:
        from sine_fields.shapes.run import ShapeRun

        if self.run.is_file():  # a packed shape: scored on what it unpacks to
            from sine_fields.shapes.pack_commands import evaluate_packed

            _print_metrics(self.run, evaluate_packed(self.run, self.mesh, self.resolution, device=self.device))
            return 0
        _print_metrics(self.run, ShapeRun.open(self.run).score(self.device))
        return 0


@dataclass
class Compare:
    """Print a markdown table of runs side by side (and write it to OUTPUT if given)."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """run folders."""
    output: Path | None = None
    """optional markdown file to write the table to."""
    overwrite: bool = False
    """replace an existing OUTPUT file."""

    def main(self) -> int:
        from sine_fields.shapes.report import comparison_table, load_runs

        if self.output is not None:
            check_new_file(self.output, "--output", self.overwrite)
        table = comparison_table(load_runs(self.runs))
        print(table)
        if self.output is not None:
            from sine_fields.io import atomic_write_text

            atomic_write_text(self.output, table + "\n")
        return 0


def data_list() -> int:
    """List the named mesh sources and whether they are cached."""
    from sine_fields.data.meshes import describe_sources
    from sine_fields.data.recipes import cache_dir

    print(f"cache: {cache_dir()} (set $SINE_FIELDS_CACHE to move it)")
    for name, description in describe_sources():
        print(f"  {name:<12} {description}")
    from sine_fields.data.scenes import describe_scenes  # named multi-view scenes (`data scene NAME`)

    print("scenes:")
    for name, description in describe_scenes():
        print(f"  {name:<12} {description}")
    return 0


def data_get(name: tyro.conf.Positional[str]) -> int:
    """Fetch a named mesh into the cache (once) and print its path and size.

    Args:
        name: bunny or cgal:<name>.
    """
    from sine_fields.data.meshes import resolve_mesh
    from sine_fields.shapes.run import load_ground_truth

    gt = load_ground_truth(name)  # fetches, converts and checks the mesh
    print(f"{name}: {resolve_mesh(name)} ({len(gt.original.vertices)} vertices, {len(gt.original.faces)} faces, "
          f"watertight {gt.watertight})")
    return 0
