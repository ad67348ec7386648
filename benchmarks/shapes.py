"""Shape benchmark: dense vs low-rank vs sine low-rank occupancy fields, extraction and Chamfer cost.

    .venv/bin/python benchmarks/shapes.py            # full run, writes benchmarks/results/shapes.json
    .venv/bin/python benchmarks/shapes.py --quick    # tiny budget, for a smoke test (separate JSON)

Sections, in order (each fit is a run folder under runs/bench-shapes/, reused when it finished with
the same configuration and extraction, fitted again when either differs):
- omega: sine low-rank at rank 1 on the bunny for each omega in OMEGAS (the sweep behind the default);
- ranks: on the bunny at ranks 1, 2, 4, 8, 16 and on three CGAL meshes at ranks 1, 4, 16: dense once,
  plain low-rank and sine low-rank at each rank;
- extraction: the bunny's dense field at 256^3, dense grid vs coarse-to-fine (queries, seconds,
  Chamfer-L1 of each mesh against the ground truth);
- chamfer: time of one Chamfer evaluation on 100k + 100k surface points.

Finished fits are reused, so parts can run in parallel processes (``--sections ranks --meshes
cgal:camel --output /tmp/part.json``) before one full run collects everything into the JSON.

Every fit uses the demo's fixed budget (sine_fields.demo.DEMO_TRAIN: 300 steps of 4,096 points, a
200k-point pool, seed 0) and the paper's network (3 -> 256 -> 256 -> 256 -> 1, Gaussian), on one CPU
thread by default: a deliberately small budget, far below the paper's, so IoUs are lower than there.
The JSON is rewritten after every fit, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from sine_fields.demo import DEMO_RESOLUTION, DEMO_TRAIN, demo_fit
from sine_fields.errors import UserError
from sine_fields.io import atomic_write_json
from sine_fields.shapes.field import SHAPE_OMEGA_RANK1, shape_omega
from sine_fields.shapes.metrics import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "shapes.json"
RUNS = ROOT / "runs" / "bench-shapes"
OMEGAS = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
# The sweep is repeated at a higher rank to see whether the best omega moves with k.
OMEGA_RANKS = (1, 8)
OMEGAS_HIGH_RANK = (30.0, 100.0, 300.0, 1000.0)
BUNNY_RANKS = (1, 2, 4, 8, 16)
CGAL_MESHES = ("cgal:armadillo", "cgal:camel", "cgal:fandisk")
CGAL_RANKS = (1, 4, 16)
EXTRACT_RESOLUTION = 256


def run_fit(mesh: str, linear: str, rank: int, omega: float | None, train, quick: bool) -> dict:
    from sine_fields.shapes.run import ShapeRun

    label = "dense" if linear == "dense" else f"{linear}-k{rank}" + (f"-w{omega:g}" if linear == "sine" else "")
    folder = RUNS / ("quick" if quick else "full") / mesh.replace(":", "-") / label
    config = demo_fit(mesh, linear, rank, omega, train)
    config.extract.resolution = 32 if quick else DEMO_RESOLUTION
    run = reusable_run(folder, config)
    if run is None:
        run = ShapeRun.fit(folder, config, device="cpu", progress=False)
    metrics = run.metrics
    row = {"mesh": mesh, "linear": linear, "rank": None if linear == "dense" else rank,
           "omega": omega if linear == "sine" else None, "run": str(folder.relative_to(ROOT))}
    row |= {k: metrics[k] for k in METRIC_KEYS} | {"fit_seconds": metrics["timings"]["fit_seconds"]}
    print(f"  {mesh:<16} {label:<18} params {row['num_parameters']:>7,}  IoU {row['iou']:.4f}  "
          f"near {row['iou_near_surface']:.4f}  CD-L1 {row['chamfer_l1']:.5f}  fit {row['fit_seconds']:.0f}s", flush=True)
    return row


def reusable_run(folder: Path, config):
    """The finished run in ``folder`` when it is this fit with this extraction; otherwise None, after
    removing a finished or partial run of another configuration (this benchmark's own folder)."""
    from sine_fields.shapes.run import ShapeRun

    if not (folder / "config.json").exists():
        return None
    try:
        run = ShapeRun.open(folder)
        same = run.fit_config.same_fit(config) and run.fit_config.extract == config.extract
        if same and run.paths.metrics.exists():
            return run
        if same:
            return None  # the same fit, interrupted: ShapeRun.fit resumes it
    except UserError:
        pass  # unreadable or from another version: fitted again
    print(f"  {folder.relative_to(ROOT)} holds another configuration: fitting it again", flush=True)
    shutil.rmtree(folder)
    return None


def extraction_section(train, quick: bool) -> dict:
    import trimesh

    from sine_fields.shapes.extract import extract
    from sine_fields.shapes.metrics import surface_metrics
    from sine_fields.shapes.run import ShapeRun, load_ground_truth

    resolution = 64 if quick else EXTRACT_RESOLUTION
    run = ShapeRun.open(RUNS / ("quick" if quick else "full") / "bunny" / "dense")
    field = run.load_field("cpu")
    gt = load_ground_truth("bunny")
    out = {"run": str(run.root.relative_to(ROOT)), "resolution": resolution}
    for method in ("dense", "coarse-to-fine"):
        result = extract(field.inside_values, resolution, method, level=field.config.inside_sign * field.config.raw_level())
        mesh = trimesh.Trimesh(result.vertices, result.faces, process=False)
        out[method] = {"field_queries": result.field_queries, "seconds": round(result.seconds, 2),
                       "chamfer_l1": surface_metrics(mesh, gt.mesh)["chamfer_l1"], "faces": len(result.faces)}
        print(f"  extraction {method:<15} queries {result.field_queries:>11,}  {result.seconds:.1f}s  "
              f"CD-L1 {out[method]['chamfer_l1']:.6f}", flush=True)
    dense, c2f = out["dense"], out["coarse-to-fine"]
    out["query_fraction"] = c2f["field_queries"] / dense["field_queries"]
    out["chamfer_l1_relative_difference"] = abs(c2f["chamfer_l1"] - dense["chamfer_l1"]) / dense["chamfer_l1"]
    return out


def chamfer_section() -> dict:
    import trimesh

    from sine_fields.shapes.metrics import SURFACE_SAMPLES, surface_metrics
    from sine_fields.shapes.run import load_ground_truth

    gt = load_ground_truth("bunny")
    moved = trimesh.Trimesh(gt.mesh.vertices + 0.001, gt.mesh.faces, process=False)
    start = time.perf_counter()
    surface_metrics(moved, gt.mesh)
    seconds = time.perf_counter() - start
    print(f"  chamfer on {SURFACE_SAMPLES:,} + {SURFACE_SAMPLES:,} points: {seconds:.2f}s", flush=True)
    return {"points_each": SURFACE_SAMPLES, "seconds": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget smoke test (writes shapes_quick.json)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest on a shared machine)")
    parser.add_argument("--sections", default="omega,ranks,extraction,chamfer", help="comma-separated subset")
    parser.add_argument("--meshes", default=None, help="comma-separated subset of the ranks section's meshes")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default benchmarks/results/shapes.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train = replace(DEMO_TRAIN, steps=20, samples=20_000, batch_size=1024) if args.quick else DEMO_TRAIN
    results_path = args.output or (RESULTS.with_name("shapes_quick.json") if args.quick else RESULTS)
    result = json.loads(results_path.read_text()) if results_path.exists() else {}
    result["setup"] = {"train": train.to_dict(), "network": "3-256-256-256-1 Gaussian, hidden layers factorised",
                       "resolution": DEMO_RESOLUTION, "threads": args.threads, "torch": torch.__version__,
                       "machine": platform.processor() or platform.machine(), "omega_rule": f"{SHAPE_OMEGA_RANK1:g} / sqrt(rank)"}
    sections = args.sections.split(",")
    started = time.perf_counter()

    def save() -> None:
        result["seconds_total_last_run"] = round(time.perf_counter() - started, 1)
        atomic_write_json(results_path, result)

    omegas = OMEGAS[:2] if args.quick else OMEGAS
    if "omega" in sections:
        print("omega sweep (bunny, sine low-rank)")
        result["omega"] = []
        for rank in OMEGA_RANKS:
            for omega in omegas if rank == 1 else (omegas if args.quick else OMEGAS_HIGH_RANK):
                result["omega"].append(run_fit("bunny", "sine", rank, omega, train, args.quick))
                save()
    if "ranks" in sections:
        print(f"ranks (sine at the shape default omega = {SHAPE_OMEGA_RANK1:g} / sqrt(rank), from the sweep)")
        result["ranks"] = []
        plan = [("bunny", BUNNY_RANKS[:2] if args.quick else BUNNY_RANKS)]
        plan += [(mesh, CGAL_RANKS) for mesh in (CGAL_MESHES[:1] if args.quick else CGAL_MESHES)]
        if args.meshes:
            plan = [(mesh, ranks) for mesh, ranks in plan if mesh in args.meshes.split(",")]
        for mesh, ranks in plan:
            result["ranks"].append(run_fit(mesh, "dense", 1, None, train, args.quick))
            save()
            for rank in ranks:
                for linear in ("lowrank", "sine"):
                    result["ranks"].append(run_fit(mesh, linear, rank, shape_omega(rank), train, args.quick))
                    save()
    if "extraction" in sections:
        print("extraction (bunny, dense field)")
        result["extraction"] = extraction_section(train, args.quick)
        save()
    if "chamfer" in sections:
        print("chamfer timing")
        result["chamfer"] = chamfer_section()
        save()
    print(f"wrote {results_path}")
    return 0


def markdown(result: dict) -> str:
    """README tables from the JSON."""
    lines = []
    setup = result.get("setup", {})
    train = setup.get("train", {})
    lines.append(f"Budget per fit: {train.get('steps')} steps x {train.get('batch_size')} points, "
                 f"{setup.get('threads')} CPU thread(s), network {setup.get('network')}; meshes at "
                 f"{setup.get('resolution')}^3 (coarse-to-fine). `.venv/bin/python benchmarks/shapes.py`")
    if result.get("ranks"):
        lines += ["", "| mesh | rank | params (k) | IoU dense | IoU low-rank | IoU sine | Chamfer-L1 dense | "
                      "low-rank | sine | F-score dense | low-rank | sine |", "|" + "---|" * 12]
        rows = result["ranks"]
        for mesh in dict.fromkeys(r["mesh"] for r in rows):
            dense = next((r for r in rows if r["mesh"] == mesh and r["linear"] == "dense"), None)
            for rank in sorted({r["rank"] for r in rows if r["mesh"] == mesh and r["rank"]}):
                low = next((r for r in rows if r["mesh"] == mesh and r["linear"] == "lowrank" and r["rank"] == rank), None)
                sine = next((r for r in rows if r["mesh"] == mesh and r["linear"] == "sine" and r["rank"] == rank), None)
                if not (dense and low and sine):
                    continue
                lines.append(
                    f"| {mesh} | {rank} | {low['num_parameters']:,} ({100 * low['num_parameters'] / dense['num_parameters']:.1f} %) | "
                    f"{dense['iou']:.4f} | {low['iou']:.4f} | {sine['iou']:.4f} | {dense['chamfer_l1']:.5f} | "
                    f"{low['chamfer_l1']:.5f} | {sine['chamfer_l1']:.5f} | {dense['fscore']:.3f} | {low['fscore']:.3f} | "
                    f"{sine['fscore']:.3f} |")
    if result.get("omega"):
        lines += ["", "Omega sweep (bunny, sine low-rank):", "",
                  "| rank | omega | IoU | IoU near surface | Chamfer-L1 | F-score | fit s |", "|---|---|---|---|---|---|---|"]
        for r in result["omega"]:
            lines.append(f"| {r['rank']} | {r['omega']:g} | {r['iou']:.4f} | {r['iou_near_surface']:.4f} | {r['chamfer_l1']:.5f} | "
                         f"{r['fscore']:.3f} | {r['fit_seconds']:.0f} |")
    if result.get("extraction"):
        e = result["extraction"]
        lines += ["", f"Extraction of the bunny's dense field at {e['resolution']}^3:", "",
                  "| method | field queries | seconds | Chamfer-L1 |", "|---|---|---|---|"]
        for method in ("dense", "coarse-to-fine"):
            lines.append(f"| {method} | {e[method]['field_queries']:,} | {e[method]['seconds']:.1f} | {e[method]['chamfer_l1']:.6f} |")
        lines.append(f"\nCoarse-to-fine used {100 * e['query_fraction']:.1f} % of the dense queries; Chamfer-L1 "
                     f"differs by {100 * e['chamfer_l1_relative_difference']:.2f} %.")
    if result.get("chamfer"):
        c = result["chamfer"]
        lines.append(f"\nChamfer on {c['points_each']:,} + {c['points_each']:,} points: {c['seconds']:.2f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
