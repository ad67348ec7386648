"""``--omega auto`` against a swept grid of fixed omegas, on the compression benchmark's meshes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/omega_auto.py             # full: benchmarks/results/omega_auto.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/omega_auto.py --limit 10  # the first 10 meshes (the JSON says partial)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/omega_auto.py --max-minutes 80  # as many meshes as fit in 80 minutes
    .venv/bin/python benchmarks/omega_auto.py --quick --output DIR          # smoke run: 2 meshes, a tiny budget

Meshes: ``benchmarks/compression.py``'s ``select_meshes`` (the bunny and 20 CGAL meshes, by a fixed rule). Budget:
the compression benchmark's (300 steps of 4,096 points from a 200k pool, seed 0), sine low-rank fields of the
paper's network at k = 1 and k = 4.

For each mesh and k, the probe of ``--omega auto`` (``probe_omega``) trains every candidate of the grid
{100, 300, 1000, 3000} for its probe steps; each candidate's probe state is then continued to the end of the run.
A probe state is exactly the first steps of a fit with that fixed omega (same initialisation, schedule and
batches; ``tests/shapes/test_omega.py`` checks that an auto run ends bit-identical to the fixed run of the omega
it chose), so the continued candidates are the grid's fixed-omega fits and the chosen one is the auto fit: the
grid costs no extra training. The rank rule's omega (1000 / sqrt(k)) is fitted as well when it is not in the grid.

Scores: ``iou`` is the run metric (the field's inside set against the ground truth on the fixed 100k uniform
points; no mesh extraction), ``iou_near_surface`` its near-surface share. Seconds: each fixed fit's training; auto's
is the whole probe plus the chosen candidate's continuation, so ``auto_extra_seconds`` is what auto costs over
the fixed fit of the omega it chose. The held-back score of every candidate is also recorded at 2 and 4 times the
probe steps, to show what a longer probe would have chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `from benchmarks.compression import ...` when run as a script
    sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).parent / "results" / "omega_auto.json"
RUNS = ROOT / "runs" / "bench-omega-auto"
RANKS = (1, 4)
WITHIN = 0.01  # "within 1 % IoU": at most 0.01 below the best grid IoU (one IoU point)


def _iou(field, points) -> float:
    from sine_fields.shapes.metrics import iou

    return iou(field.inside(points.points), points.occupancy)


def _holdout(field, held_back, train) -> dict:
    """The probe's score (IoU) and, as an alternative criterion, the held-back BCE loss of a field."""
    import torch
    from torch.nn import functional as F

    from sine_fields.shapes.omega import holdout_score

    with torch.no_grad():
        logits = torch.from_numpy(field.values(held_back.points))
        bce = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(held_back.occupancy.astype("float32")))
    return {"iou": holdout_score(field, held_back, train), "bce": float(bce)}


def _pick(candidates: list[float], scores: list[float], higher_is_better: bool, rule: float) -> float:
    import math

    best = max(scores) if higher_is_better else min(scores)
    tied = [c for c, s in zip(candidates, scores) if s == best]
    return min(tied, key=lambda c: abs(math.log(c / rule)))


def mesh_and_rank(gt, mesh: str, k: int, train, pool, evaluation, folder: Path) -> dict:
    """One mesh at rank ``k``: the probe, every candidate continued to the end, the rule's omega, auto's pick."""
    import torch

    from sine_fields.shapes.config import FitConfig
    from sine_fields.shapes.field import FieldConfig, shape_omega
    from sine_fields.shapes.fit import fit, load_field, new_field
    from sine_fields.shapes.omega import holdout_points, probe_omega

    if folder.exists():
        shutil.rmtree(folder)  # a half-done mesh is redone: a probe must start from step 0
    folder.mkdir(parents=True)
    config = FitConfig(mesh, FieldConfig(linear="sine", rank=k, omega="auto"), train)
    probe = probe_omega(gt, config, folder, "cpu", pool=pool)
    probe_train_seconds = {c: float(torch.load(path, weights_only=True)["seconds"]) for c, path in probe.checkpoints.items()}
    held_back = holdout_points(gt, train)
    uniform, near = evaluation
    fixed: dict[str, dict] = {}
    longer = [s for s in (2 * probe.probe_steps, 4 * probe.probe_steps) if s < train.steps]
    probe_states = {c: _holdout(load_field(replace(config.field, omega=c), path, torch.device("cpu")), held_back, train)
                    for c, path in probe.checkpoints.items()}
    rule = shape_omega(k)
    omegas = list(probe.candidates) + ([] if rule in probe.candidates else [rule])
    for omega in omegas:
        field_config = replace(config.field, omega=float(omega))
        checkpoint = probe.checkpoints.get(omega, folder / f"omega-{omega:g}.pt")
        field = new_field(field_config, train.seed)
        later_scores = {str(probe.probe_steps): probe_states[omega]} if omega in probe_states else {}
        for stop in longer:  # the held-back score a longer probe would have seen
            fit(gt, field, train, checkpoint=checkpoint, progress=False, stop_at=stop, pool=pool)
            later_scores[str(stop)] = _holdout(field, held_back, train)
            field = new_field(field_config, train.seed)
        result = fit(gt, field, train, checkpoint=checkpoint, progress=False, pool=pool)
        fixed[f"{omega:g}"] = {"omega": float(omega), "iou": _iou(result.field, uniform),
                               "iou_near_surface": _iou(result.field, near), "seconds": round(result.seconds, 2),
                               "in_grid": omega in probe.candidates, "holdout_at_steps": later_scores}
        print(f"  {mesh} k={k} omega {omega:g}: iou {fixed[f'{omega:g}']['iou']:.4f} ({result.seconds:.1f} s)", flush=True)
    grid = {key: row for key, row in fixed.items() if row["in_grid"]}
    best_key = max(grid, key=lambda key: grid[key]["iou"])
    chosen = fixed[f"{probe.chosen:g}"]
    auto_seconds = probe.seconds + chosen["seconds"] - probe_train_seconds[probe.chosen]
    # What other probes would have picked: longer ones, and the held-back BCE loss instead of IoU (ties to the rule).
    longer_picks = {}
    for stop in [probe.probe_steps, *longer]:
        for criterion in ("iou", "bce"):
            scores = [fixed[f"{c:g}"]["holdout_at_steps"][str(stop)][criterion] for c in probe.candidates]
            longer_picks[f"{criterion}@{stop}"] = _pick(probe.candidates, scores, criterion == "iou", rule)
    return {
        "mesh": mesh, "rank": k, "probe": probe.to_dict(), "fixed": fixed,
        "best_grid_omega": grid[best_key]["omega"], "best_grid_iou": grid[best_key]["iou"],
        "auto_omega": probe.chosen, "auto_iou": chosen["iou"], "auto_iou_near_surface": chosen["iou_near_surface"],
        "auto_seconds": round(auto_seconds, 2), "auto_extra_seconds": round(auto_seconds - chosen["seconds"], 2),
        "fixed_seconds_of_chosen": chosen["seconds"],
        "rule_omega": rule, "rule_iou": fixed[f"{rule:g}"]["iou"],
        "longer_probe_picks": {stop: {"omega": omega, "iou": fixed[f"{omega:g}"]["iou"]} for stop, omega in longer_picks.items()},
    }


def summarise(rows: list[dict]) -> dict:
    """Per rank, over meshes: the median shortfall of auto (and of the rule) below the best grid IoU, the share
    of meshes within ``WITHIN``, how often auto picked the best, auto's extra seconds."""
    summary = {}
    for k in sorted({row["rank"] for row in rows}):
        group = [row for row in rows if row["rank"] == k]
        auto_gap = [row["best_grid_iou"] - row["auto_iou"] for row in group]
        rule_gap = [row["best_grid_iou"] - row["rule_iou"] for row in group]
        entry = {
            "meshes": len(group),
            "median_best_minus_auto": statistics.median(auto_gap),
            "max_best_minus_auto": max(auto_gap),
            "share_auto_within_1pct": sum(g <= WITHIN for g in auto_gap) / len(group),
            "share_auto_picked_best": sum(row["auto_omega"] == row["best_grid_omega"] for row in group) / len(group),
            "median_best_minus_rule": statistics.median(rule_gap),
            "share_rule_within_1pct": sum(g <= WITHIN for g in rule_gap) / len(group),
            "median_auto_iou": statistics.median(row["auto_iou"] for row in group),
            "median_best_grid_iou": statistics.median(row["best_grid_iou"] for row in group),
            "median_rule_iou": statistics.median(row["rule_iou"] for row in group),
            "median_auto_extra_seconds": statistics.median(row["auto_extra_seconds"] for row in group),
            "median_fixed_seconds": statistics.median(row["fixed_seconds_of_chosen"] for row in group),
            "auto_picks": {f"{c:g}": sum(row["auto_omega"] == c for row in group) for c in group[0]["probe"]["candidates"]},
            "best_grid_omegas": {f"{c:g}": sum(row["best_grid_omega"] == c for row in group)
                                 for c in group[0]["probe"]["candidates"]},
        }
        for stop in group[0]["longer_probe_picks"]:  # "iou@60": a 60-step probe scored by IoU
            entry[f"median_best_minus_probe_{stop}"] = statistics.median(
                row["best_grid_iou"] - row["longer_probe_picks"][stop]["iou"] for row in group)
        entry["auto_within_1pct_on_median_mesh"] = entry["median_best_minus_auto"] <= WITHIN
        summary[f"k{k}"] = entry
    return summary


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    """Per rank: median IoU of the best grid omega, auto and the rule; shortfalls; share within 1 %; seconds."""
    lines = ["| k | meshes | best grid IoU | auto IoU | rule IoU | best - auto (median) | auto within 0.01 | "
             "auto picked best | best - rule (median) | auto extra s (median) | fixed fit s (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in result["summary"].items():
        lines.append(f"| {key[1:]} | {s['meshes']} | {_fmt(s['median_best_grid_iou'])} | {_fmt(s['median_auto_iou'])} | "
                     f"{_fmt(s['median_rule_iou'])} | {_fmt(s['median_best_minus_auto'], 4)} | "
                     f"{s['share_auto_within_1pct']:.0%} | {s['share_auto_picked_best']:.0%} | "
                     f"{_fmt(s['median_best_minus_rule'], 4)} | {s['median_auto_extra_seconds']:.1f} | "
                     f"{s['median_fixed_seconds']:.1f} |")
    # The grid itself: median IoU of each fixed omega (and the rule's, where it is not in the grid) per rank.
    omegas = sorted({row["omega"] for r in result["rows"] for row in r["fixed"].values()})
    lines += ["", "| k | " + " | ".join(f"omega {w:g}" for w in omegas) + " |", "|---|" + "---|" * len(omegas)]
    for key in result["summary"]:
        group = [r for r in result["rows"] if r["rank"] == int(key[1:])]
        cells = []
        for w in omegas:
            values = [r["fixed"][f"{w:g}"]["iou"] for r in group if f"{w:g}" in r["fixed"]]
            cells.append(_fmt(statistics.median(values)) if len(values) == len(group) else "")
        lines.append(f"| {key[1:]} | " + " | ".join(cells) + " |")
    train = result["train"]
    lines.append("")
    lines.append(f"Medians over {len(result['meshes_done'])} meshes{' (partial run)' if result['partial'] else ''}; "
                 f"{train['steps']} steps of {train['batch_size']} points from {train['samples']:,} samples, seed "
                 f"{train['seed']}; probe: {result['probe']['probe_steps']} steps per candidate of "
                 f"{', '.join(f'{c:g}' for c in result['probe']['candidates'])}. IoU: the run metric on "
                 f"{result['iou_points']:,} uniform points. `{result['command']}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 meshes and a tiny budget (a smoke run)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N meshes of the selection (partial)")
    parser.add_argument("--meshes", nargs="*", default=None, help="mesh sources instead of the rule's selection")
    parser.add_argument("--output", type=Path, default=None, help="folder for the JSON (default: the committed path)")
    parser.add_argument("--runs", type=Path, default=None, help="folder for the probe checkpoints")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop before a mesh that would end past this many minutes (the JSON says partial)")
    args = parser.parse_args(argv)

    import torch

    from benchmarks.compression import CGAL_COUNT, select_meshes
    from sine_fields.io import atomic_write_json
    from sine_fields.shapes import run as run_module
    from sine_fields.shapes.fit import TrainConfig
    from sine_fields.shapes.many import mesh_folders
    from sine_fields.shapes.omega import CANDIDATES, HOLDOUT_POINTS, PROBE_SHARE, probe_steps
    from sine_fields.shapes.run import load_ground_truth
    from sine_fields.shapes.sampling import evaluation_points, training_points

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    quick = args.quick
    selected = args.meshes or select_meshes(1 if quick else CGAL_COUNT)
    meshes = selected[: args.limit] if args.limit else list(selected)
    # The compression benchmark's budget (300 steps of 4,096 points from a 200k pool, seed 0).
    train = TrainConfig(steps=30 if quick else 300, batch_size=1024 if quick else 4096,
                        samples=20_000 if quick else 200_000, seed=0)
    iou_points = 20_000 if quick else run_module.IOU_POINTS
    json_path = (args.output / "omega_auto.json") if args.output else RESULTS
    runs = args.runs or ((args.output / "runs") if args.output else RUNS)
    folders = mesh_folders(meshes)
    started = time.time()
    rows: list[dict] = []
    result = {
        "command": " ".join(["benchmarks/omega_auto.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": quick, "selected_meshes": selected, "meshes": meshes, "meshes_done": [],
        "partial": True, "ranks": list(RANKS), "train": train.to_dict(), "iou_points": iou_points,
        "probe": {"candidates": list(CANDIDATES), "probe_share": PROBE_SHARE, "probe_steps": probe_steps(train),
                  "holdout_points": HOLDOUT_POINTS},
        "within": WITHIN, "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()), "rows": rows,
    }

    # Resume: the meshes an earlier run of the same settings finished are kept, not fitted again (every fit is
    # seeded, so a finished mesh's rows are what a new run would measure).
    same = ("train", "ranks", "iou_points", "probe", "within")
    if json_path.exists() and not quick:
        earlier = json.loads(json_path.read_text())
        if all(earlier.get(key) == result[key] for key in same):
            kept = [m for m in earlier.get("meshes_done", []) if m in meshes]
            rows.extend(row for row in earlier["rows"] if row["mesh"] in kept)
            result["meshes_done"] = kept
            result["resumed_meshes"] = kept

    def save() -> None:
        result["partial"] = result["meshes_done"] != selected
        result["seconds"] = round(time.time() - started, 1)
        result["load_average"] = list(os.getloadavg())
        result["summary"] = summarise(rows) if rows else {}
        atomic_write_json(json_path, result)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("omega auto"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}", markup=False),
               TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("fits", total=len(meshes) * len(RANKS), last="")
        bar.update(task, advance=len(result["meshes_done"]) * len(RANKS))
        for mesh in meshes:
            if mesh in result["meshes_done"]:
                continue
            elapsed = time.time() - started
            done_here = len(result["meshes_done"]) - len(result.get("resumed_meshes", []))
            per_mesh = elapsed / done_here if done_here else 0.0
            if args.max_minutes is not None and elapsed + per_mesh > 60 * args.max_minutes:
                result["stopped"] = f"--max-minutes {args.max_minutes:g}: stopped before {mesh}"
                break
            gt = load_ground_truth(mesh)
            pool = training_points(gt, train.samples, seed=train.seed)  # the run's own pool, drawn once per mesh
            evaluation = evaluation_points(gt, iou_points)
            mesh_rows = []
            for k in RANKS:
                mesh_rows.append(mesh_and_rank(gt, mesh, k, train, pool, evaluation, runs / folders[mesh] / f"k{k}"))
                row = mesh_rows[-1]
                bar.update(task, advance=1, last=f"{mesh} k={k}: auto {row['auto_omega']:g} iou {row['auto_iou']:.4f}, "
                                                  f"best {row['best_grid_omega']:g} iou {row['best_grid_iou']:.4f}")
            rows.extend(mesh_rows)  # a mesh counts when both ranks are done
            result["meshes_done"].append(mesh)
            save()
    save()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
