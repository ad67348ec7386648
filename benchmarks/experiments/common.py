"""Helpers every benchmark needs: one-line CLI errors, atomic JSON, mean and spread, markdown tables."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from sine_fields.io import atomic_write_json, atomic_write_text

__all__ = ["CONVERGED_GAIN_DB", "OneLineParser", "SEED_SUMMARY_COLUMNS", "cpu_model", "first_step_meeting_rule",
           "first_step_meeting_smoothed_rule", "first_step_where", "last_quarter_gain", "layer_kind", "mean_std",
           "markdown_table", "parse_floats", "parse_ints", "plot_psnr_panels", "seed_summaries", "seed_summary_cells",
           "settings_differences", "smoothed_last_quarter_gain", "smoothed_verdict", "write_json_atomic",
           "write_text_atomic"]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name as Linux reports it (``model name`` in ``/proc/cpuinfo``), or None elsewhere: a
    timing means little without the CPU it ran on, and ``platform`` does not name it."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return None


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` that reports a bad option as one line (``error: ...``) and exits with code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _parse_list(text: str, kind: type, name: str) -> list:
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be a comma-separated list of {kind.__name__}s, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError(f"{name} must not be empty")
    return values


def parse_ints(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; each value must be >= 0 (ranks and seeds)."""
    values = _parse_list(text, int, "value")
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"values must be >= 0, got {text!r}")
    return values


def parse_floats(text: str) -> list[float]:
    """``"10,30,100"`` -> ``[10.0, 30.0, 100.0]``; each value must be finite and > 0 (omegas)."""
    values = _parse_list(text, float, "value")
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"values must be finite and > 0, got {text!r}")
    return values


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


CONVERGED_GAIN_DB = 0.3
"""A training run has converged when its held-out PSNR gained less than this over the last quarter of its
iterations (the rule every training benchmark here reports against)."""


def last_quarter_gain(curve: Sequence[Sequence[float]], iterations: int) -> float | None:
    """``[[step, score], ...]`` ending at the final step -> the final score minus the one logged closest to
    three quarters of the run (None: too few points). A training benchmark reports it to show convergence."""
    if len(curve) < 2:
        return None
    final = curve[-1][1]
    three_quarters = min(curve[:-1], key=lambda point: abs(point[0] - 0.75 * iterations))
    return final - three_quarters[1]


def first_step_where(curve: Sequence[Sequence[float]], start: int,
                     holds: Callable[[Sequence[Sequence[float]], int], bool]) -> list[float] | None:
    """The first logged ``[step, score]`` at or after ``start`` at which ``holds(curve up to that step, step)``:
    where a run, had it stopped there, would have met a convergence rule. None: never, within the curve."""
    for index, (step, score) in enumerate(curve):
        if step >= start and holds(curve[:index + 1], step):
            return [step, score]
    return None


def first_step_meeting_rule(curve: Sequence[Sequence[float]], start: int,
                            threshold: float = CONVERGED_GAIN_DB) -> list[float] | None:
    """The first logged ``[step, score]`` at or after ``start`` at which the run, had it stopped there, would
    meet the convergence rule: its score gained less than ``threshold`` over its last quarter (from the point
    logged closest to three quarters of that step, as ``last_quarter_gain``). None: never, within the curve.
    Reads a fixed-length run as the rule would have stopped it."""
    def holds(so_far, step):
        gain = last_quarter_gain(so_far, step)
        return gain is not None and gain < threshold

    return first_step_where(curve, start, holds)


SMOOTHED_SE_FACTOR = 2.0
"""The smoothed rule's margin, in standard errors: a run is called converged only when its smoothed gain plus
this margin is under ``CONVERGED_GAIN_DB``, and rising only when the gain minus it is at or above."""


def smoothed_last_quarter_gain(curve: Sequence[Sequence[float]], iterations: int) -> tuple[float, float] | None:
    """The gain from three quarters of the run to its end read off a smooth curve (a quadratic least-squares
    fit through every score logged in the last half of the run), with its standard error, as ``(gain, se)``.
    None: fewer than five points in that half (the error needs at least two degrees of freedom after three
    coefficients).

    Why not two points: held-out PSNR on a few views moves by up to a dB between evaluations, so
    ``last_quarter_gain`` (a difference of two noisy points) can read a dip as convergence. The fit averages
    that noise over the half and says how much is left (its error); a quadratic, not a line, because a
    run whose learning rate decays bends over, and a line through the half would read its mean slope,
    steeper than the end's."""
    import numpy as np

    points = np.array([(step / iterations, score) for step, score in curve if 0.5 * iterations <= step <= iterations], dtype=float)
    if len(points) < 5:
        return None
    x, y = points[:, 0], points[:, 1]
    coefficients, unscaled = np.polyfit(x, y, 2, cov="unscaled")  # highest power first
    residual_variance = float(np.sum((y - np.polyval(coefficients, x)) ** 2)) / (len(x) - 3)
    at = np.array([1.0 - 0.75 ** 2, 1.0 - 0.75, 0.0])  # the gain is linear in the coefficients
    gain = float(at @ coefficients)
    return gain, float(np.sqrt(residual_variance * (at @ unscaled @ at)))


def smoothed_verdict(smoothed: tuple[float, float] | None, threshold: float = CONVERGED_GAIN_DB) -> str:
    """``smoothed_last_quarter_gain`` against the convergence threshold: ``converged`` (under it by
    ``SMOOTHED_SE_FACTOR`` standard errors), ``rising`` (over it by as many), else ``within noise`` (the curve
    cannot tell); ``too short`` without a fit."""
    if smoothed is None:
        return "too short"
    gain, se = smoothed
    if gain + SMOOTHED_SE_FACTOR * se < threshold:
        return "converged"
    if gain - SMOOTHED_SE_FACTOR * se >= threshold:
        return "rising"
    return "within noise"


def first_step_meeting_smoothed_rule(curve: Sequence[Sequence[float]], start: int,
                                     threshold: float = CONVERGED_GAIN_DB) -> list[float] | None:
    """As ``first_step_meeting_rule``, with the smoothed rule: the first logged ``[step, score]`` at or after
    ``start`` at which ``smoothed_last_quarter_gain`` of the curve up to that step reads ``converged``."""
    return first_step_where(curve, start, lambda so_far, step: smoothed_verdict(
        smoothed_last_quarter_gain(so_far, step), threshold) == "converged")


def settings_differences(previous: dict, current: dict, names: Sequence[str],
                         defaults: dict | None = None) -> list[str]:
    """How a results JSON already on disk differs from this command's settings ``names``, one ``name: X there,
    Y here`` each (empty: the same), so that a refused ``--output`` says what differs. A setting either side
    lacks (recorded only by later versions) reads as ``defaults`` gives it: what runs without it did."""
    defaults = defaults or {}

    def setting(d: dict, name: str):
        return d.get(name, defaults.get(name))

    return [f"{name}: {setting(previous, name)} there, {setting(current, name)} here"
            for name in names if setting(previous, name) != setting(current, name)]


def layer_kind(run: dict) -> str:
    """A run's field layers in words, from its ``linear``, ``rank`` and ``omega``: ``dense``,
    ``lowrank k = 5`` or ``sine k = 5, omega 100``."""
    if run["linear"] == "dense":
        return "dense"
    return f"{run['linear']} k = {run['rank']}" + (f", omega {run['omega']:g}" if run.get("omega") else "")


def seed_summaries(runs: Sequence[dict], group_of: Callable[[dict], Any], psnr_of: Callable[[dict], float]) -> list[dict]:
    """Per group of runs (``group_of(run)``, in first-seen order) that ran two seeds or more: the held-out
    PSNR's mean and sample standard deviation, its range, the seeds, the group's layers in words and its runs
    (for a caller's own columns). A group of one seed has no spread to report and is left out."""
    summaries = []
    for group in dict.fromkeys(group_of(r) for r in runs):
        members = [r for r in runs if group_of(r) == group]
        if len(members) < 2:
            continue
        psnrs = [psnr_of(r) for r in members]
        mean, std = mean_std(psnrs)
        summaries.append({"group": group, "kind": layer_kind(members[0]), "seeds": [r["seed"] for r in members],
                          "psnr_mean": mean, "psnr_std": std, "psnr_min": min(psnrs), "psnr_max": max(psnrs),
                          "runs": members})
    return summaries


SEED_SUMMARY_COLUMNS = ["seeds", "held-out PSNR over the seeds (dB): mean ± std", "lowest", "highest"]
"""The columns every training benchmark's summary table shares, filled by ``seed_summary_cells``."""


def seed_summary_cells(summary: dict) -> list[str]:
    """One group of ``seed_summaries`` as the cells of ``SEED_SUMMARY_COLUMNS``."""
    return [", ".join(map(str, summary["seeds"])), f"{summary['psnr_mean']:.2f} ± {summary['psnr_std']:.2f}",
            f"{summary['psnr_min']:.2f}", f"{summary['psnr_max']:.2f}"]


LAYER_COLOURS = {"dense": "black", "lowrank": "tab:blue", "sine": "tab:red"}
"""One colour per layer kind, the same in every training benchmark's curves."""


def plot_psnr_panels(panels: Sequence[tuple[str, Sequence[dict]]], output: Path) -> None:
    """Held-out PSNR curves, one panel per ``(title, lines)``, side by side, written to ``output`` (PNG,
    atomically). Each line is ``{"label", "kind", "curve": [[step, psnr], ...]}`` with ``kind`` a key of
    ``LAYER_COLOURS`` and optional ``"style"`` (matplotlib's, default solid); a label repeated in a panel
    (one line per seed) enters its legend once."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display on a server or in CI
    import matplotlib.pyplot as plt

    from sine_fields.io import atomic_write_bytes

    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels):
        labelled = set()
        for line in lines:
            steps, psnr = zip(*line["curve"])
            ax.plot(steps, psnr, line.get("style", "-"), color=LAYER_COLOURS[line["kind"]], linewidth=1.2,
                    label=None if line["label"] in labelled else line["label"])
            labelled.add(line["label"])
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylabel("held-out PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(output, buffer.getvalue())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# The project's one atomic writer (sine_fields.io), under the names the benchmarks use.
write_text_atomic = atomic_write_text
write_json_atomic = atomic_write_json
