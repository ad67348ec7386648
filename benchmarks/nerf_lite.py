"""The lite recipe as a user runs it: `ns-train sine-nerf-lite` with its defaults, timed, then `ns-eval`.

    .venv/bin/python benchmarks/nerf_lite.py --seed 42 --seed 1 --seed 2 --output benchmarks/results/nerf-lite-duck.json
    .venv/bin/python benchmarks/nerf_lite.py --linear sine --linear lowrank --linear dense \
        --output benchmarks/results/nerf-lite-duck-twins.json
    .venv/bin/python benchmarks/nerf_lite.py --linear sine --linear lowrank --linear dense --iterations 4600 \
        --output benchmarks/results/nerf-lite-duck-long.json                                 # twice the recipe's length
    .venv/bin/python benchmarks/nerf_lite.py --linear sine --linear lowrank --iterations 9200 \
        --output benchmarks/results/nerf-lite-duck-9200.json                                 # four times
    .venv/bin/python benchmarks/nerf_lite.py --linear lowrank --lr-scale 2 --seed 42 --seed 1 --seed 2 \
        --output benchmarks/results/nerf-lite-duck-lr2.json                                  # every rate x2
    .venv/bin/python benchmarks/nerf_lite.py --plot-only docs/nerf_lite_duck_long.png --output benchmarks/results/nerf-lite-duck-long.json
    .venv/bin/python benchmarks/nerf_lite.py --quick --output /tmp/nerf-lite-quick.json     # CI: seconds

For each `--linear` (default: sine only) it renders the scene once (`sine-fields data scene`, unless `--data`
names a folder), runs `ns-train sine-nerf-lite --data SCENE --machine.device-type cpu
--pipeline.model.linear LINEAR --machine.seed SEED` (once per `--seed`; default nerfstudio's 42) in a
subprocess with nothing else changed, and records the wall time
around it with the load average before and after (a shared CPU makes wall time follow the load, not the
recipe: only a run that started on an idle machine says what the recipe costs). Then `ns-eval` gives the
held-out PSNR and SSIM over every eval image; the held-out PSNR curve that nerfstudio logged during
training (every `steps_per_eval_all_images`) is read from the run's tensorboard events and stored with
the gain over its last quarter, so the JSON shows whether the run had converged. A run already in the
JSON with the same settings is not redone (`--overwrite` starts afresh). `--iterations N` passes
`--max-num-iterations N` (the lite recipe's learning-rate schedules follow it) to ask whether a run has
converged by the recipe's end; the curve keeps the recipe's evaluation every 575 steps. `--lr-scale F`
multiplies every optimiser's starting and final learning rate (the recipe's, read from its config: the
field's and the `U` factors') by F, to choose a rate per layer kind: the recipe's rates were screened on
sine layers only.

`--plot PNG` draws every run's held-out PSNR curve (one line per seed, coloured by layer kind) after the
runs; `--plot-only PNG` draws it from the JSON that `--output` names, training nothing.

Several processes may share one `--output` (one thread each, different `--linear` or `--seed`): each run is
added to what the file holds when the run ends, so a run another process wrote in the meantime is kept.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
METHOD = "sine-nerf-lite"
PSNR_TAG = "Eval Images Metrics Dict (all images)/psnr"


class BenchmarkError(Exception):
    """Bad input: printed on one line, exit code 2."""


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat, Linux): to tell how much of a run's wall time the
    hypervisor gave to other guests (steal) and how busy the CPUs were."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    return [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]


def _cpu_shares(before: list[int] | None, after: list[int] | None) -> dict | None:
    """Shares of all CPU time between two ``_cpu_times`` readings: busy, idle, and stolen."""
    if before is None or after is None:
        return None
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta[:8]) or 1  # user nice system idle iowait irq softirq steal
    idle = delta[3] + delta[4]
    steal = delta[7] if len(delta) > 7 else 0
    return {"busy": round((total - idle - steal) / total, 3), "idle": round(idle / total, 3),
            "steal": round(steal / total, 3)}


def render(scene: str, folder: Path, views: int, resolution: int) -> None:
    subprocess.run([str(BIN / "sine-fields"), "data", "scene", scene, "--output", str(folder), "--views", str(views),
                    "--resolution", str(resolution)], check=True)


def eval_curve(run_dir: Path) -> list[list[float]]:
    """``[[step, held-out PSNR], ...]`` that nerfstudio logged to tensorboard while training."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(run_dir.glob("events.out.tfevents*"))
    if not events:
        return []
    accumulator = EventAccumulator(str(events[-1]), size_guidance={"scalars": 0})
    accumulator.Reload()
    if PSNR_TAG not in accumulator.Tags()["scalars"]:
        return []
    return [[int(e.step), float(e.value)] for e in accumulator.Scalars(PSNR_TAG)]


def field_parameters(config) -> dict[str, int]:
    """The parameters of the model a run's config (``TrainerConfig``) builds, and those of its dense twin
    (the same config, ``linear dense``)."""
    import copy

    from sine_fields.methods.common import model_in_unit_box

    def count(model_config) -> int:
        return sum(p.numel() for p in model_in_unit_box(model_config).parameters())

    dense = copy.deepcopy(config.pipeline.model)
    dense.linear = "dense"
    return {"model": count(config.pipeline.model), "dense_twin": count(dense)}


def train_and_evaluate(data: Path, linear: str, seed: int, work: Path, extra: list[str]) -> dict:
    name = f"{linear}-seed{seed}"
    outputs = work / "outputs"
    command = [str(BIN / "ns-train"), METHOD, "--data", str(data), "--machine.device-type", "cpu",
               "--output-dir", str(outputs), "--experiment-name", name, "--timestamp", "run",
               "--pipeline.model.linear", linear, "--machine.seed", str(seed), *extra]
    run_dir = outputs / name / METHOD / "run"
    if run_dir.exists():
        raise BenchmarkError(f"{run_dir} exists from an unfinished run; remove it or pass --overwrite")
    log = work / f"{name}.log"
    load_before = _load()
    times_before = _cpu_times()
    started = time.time()
    with log.open("w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT)
    wall = time.time() - started
    load_after = _load()
    cpu_shares = _cpu_shares(times_before, _cpu_times())
    if result.returncode != 0:
        raise BenchmarkError(f"ns-train failed (exit {result.returncode}); its output is in {log}")
    config_path = run_dir / "config.yml"
    eval_json = work / f"{name}-eval.json"
    subprocess.run([str(BIN / "ns-eval"), "--load-config", str(config_path), "--output-path", str(eval_json)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    evaluation = json.loads(eval_json.read_text())
    import yaml
    from experiments.common import last_quarter_gain

    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)  # the run's config, as ns-train saved it
    iterations = int(config.max_num_iterations)
    curve = eval_curve(run_dir)
    curve.append([iterations, float(evaluation["results"]["psnr"])])  # ns-eval's final point
    return {
        "linear": linear,
        "seed": seed,
        "command": " ".join(["ns-train", *command[1:]]).replace(str(data), "SCENE").replace(str(outputs), "OUTPUTS"),
        "iterations": iterations,
        "rank": config.pipeline.model.rank if linear != "dense" else None,
        "omega": config.pipeline.model.omega if linear == "sine" else None,
        "parameters": field_parameters(config),
        "results": evaluation["results"],
        "psnr_curve": curve,
        "last_quarter_gain_db": last_quarter_gain(curve, iterations),
        "ns_train_wall_seconds": round(wall, 1),
        "load_average_1min_before_and_after": [load_before, load_after],
        "cpu_time_shares_during_training": cpu_shares,
        "precision": config.pipeline.model.precision,
        # each optimiser's starting and final rate as the run used them (--lr-scale multiplies both)
        "learning_rates": {name: [group["optimizer"].lr, group["scheduler"].lr_final]
                           for name, group in config.optimizers.items()},
        # the steps over which the field's rate decayed (then held at its final value, --decay-steps)
        "decay_steps": int(config.optimizers["fields"]["scheduler"].max_steps),
    }


SETTINGS = ("scene", "views", "resolution", "quick", "iterations", "lr_scale", "decay_steps")
# what a file written before a setting was recorded ran: the recipe's own length (None), rates (x1) and
# schedule (decaying over the whole run: None)
SETTING_DEFAULTS = {"lr_scale": 1.0, "decay_steps": None}


def settings_differences(previous: dict, report: dict) -> list[str]:
    """How a JSON already on disk differs from this command's settings (``experiments.common``'s
    ``settings_differences``). Either side may predate a setting (a file on disk, or a report another
    process began before the setting was recorded): a missing one reads as ``SETTING_DEFAULTS``."""
    from experiments.common import settings_differences as differences

    return differences(previous, report, SETTINGS, SETTING_DEFAULTS)


def same_settings(previous: dict, report: dict) -> bool:
    """Whether a JSON already on disk holds runs of this command's settings (``settings_differences``)."""
    return not settings_differences(previous, report)


def precision_flags(precision: str) -> list[str]:
    """ns-train flags for the field's arithmetic: none for the recipe's ``auto`` (a run as users start it)."""
    return [] if precision == "auto" else ["--pipeline.model.precision", precision]


def lr_scale_flags(scale: float) -> list[str]:
    """ns-train flags that multiply the lite recipe's starting and final learning rate of every optimiser
    (``fields``, ``factors_u``) by ``scale``; none for 1. The rates are read from the recipe's config, so
    they follow it if it changes."""
    if not scale > 0:
        raise BenchmarkError(f"--lr-scale {scale}: expected a positive factor")
    if scale == 1.0:
        return []
    from sine_fields.methods.sine_nerf_lite import nerf_lite_trainer_config

    flags = []
    for name, group in nerf_lite_trainer_config().optimizers.items():
        option = name.replace("_", "-")  # tyro's spelling of the dict key
        flags += [f"--optimizers.{option}.optimizer.lr", f"{group['optimizer'].lr * scale:.6g}",
                  f"--optimizers.{option}.scheduler.lr-final", f"{group['scheduler'].lr_final * scale:.6g}"]
    return flags


def decay_steps_flags(decay_steps: int | None, iterations: int | None) -> list[str]:
    """ns-train flags that decay every optimiser's learning rate over the first ``decay_steps`` steps and
    hold the final rate after them (nerfstudio's exponential schedule stays at ``lr_final`` past its
    ``max-steps``); none for None (the rates decay over the whole run, ``LiteTrainerConfig``)."""
    if decay_steps is None:
        return []
    if iterations is None or not 0 < decay_steps <= iterations:
        raise BenchmarkError(f"--decay-steps {decay_steps}: expected a positive number of steps no larger than "
                             f"--iterations ({iterations or 'not given'})")
    from sine_fields.methods.sine_nerf_lite import nerf_lite_trainer_config

    flags = ["--schedules-follow-iterations", "False"]
    for name in nerf_lite_trainer_config().optimizers:
        flags += [f"--optimizers.{name.replace('_', '-')}.scheduler.max-steps", str(decay_steps)]
    return flags


def runs_written_meanwhile(output: Path, report: dict) -> list[dict]:
    """The runs in ``report`` and those another process (sharing ``--output``) wrote to the file since
    this one read it, without repeats: what the file must hold after this process adds its next run."""
    runs = list(report["runs"])
    if output.exists():
        on_disk = json.loads(output.read_text())
        if same_settings(on_disk, report):
            known = {(r["linear"], r["seed"]) for r in runs}
            runs += [r for r in on_disk["runs"] if (r["linear"], r["seed"]) not in known]
    return runs


LAYER_ORDER = ("sine", "lowrank", "dense")
SMOOTHED_VERDICTS = ("converged", "within noise", "rising")  # the by-length table's counts of smoothed readings


def in_table_order(runs: list[dict]) -> list[dict]:
    """Runs grouped by layer kind (sine, plain low-rank, dense), each kind's seeds in the order they were
    written: processes sharing one --output finish in any order."""
    return sorted(runs, key=lambda r: LAYER_ORDER.index(r["linear"]))


def seed_summaries(runs: list[dict]) -> list[dict]:
    """Per layer kind run with two seeds or more, in table order: the final held-out PSNR's mean, sample
    standard deviation, range and the seeds, and the longest wall time (what a user must allow for)."""
    from experiments.common import seed_summaries as summarise

    summaries = summarise(in_table_order(runs), lambda r: r["linear"], lambda r: r["results"]["psnr"])
    for s in summaries:
        s["linear"] = s["group"]
        s["wall_max"] = max(r["ns_train_wall_seconds"] for r in s["runs"])
    return summaries


def headline_markdown(data: dict) -> str:
    """The README's line: per layer kind run with several seeds, the held-out PSNR over the seeds against
    the time it took, and the parameters."""
    rows = ["| `ns-train sine-nerf-lite`, field MLP layers | parameters (of dense) | held-out PSNR (dB), mean ± std over seeds | "
            "lowest seed | longest run, 2 CPU cores (s) |", "|---|---|---|---|---|"]
    for summary in seed_summaries(data["runs"]):
        p = next(r for r in data["runs"] if r["linear"] == summary["linear"])["parameters"]
        rows.append(f"| {summary['kind']} | {p['model']:,} ({100 * p['model'] / p['dense_twin']:.1f} %) | "
                    f"{summary['psnr_mean']:.2f} ± {summary['psnr_std']:.2f} ({len(summary['seeds'])} seeds) | "
                    f"{summary['psnr_min']:.2f} | {summary['wall_max']:.0f} |")
    return "\n".join(rows)


def seed_pairs(runs: list[dict]) -> list[tuple[int, float, float, float | None]]:
    """``(seed, sine PSNR, plain low-rank PSNR, dense PSNR or None)`` for each seed run with both sine and
    plain low-rank layers, in the order the sine runs were written: the same seed pairs the runs."""
    psnr = {(r["linear"], r["seed"]): r["results"]["psnr"] for r in runs}
    seeds = [r["seed"] for r in in_table_order(runs) if r["linear"] == "sine" and ("lowrank", r["seed"]) in psnr]
    return [(seed, psnr["sine", seed], psnr["lowrank", seed], psnr.get(("dense", seed))) for seed in seeds]


def paired_gap(pairs: list[tuple[int, float, float, float | None]]) -> str:
    """Sine minus plain low-rank over the seed pairs of ``seed_pairs``: mean ± sample std with a paired t-test
    (the gaps of same-seed runs against no gap), or the one gap as it is."""
    from experiments.common import mean_std

    gaps = [sine - lowrank for _, sine, lowrank, _ in pairs]
    if len(gaps) < 2:
        return f"{gaps[0]:+.2f} (one seed)"
    from scipy.stats import ttest_1samp

    mean, std = mean_std(gaps)
    test = ttest_1samp(gaps, 0.0)
    return f"**{mean:+.2f} ± {std:.2f}**; paired t {test.statistic:.2f} ({len(gaps) - 1} d.o.f.), two-sided p {test.pvalue:.3f}"


def paired_markdown(data: dict) -> str:
    """Per seed run with both sine and plain low-rank layers: their held-out PSNR side by side (and dense's,
    where it ran that seed), the difference sine minus plain low-rank, and that difference's mean ± sample
    std over the seeds with a paired t-test: the same seed pairs the runs, so the spread of the gap is the one
    to judge it by."""
    from experiments.common import markdown_table

    pairs = seed_pairs(data["runs"])
    rows = [[str(seed), f"{sine:.2f}", f"{lowrank:.2f}", "-" if dense is None else f"{dense:.2f}", f"{sine - lowrank:+.2f}"]
            for seed, sine, lowrank, dense in pairs]
    if len(pairs) > 1:
        rows.append([f"mean over {len(pairs)} seeds", "", "", "", paired_gap(pairs)])
    header = ["seed", "sine (dB)", "plain low-rank (dB)", "dense (dB)", "sine - plain low-rank (dB)"]
    return markdown_table(header, rows).rstrip("\n")


def seeds_mean_cell(psnrs: list[float]) -> str:
    """A table cell for one group's held-out PSNR over its seeds: ``mean ± sample std (seeds)``, or the one
    value with ``(1)``: a single seed has no spread to show."""
    from experiments.common import mean_std

    mean, std = mean_std(psnrs)
    return f"{mean:.2f} ± {std:.2f} ({len(psnrs)})" if len(psnrs) > 1 else f"{mean:.2f} (1)"


def by_length_markdown(reports: list[dict]) -> str:
    """One row per run length over several reports of one scene: each layer kind's held-out PSNR (mean ±
    std over its seeds), the sine - plain low-rank gap over the seeds that ran both (paired), and how many
    runs met the convergence rule (a gain under ``CONVERGED_GAIN_DB`` over the last quarter) and how the
    smoothed rule reads them (``smoothed_verdict``; a curve too short for the fit counts as none of them,
    and a length where no run has one reads ``-``).
    Read down the rows: does the gap hold as training gets longer?"""
    from experiments.common import CONVERGED_GAIN_DB, markdown_table, smoothed_last_quarter_gain, smoothed_verdict

    runs = [run for report in reports for run in report["runs"]]
    rows = []
    for length in sorted({r["iterations"] for r in runs}):
        same = [r for r in runs if r["iterations"] == length]
        cells = [f"{length:,}"]
        for kind in LAYER_ORDER:
            psnrs = [r["results"]["psnr"] for r in same if r["linear"] == kind]
            cells.append(seeds_mean_cell(psnrs) if psnrs else "-")
        pairs = seed_pairs(same)
        cells.append("-" if not pairs else paired_gap(pairs))
        settled = sum(r["last_quarter_gain_db"] is not None and r["last_quarter_gain_db"] < CONVERGED_GAIN_DB for r in same)
        cells.append(f"{settled} of {len(same)}")
        verdicts = [smoothed_verdict(smoothed_last_quarter_gain(r.get("psnr_curve", []), r["iterations"])) for r in same]
        read = [v for v in verdicts if v in SMOOTHED_VERDICTS]
        cells.append(" / ".join(str(read.count(v)) for v in SMOOTHED_VERDICTS) if read else "-")
        rows.append(cells)
    header = ["steps", "sine (dB), mean ± std (seeds)", "plain low-rank (dB)", "dense (dB)",
              "sine - plain low-rank, seed for seed (dB)", f"runs converged (< {CONVERGED_GAIN_DB} dB over the last quarter)",
              "by the smoothed gain: " + " / ".join(SMOOTHED_VERDICTS)]
    return markdown_table(header, rows).rstrip("\n")


def score_at(curve: list[list[float]], step: int) -> float:
    """The held-out PSNR logged closest to ``step``."""
    return min(curve, key=lambda point: abs(point[0] - step))[1]


def smoothed_cell(curve: list[list[float]], iterations: int) -> str:
    """A run's smoothed last-quarter gain with its standard error and reading (``experiments.common``'s
    ``smoothed_last_quarter_gain`` and ``smoothed_verdict``), or ``-`` for a curve too short to give one."""
    from experiments.common import smoothed_last_quarter_gain, smoothed_verdict

    smoothed = smoothed_last_quarter_gain(curve, iterations)
    if smoothed is None:
        return "-"
    gain = round(smoothed[0], 2) + 0.0  # a flat curve's rounding residue reads +0.00, not -0.00
    return f"{gain:+.2f} ± {smoothed[1]:.2f}, {smoothed_verdict(smoothed)}"


def held_rates_markdown(data: dict) -> str:
    """Runs whose learning rates decayed over their first ``decay_steps`` and were then held at their final
    values (``--decay-steps``): does a field still gain once its rates stop falling, and where would the
    convergence rule have stopped it? Per run: the held-out PSNR at the end of the decay, the first logged
    step at which the gain over the run's last quarter would have been under ``CONVERGED_GAIN_DB`` (and the
    PSNR there), tested from half the run on and not before the decay's end (``benchmarks/nerf.py`` tests its
    rule from half the cap: earlier, a plateau is taken for convergence), the final PSNR and its last-quarter
    gain; the same stopping point under the smoothed rule (``first_step_meeting_smoothed_rule``: the gain read
    off a quadratic through the last half, under the threshold by two standard errors, which one dip moves
    less than it moves a difference of two points) and the final smoothed gain. Then sine - plain
    low-rank seed for seed at those points (at a rule's point only over seeds where both runs met it)."""
    from experiments.common import (CONVERGED_GAIN_DB, first_step_meeting_rule, first_step_meeting_smoothed_rule, layer_kind,
                                    markdown_table)

    def met_cell(met: list[float] | None) -> str:
        return "not met" if met is None else f"{met[1]:.2f} (step {met[0]:,})"

    runs = in_table_order(data["runs"])
    rows, at = [], {}
    for r in runs:
        decay, curve = r["decay_steps"], r["psnr_curve"]
        start = max(decay, r["iterations"] // 2)
        met, smoothed_met = first_step_meeting_rule(curve, start), first_step_meeting_smoothed_rule(curve, start)
        at[r["linear"], r["seed"]] = {"decay": score_at(curve, decay), "rule": None if met is None else met[1],
                                      "smoothed": None if smoothed_met is None else smoothed_met[1], "final": r["results"]["psnr"]}
        rows.append([layer_kind(r), str(r["seed"]), f"{at[r['linear'], r['seed']]['decay']:.2f} (step {decay:,})",
                     met_cell(met), met_cell(smoothed_met), f"{r['results']['psnr']:.2f} (step {r['iterations']:,})",
                     f"{r['last_quarter_gain_db']:+.2f}", smoothed_cell(curve, r["iterations"])])
    header = ["field MLP layers", "seed", "held-out PSNR at the end of the decay (dB)",
              f"where the rule (< {CONVERGED_GAIN_DB} dB over the last quarter) first holds, from half the run on (dB)",
              "where the smoothed rule first holds, from half the run on (dB)", "final held-out PSNR (dB)",
              "gain over the last quarter (dB)", "smoothed gain over the last quarter (dB)"]
    table = markdown_table(header, rows).rstrip("\n")
    gaps = []
    for point, label in (("decay", "at the end of the decay"), ("rule", "where both runs first meet the rule"),
                         ("smoothed", "where both runs first meet the smoothed rule"), ("final", "at the end")):
        pairs = [(seed, at["sine", seed][point], at["lowrank", seed][point], None)
                 for seed, *_ in seed_pairs(data["runs"])
                 if at["sine", seed][point] is not None and at["lowrank", seed][point] is not None]
        gaps.append([label, ", ".join(str(p[0]) for p in pairs) or "-", paired_gap(pairs) if pairs else "-"])
    gap_table = markdown_table(["sine - plain low-rank, seed for seed", "seeds", "gap (dB)"], gaps).rstrip("\n")
    return f"{table}\n\n{gap_table}"


def best_on_common_seeds(candidates: dict) -> object | None:
    """The key of ``candidates`` (each a ``{seed: PSNR}``) with the highest mean over the seeds that every
    candidate ran, so that one run on a lucky seed only does not win by it; None when no seed is common."""
    common = set.intersection(*(set(psnr) for psnr in candidates.values())) if candidates else set()
    if not common:
        return None
    return max(candidates, key=lambda key: sum(candidates[key][seed] for seed in common))


def schedule_of(run: dict, report: dict) -> tuple[int, int]:
    """``(steps the rates decayed over, run length)`` of one run: a run decays over its whole length unless it
    (or a file written before runs recorded it) says ``decay_steps``."""
    decay = run.get("decay_steps") or report.get("decay_steps") or run["iterations"]
    return decay, run["iterations"]


def auto_arithmetic(machine: dict) -> tuple[str, str] | None:
    """What ``precision auto`` ran the field's products in on the machine a file recorded, and why:
    ("bfloat16", "a CPU with AMX tiles"), ("float32", "a CPU without bfloat16 units"), ...; None for a
    file that recorded no machine. Files that recorded only ``bfloat16_tiles`` were written while ``auto``
    counted AMX tiles alone: it ran float32 wherever there were none, AVX512-BF16 or not."""
    if "bfloat16_units" in machine:
        units = machine["bfloat16_units"]
        return ("bfloat16", f"a CPU with {units}") if units else ("float32", "a CPU without bfloat16 units")
    if machine.get("bfloat16_tiles") is None:
        return None
    return ("bfloat16", "a CPU with AMX tiles") if machine["bfloat16_tiles"] else ("float32", "a CPU without AMX tiles")


def run_arithmetic(run: dict, report: dict) -> str:
    """The field's products in one run: its ``precision``, or for ``auto`` what that chose on the file's
    machine (``auto_arithmetic``); "unknown" for a file that did not record its machine."""
    precision = run.get("precision", "auto")
    if precision != "auto":
        return precision
    auto = auto_arithmetic(report.get("machine") or {})
    return "unknown" if auto is None else auto[0]


def schedules_at_steps_markdown(reports: list[dict], steps: tuple[int, ...] = (2300, 4600, 6900)) -> str:
    """Sine and plain low-rank at equal steps under every learning-rate schedule the reports ran (the same
    rates, decayed over a run's whole length or over its first steps and then held): a row per layer kind and
    schedule, the held-out PSNR logged at each of ``steps`` (mean ± std over seeds; a step before a run's end
    is read from its curve, where its rates are still higher than a run of that length would have them).
    Then, per step, each kind under its best schedule there, seed for seed: does sine's lead survive when
    neither kind is held to the other's schedule? A kind's best schedule at a step has the highest mean over
    the seeds that all of its schedules logged there (as ``lr_sweep_markdown`` picks rates), picked on the
    same runs it is then compared with. Runs of one schedule in other arithmetic (``run_arithmetic``) are a
    row of their own."""
    from experiments.common import markdown_table

    # (kind, (decay steps, run length, arithmetic)) -> {step: {seed: PSNR}}
    logged: dict[tuple[str, tuple[int, int, str]], dict[int, dict[int, float]]] = {}
    for report in reports:
        for run in report["runs"]:
            if run["linear"] not in ("sine", "lowrank") or not run.get("psnr_curve"):
                continue
            at = logged.setdefault((run["linear"], (*schedule_of(run, report), run_arithmetic(run, report))), {})
            for step, psnr in run["psnr_curve"]:
                if step in steps:
                    at.setdefault(int(step), {})[run["seed"]] = psnr
    keys = sorted(logged, key=lambda key: (LAYER_ORDER.index(key[0]), *key[1]))

    def schedule_label(schedule: tuple[int, int, str], arithmetic: bool = False) -> str:
        decay, length, products = schedule
        return (f"decay over {decay:,}" + (f", held to {length:,}" if decay < length else "")
                + (f" ({products})" if arithmetic else ""))

    rows = [[kind, schedule_label(schedule), f"{schedule[1]:,}", schedule[2]]
            + [seeds_mean_cell(list(logged[kind, schedule][step].values())) if step in logged[kind, schedule] else "-"
               for step in steps]
            for kind, schedule in keys]
    table = markdown_table(["layers", "learning-rate schedule (steps)", "run length", "field products", *(f"PSNR at step {step:,} (dB)" for step in steps)],
                           rows).rstrip("\n")
    comparison = []
    for step in steps:
        best = {}
        for kind in ("sine", "lowrank"):
            candidates = {schedule: logged[k, schedule][step] for k, schedule in keys if k == kind and step in logged[k, schedule]}
            if (schedule := best_on_common_seeds(candidates)) is not None:
                best[kind] = schedule
        if len(best) < 2:
            continue
        runs = [{"linear": kind, "seed": seed, "results": {"psnr": psnr}}
                for kind in ("sine", "lowrank") for seed, psnr in logged[kind, best[kind]][step].items()]
        pairs = seed_pairs(runs)
        comparison.append([f"{step:,}", schedule_label(best["sine"], True), schedule_label(best["lowrank"], True),
                           ", ".join(str(seed) for seed, *_ in pairs) or "-",
                           paired_gap(pairs) if pairs else "no seed ran both"])
    if not comparison:
        return table
    gaps = markdown_table(["step", "sine's best schedule", "plain low-rank's best schedule", "seeds",
                           "sine - plain low-rank, seed for seed (dB)"], comparison).rstrip("\n")
    return f"{table}\n\n{gaps}"


def lr_sweep_markdown(reports: list[dict]) -> str:
    """A learning-rate sweep of one run length: a row per layer kind and ``--lr-scale`` (each report's, 1 for a
    file written before it was recorded), with the field's starting and final rate, the held-out PSNR per seed
    and its mean ± std, and the last quarter's mean gain; then sine at its best scale against plain low-rank at
    each of its scales (its best marked), seed for seed over the seeds both ran. A kind's best scale has the
    highest mean PSNR over the seeds that every scale of that kind ran, so that a scale run on a lucky seed
    only does not win by it. The best scale is picked on the same runs it is then compared with: with a few scales and seeds
    the pick favours each kind a little, both alike."""
    from experiments.common import markdown_table

    runs = [{**run, "lr_scale": report.get("lr_scale", SETTING_DEFAULTS["lr_scale"])}
            for report in reports for run in report["runs"]]
    lengths = {r["iterations"] for r in runs}
    if len(lengths) != 1:
        raise ValueError(f"a learning-rate sweep compares runs of one length; these ran {sorted(lengths)}")
    groups: dict[tuple[str, float], list[dict]] = {}
    for run in sorted(runs, key=lambda r: (LAYER_ORDER.index(r["linear"]), r["lr_scale"])):
        groups.setdefault((run["linear"], run["lr_scale"]), []).append(run)
    rows = []
    for (kind, scale), group in groups.items():
        psnrs = [r["results"]["psnr"] for r in group]
        rates = group[0].get("learning_rates", {}).get("fields")  # not recorded by runs before --lr-scale
        gains = [r["last_quarter_gain_db"] for r in group if r["last_quarter_gain_db"] is not None]
        rows.append([kind, f"x{scale:g}", "the recipe's" if rates is None else f"{rates[0]:.3g} → {rates[1]:.3g}",
                     ", ".join(f"{r['seed']}: {r['results']['psnr']:.2f}" for r in group),
                     seeds_mean_cell(psnrs),
                     "-" if not gains else f"{sum(gains) / len(gains):+.2f}"])
    table = markdown_table(["layers", "rates", "field rate, start → end", "held-out PSNR per seed (dB)",
                            "mean ± std (seeds)", "last-quarter gain, mean (dB)"], rows).rstrip("\n")
    best = {}
    for kind in ("sine", "lowrank"):
        scales = {scale: {r["seed"]: r["results"]["psnr"] for r in group} for (k, scale), group in groups.items() if k == kind}
        if (scale := best_on_common_seeds(scales)) is not None:
            best[kind] = scale
    if len(best) < 2:
        return table
    # sine at its best rates against plain low-rank at each of its own, seed for seed: the best rates' row is
    # the comparison, the others show how much the choice of rates moves it
    sine_runs = [r for r in runs if r["linear"] == "sine" and r["lr_scale"] == best["sine"]]
    rows = []
    for (kind, scale), group in groups.items():
        if kind != "lowrank":
            continue
        pairs = seed_pairs(sine_runs + group)
        gap = "no seed ran both" if not pairs else paired_gap(pairs)
        rows.append([f"x{scale:g}" + (" (its best)" if scale == best["lowrank"] else ""),
                     ", ".join(str(seed) for seed, *_ in pairs) or "-", gap])
    comparison = markdown_table([f"plain low-rank rates (sine at its best, x{best['sine']:g})", "seeds",
                                 "sine - plain low-rank, seed for seed (dB)"], rows).rstrip("\n")
    return f"{table}\n\n{comparison}"


def paired_markdown_merged(reports: list[dict]) -> str:
    """``paired_markdown`` over several reports of the same scene and run length (the headline's sine runs
    and their twins were written to two files)."""
    return paired_markdown({"runs": [run for report in reports for run in report["runs"]]})


def plot(data: dict, output: Path) -> None:
    """Every run's held-out PSNR curve, one line per seed, coloured by layer kind, in one panel."""
    from experiments.common import layer_kind, plot_psnr_panels

    lines = [{"label": layer_kind(r), "kind": r["linear"], "curve": r["psnr_curve"]} for r in in_table_order(data["runs"]) if r["psnr_curve"]]
    scene = Path(data["scene"]).name if data["scene"] else "scene"
    title = f"{METHOD} on {scene} at {data['resolution']} px, one line per seed"
    if data.get("decay_steps"):
        title += f"\nrates decayed to step {data['decay_steps']:,}, then held"
    plot_psnr_panels([(title, lines)], output)


def markdown(data: dict) -> str:
    """One row per run (layer kind and seed): held-out PSNR (± its spread over the eval images),
    parameters against the dense twin, wall time and load; then, per layer kind run with several seeds,
    the mean ± standard deviation over the seeds."""
    from experiments.common import SEED_SUMMARY_COLUMNS, layer_kind, markdown_table, seed_summary_cells

    runs = in_table_order(data["runs"])
    smoothed = [smoothed_cell(r.get("psnr_curve", []), r["iterations"]) for r in runs]
    with_smoothed = any(cell != "-" for cell in smoothed)  # runs of the recipe's length log too few points
    header = ["method", "field MLP layers", "seed", "parameters", "% of dense", "held-out PSNR (dB) ± std over eval images",
              "SSIM", "iterations", "PSNR gain over the last quarter (dB)",
              *(["smoothed gain over the last quarter (dB)"] if with_smoothed else []), "ns-train wall (s)", "load before / after",
              "CPU stolen"]
    cells = []
    for r, smoothed_gain in zip(runs, smoothed):
        p, res = r["parameters"], r["results"]
        gain = "-" if r["last_quarter_gain_db"] is None else f"{r['last_quarter_gain_db']:+.2f}"
        load = r["load_average_1min_before_and_after"]
        shares = r.get("cpu_time_shares_during_training")
        stolen = "-" if not shares else f"{100 * shares['steal']:.0f} %"
        spread = "" if res["psnr_std"] != res["psnr_std"] else f" ± {res['psnr_std']:.2f}"  # NaN: one eval image
        cells.append([METHOD, layer_kind(r), str(r["seed"]), f"{p['model']:,}", f"{100 * p['model'] / p['dense_twin']:.1f} %",
                      f"{res['psnr']:.2f}{spread}", f"{res['ssim']:.3f}", f"{r['iterations']:,}", gain,
                      *([smoothed_gain] if with_smoothed else []), f"{r['ns_train_wall_seconds']:.0f}", f"{load[0]:.2f} / {load[1]:.2f}",
                      stolen])
    rows = [markdown_table(header, cells).rstrip("\n")]
    summaries = seed_summaries(data["runs"])
    if summaries:
        header = ["field MLP layers", *SEED_SUMMARY_COLUMNS, "longest ns-train wall (s)"]
        cells = [[s["kind"], *seed_summary_cells(s), f"{s['wall_max']:.0f}"] for s in summaries]
        rows += ["", markdown_table(header, cells).rstrip("\n")]
    machine_line = arithmetic_note(data)
    if machine_line:
        rows += ["", machine_line]
    return "\n".join(rows)


def arithmetic_note(data: dict) -> str:
    """What arithmetic the file's runs used, and on how many threads: the wall times mean little without it
    (``precision auto`` is bfloat16 only on a CPU with bfloat16 units, several times faster there). Empty for
    a file that did not record its machine."""
    machine = data.get("machine") or {}
    auto = auto_arithmetic(machine)
    if auto is None:
        return ""
    precisions = {r.get("precision", "auto") for r in data["runs"]}
    if precisions == {"auto"}:
        products = f"{auto[0]} (`precision auto` on {auto[1]})"
    else:
        products = "per run: " + ", ".join(sorted({run_arithmetic(r, data) for r in data["runs"]}))
    threads = machine.get("omp_num_threads") or f"all {machine.get('cpu_count')} cores"
    cpu = f"; CPU: {machine['cpu']}" if machine.get("cpu") else ""  # older files did not record it
    return f"Field products: {products}; threads per run: {threads}{cpu}."


def ns_train_flags(quick: bool, iterations: int | None) -> list[str]:
    """The flags a run adds to the recipe's defaults: none, ``--quick``'s tiny run, or ``--iterations``'
    run length (the learning-rate schedules follow ``--max-num-iterations``: ``LiteTrainerConfig``)."""
    if iterations is not None:
        if quick:
            raise BenchmarkError("--iterations and --quick: --quick sets its own 20 iterations; pass one of them")
        if iterations < 4:
            raise BenchmarkError(f"--iterations {iterations}: expected at least 4 (a curve needs its quarters)")
        return ["--max-num-iterations", str(iterations)]
    if quick:
        return ["--max-num-iterations", "20", "--steps-per-eval-all-images", "10", "--pipeline.model.grid-resolution", "16"]
    return []


def main(argv: list[str] | None = None) -> int:
    from experiments.common import OneLineParser

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="duck", help="a named scene (`sine-fields data list`)")
    parser.add_argument("--data", type=Path, help="an existing scene folder instead of rendering --scene")
    parser.add_argument("--views", type=int, default=60)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--linear", action="append", choices=["sine", "lowrank", "dense"],
                        help="layer kind to run (repeat; default: sine)")
    parser.add_argument("--seed", type=int, action="append",
                        help="ns-train's --machine.seed (repeat for several runs per layer kind; default: 42)")
    parser.add_argument("--work", type=Path, help="where runs and logs go (default: beside --output, not committed)")
    parser.add_argument("--iterations", type=int,
                        help="ns-train's --max-num-iterations (default: the recipe's 2,300; the schedules follow it)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="the field's products (--pipeline.model.precision; auto: bfloat16 on a CPU with "
                             "bfloat16 units); float32 reproduces a float32 file on any CPU")
    parser.add_argument("--lr-scale", type=float, default=1.0, metavar="F",
                        help="multiply every optimiser's starting and final learning rate by F (default: the recipe's, 1)")
    parser.add_argument("--decay-steps", type=int, metavar="N",
                        help="decay the learning rates over the first N steps of --iterations and hold the final "
                             "rates after them (default: decay over the whole run)")
    parser.add_argument("--quick", action="store_true", help="CI: 16 px, 8 views, 20 iterations")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--plot", type=Path, help="after the runs, draw every run's PSNR curve into this PNG")
    parser.add_argument("--plot-only", type=Path, metavar="PNG",
                        help="draw the curves of the runs already in --output into PNG and train nothing")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh: drop the runs in --output and --work (and replace a --plot / --plot-only PNG)")
    args = parser.parse_args(argv)
    for option, png in (("--plot", args.plot), ("--plot-only", args.plot_only)):
        if png is not None and png.exists() and not args.overwrite:
            print(f"error: {option} {png} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
    if args.plot_only is not None:
        return plot_only(args.output, args.plot_only)
    from experiments.common import cpu_model
    from sine_fields.methods.precision import cpu_bfloat16_units

    linears = args.linear or ["sine"]
    seeds = args.seed or [42]  # nerfstudio's default seed
    if args.quick:
        args.views, args.resolution = 8, 16
    work = args.work or args.output.with_name(args.output.stem + "-runs")
    try:
        extra = (ns_train_flags(args.quick, args.iterations) + precision_flags(args.precision)
                 + lr_scale_flags(args.lr_scale)
                 + decay_steps_flags(args.decay_steps, args.iterations))
        if args.data is not None and not (args.data / "transforms.json").is_file():
            raise BenchmarkError(f"--data {args.data}: no transforms.json (make one with `sine-fields data scene`)")
        report = {"command": " ".join(["benchmarks/nerf_lite.py", *(argv if argv is not None else sys.argv[1:])]),
                  "scene": str(args.data) if args.data else args.scene, "views": args.views,
                  "resolution": args.resolution, "quick": args.quick, "iterations": args.iterations,
                  "lr_scale": args.lr_scale, "decay_steps": args.decay_steps,
                  "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                              "bfloat16_units": cpu_bfloat16_units()},
                  "runs": []}
        if args.output.exists() and not args.overwrite:
            previous = json.loads(args.output.read_text())
            differences = settings_differences(previous, report)
            if differences:
                raise BenchmarkError(f"--output {args.output} holds runs of other settings ({'; '.join(differences)}); "
                                     "pass --overwrite to replace it, or another --output")
            report["runs"] = previous["runs"]
        elif args.overwrite and work.exists():
            import shutil

            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        data = args.data
        if data is None:
            data = work / f"{args.scene}{args.resolution}"
            if not (data / "transforms.json").exists():
                render(args.scene, data, args.views, args.resolution)
        from sine_fields.io import atomic_write_json

        for linear in linears:
            for seed in seeds:
                if any(r["linear"] == linear and r["seed"] == seed for r in report["runs"]):
                    print(f"{linear}, seed {seed}: already in {args.output}", flush=True)
                    continue
                print(f"{linear}, seed {seed}: ns-train {METHOD} (load {_load()})", flush=True)
                run = train_and_evaluate(data, linear, seed, work, extra)
                report["runs"] = [*runs_written_meanwhile(args.output, report), run]
                atomic_write_json(args.output, report)
        if args.plot is not None:
            plot(report, args.plot)
            print(f"wrote {args.plot}")
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(report))
    return 0


def plot_only(results: Path, png: Path) -> int:
    """``--plot-only``: the curves of a finished JSON, or a one-line error (exit 2)."""
    if not results.is_file():
        print(f"error: --output {results}: no such file (run the benchmark first)", file=sys.stderr)
        return 2
    try:
        data = json.loads(results.read_text())
        runs = data["runs"]
    except (ValueError, KeyError, TypeError):
        print(f"error: --output {results}: not a nerf_lite.py result (expected JSON with 'runs')", file=sys.stderr)
        return 2
    if not any(r.get("psnr_curve") for r in runs):
        print(f"error: --output {results}: no run has a PSNR curve to draw", file=sys.stderr)
        return 2
    plot(data, png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
