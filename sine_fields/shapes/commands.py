"""CLI commands of the shape pipeline: ``fit``, ``extract``, ``eval``, ``compare``, ``data list|get``.

Each is a typed function whose ``Args`` docstring tyro turns into ``--help``; defaults are read from
the config dataclasses so that there is one place for each of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import tyro

from sine_fields.errors import UserError
from sine_fields.fields import MLPConfig
from sine_fields.shapes.field import FieldConfig, ShapeField, default_mlp, shape_omega
from sine_fields.shapes.fit import TrainConfig

_MLP = default_mlp()
_TRAIN = TrainConfig()
Linear = Literal["dense", "lowrank", "sine"]
Activation = Literal["ReLU", "Gaussian", "Sine", "Softplus", "Sigmoid", "None"]
Method = Literal["dense", "coarse-to-fine"]


def build_field_config(
    target: str, linear: str, rank: int, omega: float | None, gain: float | None, width: int, hidden_layers: int,
    activation: str, factorise: str, fourier_frequencies: int,
) -> FieldConfig:
    """A validated ``FieldConfig``; an impossible combination (rank > width, ...) is a ``UserError``."""
    if omega is None:
        omega = shape_omega(rank) if rank >= 1 else _MLP.omega  # a bad rank is reported by the check below
    mlp = MLPConfig(n_neurons=width, n_hidden_layers=hidden_layers, activation=activation, linear=linear,
                    rank=rank, omega=omega, gain=gain, factorise=factorise)
    config = FieldConfig(target=target, mlp=mlp, fourier_frequencies=fourier_frequencies)
    if fourier_frequencies < 0:
        raise UserError(f"--fourier-frequencies must be >= 0, got {fourier_frequencies}")
    try:
        ShapeField(config)
    except ValueError as error:
        raise UserError(f"invalid field options: {error}") from None
    return config


def _check_resolution(resolution: int, method: str) -> None:
    from sine_fields.shapes.extract import check_resolution

    try:
        check_resolution(resolution, method)
    except ValueError as error:
        raise UserError(f"--resolution: {error}") from None


def fit(
    mesh: str,
    output: Path,
    target: Literal["occupancy", "sdf"] = FieldConfig.target,
    linear: Linear = "sine",
    rank: int = _MLP.rank,
    omega: float | None = None,
    gain: float | None = _MLP.gain,
    width: int = _MLP.n_neurons,
    hidden_layers: int = _MLP.n_hidden_layers,
    activation: Activation = _MLP.activation,
    factorise: Literal["hidden", "all"] = _MLP.factorise,
    fourier_frequencies: int = FieldConfig.fourier_frequencies,
    steps: int = _TRAIN.steps,
    batch_size: int = _TRAIN.batch_size,
    lr: float = _TRAIN.lr,
    samples: int = _TRAIN.samples,
    seed: int = _TRAIN.seed,
    truncation: float = _TRAIN.truncation,
    eikonal_weight: float = _TRAIN.eikonal_weight,
    checkpoint_every: int = _TRAIN.checkpoint_every,
    resolution: int = 256,
    method: Method = "coarse-to-fine",
    device: str = "auto",
) -> int:
    """Fit a neural field to a mesh, extract its surface and score it; writes config.json,
    checkpoint.pt, ground_truth.ply, mesh.ply, extraction.json and metrics.json into OUTPUT.
    Run the same command again to resume an interrupted fit.

    Args:
        mesh: `bunny`, `cgal:<name>` (e.g. cgal:armadillo) or a mesh file (OFF, PLY, OBJ, STL, GLB).
        output: run folder (new or empty; or this same run, to resume).
        target: occupancy (BCE on logits) or sdf (L1 on truncated signed distance).
        linear: kind of the hidden layers: dense, lowrank (U V) or sine (sin(omega U V) / gain).
        rank: rank k of lowrank / sine layers.
        omega: sine frequency (sine layers only); default 1000 / sqrt(rank), chosen by the sweep in benchmarks/shapes.py.
        gain: divisor of the sine matrix; default sqrt(width).
        width: neurons per hidden layer.
        hidden_layers: hidden activations (tiny-cuda-nn meaning); hidden_layers - 1 square layers are factorised.
        activation: hidden activation (Gaussian: the authors' occupancy choice; Sine: SIREN).
        factorise: factorise only the square hidden layers, or every layer the rank fits.
        fourier_frequencies: Fourier-feature frequencies of xyz (0: raw coordinates).
        steps: optimiser steps.
        batch_size: points per step.
        lr: Adam learning rate (cosine decay to 5 %).
        samples: labelled training points (half uniform, half near the surface).
        seed: seed of initialisation, samples and batch order.
        truncation: sdf only: distance clamp.
        eikonal_weight: sdf only: weight of the eikonal term (0: off).
        checkpoint_every: steps between checkpoints.
        resolution: marching-cubes grid cells per axis.
        method: extraction method.
        device: auto (CUDA if available), cpu, cuda, cuda:1, ...
    """
    from sine_fields.shapes.run import fit_run

    config = build_field_config(target, linear, rank, omega, gain, width, hidden_layers, activation, factorise,
                                fourier_frequencies)
    for name, value in (("steps", steps), ("batch-size", batch_size), ("samples", samples),
                        ("checkpoint-every", checkpoint_every), ("resolution", resolution)):
        if value < 1:
            raise UserError(f"--{name} must be >= 1, got {value}")
    _check_resolution(resolution, method)  # before training, not after it
    train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, samples=samples, seed=seed, truncation=truncation,
                        eikonal_weight=eikonal_weight, checkpoint_every=checkpoint_every)
    metrics = fit_run(mesh, output, config, train, resolution=resolution, method=method, device=device)
    _print_metrics(output, metrics)
    return 0


def _print_metrics(root: Path, metrics: dict) -> None:
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                      if not isinstance(v, dict))
    print(f"{root}: {shown}")


def extract(
    run: tyro.conf.Positional[Path],
    resolution: int = 256,
    method: Method = "coarse-to-fine",
    level: float | None = None,
    mesh: Path | None = None,
    device: str = "auto",
) -> int:
    """Re-extract the mesh of a finished run; writes the mesh and extraction.json.

    Args:
        run: run folder written by `sine-fields fit`.
        resolution: marching-cubes grid cells per axis (coarse-to-fine: 32 * 2^m).
        method: dense (every grid point) or coarse-to-fine (only near the surface).
        level: iso-level: a probability for occupancy runs (default 0.5), a distance for sdf runs (default 0).
        mesh: output mesh file (.ply, .obj, .off, .glb); default RUN/mesh.ply.
        device: auto, cpu, cuda, ...
    """
    from sine_fields.shapes.run import extract_run

    if mesh is not None:
        from sine_fields.shapes.export import MESH_EXPORT_FORMATS

        if mesh.suffix.lower() not in MESH_EXPORT_FORMATS:
            raise UserError(f"--mesh {mesh}: unsupported format {mesh.suffix or '(none)'!r}; expected one of {', '.join(MESH_EXPORT_FORMATS)}")
    _check_resolution(resolution, method)
    info = extract_run(run, resolution, method, level, mesh, device)
    print(f"{run}: {info}")
    return 0


def evaluate(run: tyro.conf.Positional[Path], device: str = "auto") -> int:
    """Re-score a run's mesh and field; rewrites metrics.json.

    Args:
        run: run folder written by `sine-fields fit`.
        device: auto, cpu, cuda, ...
    """
    from sine_fields.shapes.run import evaluate_run

    _print_metrics(run, evaluate_run(run, device))
    return 0


def compare(runs: tyro.conf.Positional[tuple[Path, ...]], output: Path | None = None) -> int:
    """Print a markdown table of runs side by side (and write it to OUTPUT if given).

    Args:
        runs: run folders.
        output: optional markdown file to write the table to.
    """
    from sine_fields.shapes.report import comparison_table, load_runs

    table = comparison_table(load_runs(runs))
    print(table)
    if output is not None:
        from sine_fields.io import atomic_write_text

        atomic_write_text(output, table + "\n")
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
