"""Fitting a ``ShapeField`` to a ground-truth mesh: seeded, resumable, with a progress bar.

Occupancy is fitted with binary cross-entropy on logits; SDF with an L1 loss on distances
truncated at ``truncation`` (only the band near the surface matters for meshing), plus an optional
eikonal term ``(|grad f| - 1)^2`` that keeps the field a distance. A checkpoint holds the model,
the optimiser, the step and the batch generator's state, so a resumed run takes the same batches
and ends bit-identical to an uninterrupted one on the same device.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from sine_fields.errors import UserError
from sine_fields.shapes.field import FieldConfig, ShapeField
from sine_fields.shapes.ground_truth import GroundTruth
from sine_fields.shapes.sampling import PointSet, training_points

__all__ = ["TrainConfig", "FitResult", "fit", "load_field", "new_field", "save_checkpoint"]


@dataclass
class TrainConfig:
    """How the field is trained."""

    steps: int = 1000
    """optimiser steps."""
    batch_size: int = 16384
    """points per step."""
    lr: float = 1e-3
    """Adam learning rate (the authors' value; cosine decay to 5 %)."""
    samples: int = 500_000
    """labelled training points (half uniform, half near the surface)."""
    seed: int = 0
    """seed of initialisation, samples and batch order."""
    truncation: float = 0.1
    """sdf only: distance clamp (normalised units)."""
    eikonal_weight: float = 0.0
    """sdf only: weight of the eikonal term (0: off)."""
    checkpoint_every: int = 200
    """steps between checkpoints (and one at the end)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Counts below 1 are ``UserError``s naming the flag."""
        for name in ("steps", "batch_size", "samples", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


@dataclass
class FitResult:
    field: ShapeField
    losses: list[float]
    """Loss every ``log_every`` steps."""
    seconds: float
    """Wall time of all training steps, summed over the calls that ran them (a resumed fit adds its part)."""
    resumed_from: int


def _loss(field: ShapeField, points: torch.Tensor, target: torch.Tensor, train: TrainConfig) -> torch.Tensor:
    if field.config.target == "occupancy":
        return F.binary_cross_entropy_with_logits(field(points), target)
    t = train.truncation
    if train.eikonal_weight <= 0:
        return F.l1_loss(field(points).clamp(-t, t), target.clamp(-t, t))
    points = points.requires_grad_(True)
    values = field(points)
    (grad,) = torch.autograd.grad(values.sum(), points, create_graph=True)
    eikonal = (grad.norm(dim=-1) - 1).square().mean()
    return F.l1_loss(values.clamp(-t, t), target.clamp(-t, t)) + train.eikonal_weight * eikonal


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a fit checkpoint atomically (a temporary file, then a rename): an interrupted write leaves the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def new_field(config: FieldConfig, seed: int, device: torch.device | str = "cpu") -> ShapeField:
    """The field a fit starts from: built once, its initialisation seeded by ``seed``."""
    torch.manual_seed(seed)
    return config.build().to(device)


def fit(
    gt: GroundTruth,
    field: ShapeField,
    train: TrainConfig,
    checkpoint: Path | None = None,
    progress: bool = True,
    log_every: int = 10,
    stop_at: int | None = None,
    pool: PointSet | None = None,
) -> FitResult:
    """Train ``field`` (from ``new_field``) on ``gt``, on its device; resume from ``checkpoint`` when
    it exists and save to it as it goes.

    ``stop_at`` ends the call early, at that step of the same run (same schedule and batches; a later
    call resumes from the checkpoint): the omega probe trains its candidates this way. ``pool`` is the
    run's training pool (``training_points(gt, train.samples, train.seed)``) when the caller has it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    device, config = field.device, field.config
    optimiser = torch.optim.Adam(field.parameters(), lr=train.lr)
    # Cosine decay from lr to 5 % of it over the run (the fit stops at T_max, before it would rise).
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(train.steps, 1), eta_min=0.05 * train.lr)
    generator = torch.Generator().manual_seed(train.seed)
    step, losses, previous_seconds = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        field.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        step, losses = int(state["step"]), list(state["losses"])
        previous_seconds = float(state.get("seconds", 0.0))
    resumed_from = step

    end = train.steps if stop_at is None else min(stop_at, train.steps)
    if pool is None:
        pool = training_points(gt, train.samples, seed=train.seed)
    points = torch.from_numpy(pool.points).to(device)
    key = "occupancy" if config.target == "occupancy" else "sdf"
    target = torch.from_numpy(getattr(pool, key).astype("float32")).to(device)

    def save() -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": field.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "generator": generator.get_state(), "step": step, "losses": losses,
                "seconds": previous_seconds + time.perf_counter() - start,
            })

    start = time.perf_counter()
    columns = (TextColumn("fit {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("fit", total=train.steps, completed=step, name=config.linear, loss=losses[-1] if losses else float("nan"))
        while step < end:
            index = torch.randint(len(points), (train.batch_size,), generator=generator).to(device)
            loss = _loss(field, points[index], target[index], train)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % log_every == 0 or step == train.steps:
                losses.append(loss.item())
                bar.update(task, completed=step, loss=losses[-1])
            if step % train.checkpoint_every == 0 or step == end:
                save()
    if checkpoint is not None and not checkpoint.exists():
        save()  # a run with zero steps left still leaves a checkpoint to extract from
    field.eval()
    return FitResult(field, losses, previous_seconds + time.perf_counter() - start, resumed_from)


def load_field(config: FieldConfig, checkpoint: Path, device: torch.device) -> ShapeField:
    """A trained field from a run's checkpoint."""
    field = ShapeField(config).to(device)
    state = torch.load(checkpoint, map_location=device, weights_only=True)
    field.load_state_dict(state["model"])
    field.eval()
    return field
