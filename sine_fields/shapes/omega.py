"""``--omega auto``: a sine field's frequency chosen per fit by a short probe on held-back points.

Each candidate omega trains the first ``probe_steps(train)`` steps of the run itself (the same seeded
initialisation, schedule and batches as a fit with that fixed omega) and is scored on labelled points
drawn apart from the training pool (IoU for occupancy, truncated L1 for sdf). The best candidate's state
is the run's checkpoint, so the fit continues from it and ends exactly where a fit with the chosen fixed
omega would: the extra cost is the other candidates' probe steps plus the scoring.

Why a probe rather than a rule: omega's best value depends on the rank and on the shape (the sweeps put it
at 1000 for the rank-1 bunny and 300 at rank 8), and the loss after a few dozen steps already separates a
frequency too low to fit detail from one too high to optimise.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field as default, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sine_fields.shapes.config import FitConfig
from sine_fields.shapes.field import ShapeField, shape_omega
from sine_fields.shapes.fit import TrainConfig, fit, new_field
from sine_fields.shapes.ground_truth import GroundTruth
from sine_fields.shapes.metrics import iou
from sine_fields.shapes.sampling import PointSet, training_points

__all__ = ["CANDIDATES", "HOLDOUT_POINTS", "OmegaProbe", "holdout_points", "holdout_score", "probe_omega",
           "probe_steps"]

# The grid of the omega sweeps (benchmarks/shapes.py): the best value at every rank measured so far lies
# in it (1000 at k = 1, 300 at k = 8).
CANDIDATES = (100.0, 300.0, 1000.0, 3000.0)
# Each candidate trains this share of the run's steps: with four candidates an auto fit costs about
# 1.3 times a fixed-omega fit.
PROBE_SHARE = 0.1
MIN_PROBE_STEPS = 10
# Held-back points, drawn like the training pool (half uniform, half near the surface) from their own
# seed: the probe never scores on points it trained on, nor on the fixed evaluation set of the metrics.
HOLDOUT_POINTS = 20_000
HOLDOUT_STREAM = 0x0E6A  # mixed with the run's seed into the held-back set's seed


def probe_steps(train: TrainConfig) -> int:
    """Steps each candidate trains: ``PROBE_SHARE`` of the run, at least ``MIN_PROBE_STEPS``, at most all."""
    return min(train.steps, max(MIN_PROBE_STEPS, round(PROBE_SHARE * train.steps)))


def holdout_seed(seed: int) -> int:
    """The held-back set's seed for a run seeded ``seed`` (another stream than the training pool's)."""
    return int(np.random.SeedSequence([seed, HOLDOUT_STREAM]).generate_state(1)[0])


def holdout_points(gt: GroundTruth, train: TrainConfig, count: int | None = None) -> PointSet:
    """``count`` (default ``HOLDOUT_POINTS``) labelled points drawn like the training pool from ``holdout_seed(train.seed)``."""
    return training_points(gt, HOLDOUT_POINTS if count is None else count, seed=holdout_seed(train.seed))


def holdout_score(field: ShapeField, points: PointSet, train: TrainConfig) -> float:
    """Occupancy: IoU of the field's inside set (higher is better). SDF: mean L1 between the distances
    truncated as in training (lower is better)."""
    if field.config.target == "occupancy":
        return iou(field.inside(points.points), points.occupancy)
    t = train.truncation
    values = np.clip(field.values(points.points), -t, t)
    return float(np.abs(values - np.clip(points.sdf, -t, t)).mean())


@dataclass
class OmegaProbe:
    """What a probe tried and chose; ``to_dict`` is the run folder's omega.json."""

    candidates: list[float]
    scores: list[float]
    """Held-back score of each candidate after ``probe_steps`` (``metric``)."""
    metric: str
    """iou (higher is better) or l1 (lower is better)."""
    chosen: float
    probe_steps: int
    candidate_seconds: list[float]
    """Training and scoring seconds of each candidate."""
    seconds: float
    """The whole probe: every candidate plus drawing the held-back points."""
    holdout_points: int
    holdout_seed: int
    rule_omega: float
    """What the rank rule (no --omega) would have used, for comparison."""
    checkpoints: dict[float, Path] = default(default_factory=dict, repr=False)
    """Each candidate's state after the probe (inside the probe's folder; not recorded)."""

    @property
    def extra_steps(self) -> int:
        """Training steps the probe adds to a fit with the chosen omega."""
        return (len(self.candidates) - 1) * self.probe_steps

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "candidates": self.candidates, "scores": self.scores, "metric": self.metric,
                "probe_steps": self.probe_steps, "extra_steps": self.extra_steps,
                "candidate_seconds": self.candidate_seconds, "seconds": self.seconds,
                "holdout_points": self.holdout_points, "holdout_seed": self.holdout_seed, "rule_omega": self.rule_omega}


def _best(candidates: list[float], scores: list[float], higher_is_better: bool, rule: float) -> float:
    # Ties (e.g. every candidate still empty after a very short probe) go to the candidate nearest the
    # rank rule on a log scale, so a tie never moves the fit away from the documented default.
    best = max(scores) if higher_is_better else min(scores)
    tied = [c for c, s in zip(candidates, scores) if s == best]
    return min(tied, key=lambda c: abs(math.log(c / rule)))


def probe_omega(gt: GroundTruth, config: FitConfig, folder: Path, device: torch.device | str = "cpu",
                pool: PointSet | None = None, candidates: tuple[float, ...] | None = None,
                on_candidate: Callable[[int, int], None] | None = None) -> OmegaProbe:
    """Train each candidate for ``probe_steps`` on ``gt`` and score it on held-back points.

    Each candidate's checkpoint is left in ``folder`` (``omega-<value>.pt``, the format of ``fit``'s
    checkpoints), so that ``fit`` continues any of them to the end of the run. ``pool`` is the run's
    training pool, when the caller has drawn it already; ``on_candidate(done, total)`` reports progress."""
    candidates = list(CANDIDATES if candidates is None else candidates)
    train = config.train
    start = time.perf_counter()
    if pool is None:
        pool = training_points(gt, train.samples, seed=train.seed)
    held_back = holdout_points(gt, train)
    steps = probe_steps(train)
    scores, seconds, checkpoints = [], [], {}
    for omega in candidates:
        began = time.perf_counter()
        checkpoint = Path(folder) / f"omega-{omega:g}.pt"
        field = new_field(replace(config.field, omega=float(omega)), train.seed, device)
        fit(gt, field, train, checkpoint=checkpoint, progress=False, stop_at=steps, pool=pool)
        scores.append(holdout_score(field, held_back, train))
        seconds.append(round(time.perf_counter() - began, 3))
        checkpoints[float(omega)] = checkpoint
        if on_candidate is not None:
            on_candidate(len(scores), len(candidates))
    metric = "iou" if config.field.target == "occupancy" else "l1"
    rule = shape_omega(config.field.rank)
    chosen = _best([float(c) for c in candidates], scores, metric == "iou", rule)
    return OmegaProbe([float(c) for c in candidates], scores, metric, chosen, steps, seconds,
                      round(time.perf_counter() - start, 3), len(held_back.points), holdout_seed(train.seed), rule,
                      checkpoints)


def choose_omega(gt: GroundTruth, config: FitConfig, device: torch.device | str = "cpu",
                 pool: PointSet | None = None, on_candidate: Callable[[int, int], None] | None = None,
                 ) -> tuple[FitConfig, OmegaProbe, dict]:
    """Run the probe in a temporary folder: ``config`` with the chosen omega, the probe, and the chosen
    candidate's checkpoint state (for the run folder's checkpoint.pt)."""
    with tempfile.TemporaryDirectory(prefix="sine-fields-omega-") as folder:
        probe = probe_omega(gt, config, Path(folder), device, pool, on_candidate=on_candidate)
        state = torch.load(probe.checkpoints[probe.chosen], map_location="cpu", weights_only=True)
    probe.checkpoints = {}
    return replace(config, field=replace(config.field, omega=probe.chosen)), probe, state
