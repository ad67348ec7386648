"""``make demo``: dense, low-rank and sine low-rank occupancy fields on the bunny, with a report.

The paper's occupancy budget: 3 -> 256 -> 256 -> 256 -> 1 with Gaussian
activations; the two square hidden layers are dense (132,865 parameters) or rank 1 (2,817, 2.1 %).
The training budget ``DEMO_TRAIN`` is small enough for a few minutes on a CPU; benchmarks/shapes.py
uses the same budget, so the demo's numbers are one row of the benchmark.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sine_fields.errors import UserError
from sine_fields.shapes.fit import TrainConfig

# Steps x batch on the CPU: ~1 minute per fit for the dense field on one core.
DEMO_TRAIN = TrainConfig(steps=300, batch_size=4096, samples=200_000, seed=0)
DEMO_RESOLUTION = 256
DEMO_KINDS = ("dense", "lowrank", "sine")


def demo_field(linear: str, rank: int = 1, omega: float | None = None, target: str = "occupancy"):
    """The demo's field config for one layer kind (everything else is ``FieldConfig``'s default, the
    paper's network); omega defaults to ``shape_omega(rank)``."""
    from sine_fields.shapes.field import FieldConfig

    return FieldConfig(target=target, linear=linear, rank=rank, omega=omega)


def demo_fit(mesh: str, linear: str, rank: int = 1, omega: float | None = None, train: TrainConfig = DEMO_TRAIN):
    """The demo's ``FitConfig`` for one layer kind: ``demo_field``, ``DEMO_TRAIN``, ``DEMO_RESOLUTION``."""
    from sine_fields.shapes.config import ExtractConfig, FitConfig

    return FitConfig(mesh, demo_field(linear, rank, omega), train, ExtractConfig(DEMO_RESOLUTION))


def main(output: Path = Path("runs/demo"), mesh: str = "bunny", steps: int = DEMO_TRAIN.steps, device: str = "auto") -> int:
    """Fit dense, low-rank and sine low-rank fields (rank 1) to a mesh and write OUTPUT/report.md.

    Args:
        output: folder for the three runs and the report (runs resume if interrupted).
        mesh: `bunny`, `cgal:<name>` or a mesh file.
        steps: optimiser steps per fit.
        device: auto (CUDA if available), cpu, cuda, ...
    """
    from sine_fields.shapes.report import write_report
    from sine_fields.shapes.run import ShapeRun

    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    train = replace(DEMO_TRAIN, steps=steps)
    runs = []
    for linear in DEMO_KINDS:
        folder = Path(output) / linear
        print(f"[{linear}] fitting {mesh} into {folder}")
        runs.append(ShapeRun.fit(folder, demo_fit(mesh, linear, train=train), device=device))
    command = f"sine-fields demo --output {output} --mesh {mesh} --steps {steps}"
    report = write_report(runs, Path(output), title=f"Shape demo: {mesh}, rank 1", command=command)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    import sys

    from sine_fields.cli import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))
