"""Rate-distortion benchmark: packed neural fields against Draco, the mesh codec, on real meshes.

    .venv/bin/python benchmarks/compression.py                          # full: writes benchmarks/results/compression.json
    .venv/bin/python benchmarks/compression.py --limit 3 --steps 200    # a partial run (stated in the JSON)
    .venv/bin/python benchmarks/compression.py --quick --output DIR     # CI smoke run: 3 meshes, tiny budget

Meshes, by a fixed rule on the meshes themselves (``select_meshes``): the bunny, then every CGAL example mesh
that is watertight, one connected body, 1,000 to 60,000 triangles, and not a variant of another mesh (names with
``-shuffled``, ``_bis``, ``_dense``, ``_large``, ``_small``), in name order, the first ``CGAL_COUNT``.

Ours, every field fitted through ``fit_many`` (one Ray task per mesh) and packed at 16 and 8 bits:
sine low-rank and plain low-rank at k in {1, 2, 4, 8} in the paper's 3 -> 256 -> 256 -> 256 -> 1 network, and dense
networks narrowed to widths 16, 32 and 64. Distortion is measured on what each packed file unpacks to
(``score_packed``: extraction, then the run metrics against the ground truth).

Draco (DracoPy, compression level 10) on the ground-truth mesh at position quantisation {8, 10, 12, 14} bits, and on
quadric-decimated copies (fast-simplification) at {60, 125, 250, 500, 1000, 2000, 5000} faces at {8, 10, 12} bits.

Distortion: Chamfer-L1, normal consistency and F-score in the normalised frame (longest side 1), with the run
metrics' definitions. BD-rate (``bd_rate``): the mean difference of log bytes at equal log Chamfer-L1 over the
overlap of two curves, by piecewise-linear interpolation of their Pareto fronts, as a percentage
(negative: the first needs fewer bytes).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "compression.json"
PLOT = ROOT / "docs" / "compression.png"
RUNS = ROOT / "runs" / "bench-compression"

CGAL_COUNT = 20
CGAL_FACES = (1_000, 60_000)
VARIANT_MARKERS = ("-shuffled", "_bis", "_dense", "_large", "_small")
RANKS = (1, 2, 4, 8)
DENSE_WIDTHS = (16, 32, 64)
BITS = (16, 8)
DRACO_BITS = (8, 10, 12, 14)
# 250 .. 5000 faces put Draco at a few kilobytes; 60 and 125 reach the coarse errors of small fields, so that a
# crossover (if there is one) lies inside Draco's measured range rather than beyond it.
DECIMATE_FACES = (60, 125, 250, 500, 1000, 2000, 5000)
DECIMATED_DRACO_BITS = (8, 10, 12)
DRACO_LEVEL = 10  # Draco's strongest (slowest) setting: the codec at its best
TARGET_BYTES = 8 * 1024


def select_meshes(count: int = CGAL_COUNT) -> list[str]:
    """The bunny, then the CGAL meshes the rule in the module docstring picks (fetches CGAL once)."""
    from sine_fields.data.meshes import cgal_names, load_mesh

    chosen = []
    for name in cgal_names():
        if any(marker in name for marker in VARIANT_MARKERS):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mesh = load_mesh(f"cgal:{name}")
            except Exception:  # noqa: BLE001 - a mesh that does not load is not chosen (the rule is about valid meshes)
                continue
        if mesh.is_watertight and CGAL_FACES[0] <= len(mesh.faces) <= CGAL_FACES[1] and mesh.body_count == 1:
            chosen.append(f"cgal:{name}")
        if len(chosen) == count:
            break
    return ["bunny", *chosen]


def field_configs(quick: bool) -> dict[str, tuple[str, dict]]:
    """label -> (family, FieldConfig keyword arguments), smallest parameter count first: a partial run
    covers the few-kilobyte sizes the comparison is about before the larger ones."""
    from sine_fields.shapes.field import FieldConfig

    configs: dict[str, tuple[str, dict]] = {}
    for k in (1,) if quick else RANKS:
        configs[f"sine-k{k}"] = ("sine", {"linear": "sine", "rank": k})
        configs[f"lowrank-k{k}"] = ("lowrank", {"linear": "lowrank", "rank": k})
    for width in (16,) if quick else DENSE_WIDTHS:
        configs[f"dense-w{width}"] = ("dense", {"linear": "dense", "width": width})
    size = {label: FieldConfig(**options).build().num_parameters() for label, (_, options) in configs.items()}
    return dict(sorted(configs.items(), key=lambda item: size[item[0]]))


# ----- Draco ----------------------------------------------------------------------------------------
def draco_points(gt, samples: int) -> list[dict]:
    """Draco's rate-distortion points on one ground truth (``GroundTruth``), in its normalised frame."""
    import DracoPy
    import fast_simplification
    import trimesh

    from sine_fields.shapes.metrics import surface_metrics

    mesh = gt.mesh  # normalised frame: Draco's quantisation grid then spans the same unit box for every mesh
    versions = [("full", None, mesh.vertices, mesh.faces)]
    for faces in DECIMATE_FACES:
        if faces >= len(mesh.faces):
            continue  # the mesh is already that small: the full-mesh rows cover it
        vertices, triangles = fast_simplification.simplify(np.asarray(mesh.vertices, dtype=np.float32),
                                                           np.asarray(mesh.faces, dtype=np.int64),
                                                           target_reduction=1 - faces / len(mesh.faces))
        versions.append((f"{faces} faces", faces, vertices, triangles))
    rows = []
    for version, faces, vertices, triangles in versions:
        for bits in DRACO_BITS if faces is None else DECIMATED_DRACO_BITS:
            data = DracoPy.encode(np.asarray(vertices, dtype=np.float64), np.asarray(triangles, dtype=np.uint32),
                                  quantization_bits=bits, compression_level=DRACO_LEVEL)
            decoded = DracoPy.decode(data)
            decoded_mesh = trimesh.Trimesh(np.asarray(decoded.points), np.asarray(decoded.faces), process=False)
            metrics = surface_metrics(decoded_mesh, mesh, samples=samples)
            rows.append({"method": "draco", "label": f"draco {version} q{bits}", "version": version, "faces": len(triangles),
                         "quantization_bits": bits, "bytes": len(data), **metrics})
    return rows


def _cached_draco(path: Path, mesh: str, samples: int, measure) -> list[dict]:
    """``measure()``'s Draco rows for one mesh, kept in ``path`` (keyed by the mesh, the sample count, the
    codec settings and the DracoPy / fast-simplification versions) so that a resumed or extended run does
    not encode and score every mesh again."""
    import json
    from importlib.metadata import version

    from sine_fields.io import atomic_write_json

    key = {"mesh": mesh, "samples": samples, "draco_bits": list(DRACO_BITS), "decimate_faces": list(DECIMATE_FACES),
           "decimated_bits": list(DECIMATED_DRACO_BITS), "level": DRACO_LEVEL,
           "versions": [version("DracoPy"), version("fast-simplification")]}
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["rows"]
    rows = measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "rows": rows})
    return rows


# ----- ours -----------------------------------------------------------------------------------------
def fit_and_score(meshes: list[str], runs: Path, configs: dict, train, extract, finetune_steps: int, samples: int,
                  address: str | None, on_row, executor: str = "ray") -> None:
    """Fit every config on every mesh through ``fit_many``, then score each packed file against its mesh."""
    from sine_fields.shapes import run as run_module

    # The packed files are scored in this process with the benchmark's sample counts (restored afterwards).
    saved = run_module.SCORE_SURFACE_SAMPLES, run_module.IOU_POINTS
    run_module.SCORE_SURFACE_SAMPLES = run_module.IOU_POINTS = samples
    try:
        _fit_and_score(meshes, runs, configs, train, extract, finetune_steps, address, on_row, executor)
    finally:
        run_module.SCORE_SURFACE_SAMPLES, run_module.IOU_POINTS = saved


def _fit_and_score(meshes, runs, configs, train, extract, finetune_steps, address, on_row, executor) -> None:
    from sine_fields.shapes.config import FitConfig
    from sine_fields.shapes.field import FieldConfig
    from sine_fields.shapes.many import fit_many, mesh_folders
    from sine_fields.shapes.pack import load_packed
    from sine_fields.shapes.pack_commands import score_packed

    folders = mesh_folders(meshes)
    for label, (family, options) in configs.items():
        config = FitConfig(meshes[0], FieldConfig(**options), train, extract)
        result = fit_many(meshes, runs / label, config, address=address, bits=BITS, finetune_steps=finetune_steps,
                          executor=executor)
        for row in result.rows:
            base = {"mesh": row["mesh"], "method": family, "config": label, **{k: options.get(k) for k in ("rank", "width")}}
            if row["status"] == "failed":
                on_row({**base, "label": label, "status": "failed", "reason": row["reason"]})
                continue
            for bits in BITS:
                packed_path = runs / label / folders[row["mesh"]] / f"shape-{bits}bit.sfz"
                metrics = _cached_score(packed_path, row["mesh"], extract, lambda: score_packed(
                    load_packed(packed_path), row["mesh"], extract.resolution, extract.method))
                on_row({**base, "label": f"{label} {bits}-bit", "bits": bits, "bytes": packed_path.stat().st_size,
                        "status": "ok", "float_iou": row.get("iou"), "float_chamfer_l1": row.get("chamfer_l1"),
                        **{k: metrics[k] for k in ("iou", "chamfer_l1", "normal_consistency", "fscore", "num_parameters")}})


def _cached_score(packed_path: Path, mesh: str, extract, score) -> dict:
    """``score()`` of a packed file, kept beside it (keyed by the file's bytes, the mesh, the extraction and the
    sample counts) so that a rerun of the benchmark does not extract and score it again."""
    import hashlib
    import json

    from sine_fields.io import atomic_write_json
    from sine_fields.shapes import run as run_module

    key = {"sha256": hashlib.sha256(packed_path.read_bytes()).hexdigest(), "mesh": mesh, "extract": extract.to_dict(),
           "samples": [run_module.SCORE_SURFACE_SAMPLES, run_module.IOU_POINTS]}
    cache = packed_path.with_suffix(".score.json")
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["metrics"]
    metrics = score()
    atomic_write_json(cache, {"key": key, "metrics": metrics})
    return metrics


# ----- curves and BD-rate ---------------------------------------------------------------------------
def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(bytes, chamfer) points that no other point beats on both, by increasing bytes (decreasing chamfer)."""
    front: list[tuple[float, float]] = []
    for size, error in sorted(points):
        if not front or error < front[-1][1]:
            front.append((size, error))
    return front


def _log_rate_at(front: list[tuple[float, float]], log_errors: np.ndarray) -> np.ndarray:
    # Along a Pareto front log(bytes) falls as log(chamfer) rises: interpolate over increasing log chamfer.
    xs = np.log([e for _, e in front])[::-1]
    ys = np.log([s for s, _ in front])[::-1]
    return np.interp(log_errors, xs, ys)


def bd_rate(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> dict:
    """Mean byte difference of ``ours`` vs ``theirs`` at equal Chamfer-L1 (percent; negative = ours smaller)."""
    a, b = pareto(ours), pareto(theirs)
    if len(a) < 2 or len(b) < 2:
        return {"bd_rate_percent": None, "reason": "a curve has fewer than two Pareto points"}
    low = max(math.log(min(e for _, e in a)), math.log(min(e for _, e in b)))
    high = min(math.log(max(e for _, e in a)), math.log(max(e for _, e in b)))
    if low >= high:
        return {"bd_rate_percent": None, "reason": "the curves do not overlap in Chamfer-L1"}
    grid = np.linspace(low, high, 200)
    diff = _log_rate_at(a, grid) - _log_rate_at(b, grid)
    return {"bd_rate_percent": float((math.exp(diff.mean()) - 1) * 100),
            "chamfer_range": [float(math.exp(low)), float(math.exp(high))]}


def crossover(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> list[dict]:
    """For each of our Pareto points at most ``TARGET_BYTES``: the bytes Draco needs for the same Chamfer-L1,
    interpolated on its front where the error lies inside Draco's measured range, and otherwise the smallest
    measured Draco point that is at least as accurate (None when none is)."""
    front, other = pareto(ours), pareto(theirs)
    rows = []
    if not front or not other:
        return rows
    lo, hi = min(e for _, e in other), max(e for _, e in other)
    for size, error in front:
        if size > TARGET_BYTES:
            continue
        if lo <= error <= hi:
            draco, how = float(math.exp(_log_rate_at(other, np.array([math.log(error)]))[0])), "interpolated"
        else:
            as_good = [s for s, e in other if e <= error]
            draco, how = (float(min(as_good)), "smallest measured point at least as accurate") if as_good else (None, "")
        rows.append({"bytes": size, "chamfer_l1": error, "draco_bytes_same_chamfer": draco, "draco_how": how,
                     "ours_smaller": None if draco is None else size < draco})
    return rows


def median_points(rows: list[dict], meshes: list[str]) -> dict[str, dict]:
    """label -> median bytes and distortion over the meshes that have that label (all of them, or it is left out)."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("status", "ok") == "ok":
            by_label.setdefault(row["label"], []).append(row)
    medians = {}
    for label, group in by_label.items():
        if {r["mesh"] for r in group} != set(meshes):
            continue  # a median over different meshes would not be comparable
        medians[label] = {"method": group[0]["method"], "bits": group[0].get("bits"), "meshes": len(group),
                          **{k: statistics.median(r[k] for r in group) for k in ("bytes", "chamfer_l1", "normal_consistency", "fscore")}}
    return medians


def summarise(rows: list[dict], meshes: list[str]) -> dict:
    medians = median_points(rows, meshes)

    def curve(method: str, bits: int | None = None) -> list[tuple[float, float]]:
        return [(m["bytes"], m["chamfer_l1"]) for m in medians.values()
                if m["method"] == method and (bits is None or m["bits"] == bits)]

    sine, lowrank, draco = curve("sine"), curve("lowrank"), curve("draco")
    return {
        "median": medians,
        "fronts": {name: pareto(points) for name, points in (("sine", sine), ("lowrank", lowrank), ("dense", curve("dense")),
                                                              ("draco", draco))},
        "bd_rate_sine_vs_draco": bd_rate(sine, draco),
        "bd_rate_sine_vs_lowrank": bd_rate(sine, lowrank),
        "bd_rate_sine16_vs_sine8": bd_rate(curve("sine", 16), curve("sine", 8)),
        "at_8kb_sine_vs_draco": crossover(sine, draco),
        "equal_bytes_sine_vs_lowrank": equal_bytes(medians, "sine", "lowrank"),
    }


def equal_bytes(medians: dict[str, dict], ours: str, theirs: str) -> list[dict]:
    """Settings of two methods with the same parameter count (sine-k2 16-bit vs lowrank-k2 16-bit): median
    bytes and Chamfer-L1 of each, for when their curves do not overlap and a BD-rate is undefined. The byte
    counts can differ at 8 bits, where a sine file codes its sine factors wider (``SINE_FACTOR_BITS``)."""
    rows = []
    for label, m in sorted(medians.items()):
        if m["method"] != ours:
            continue
        other = medians.get(label.replace(ours, theirs, 1))
        if other is not None:
            rows.append({"setting": label, "bytes": m["bytes"], f"{theirs}_bytes": other["bytes"], f"{ours}_chamfer_l1": m["chamfer_l1"],
                         f"{theirs}_chamfer_l1": other["chamfer_l1"], "ratio": other["chamfer_l1"] / m["chamfer_l1"]})
    return rows


# ----- outputs --------------------------------------------------------------------------------------
def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    """The median-mesh table: every method's median bytes and distortion, then the BD-rates."""
    summary = result["summary"]
    order = sorted(summary["median"].items(), key=lambda item: (item[1]["method"], item[1]["bytes"]))
    lines = ["| method | setting | median bytes | median Chamfer-L1 | median normal consistency | median F-score |",
             "|---|---|---|---|---|---|"]
    for label, m in order:
        lines.append(f"| {m['method']} | {label} | {m['bytes']:.0f} | {m['chamfer_l1']:.5f} | {m['normal_consistency']:.3f} "
                     f"| {m['fscore']:.3f} |")
    lines.append("")
    lines.append(f"Meshes: {len(result['meshes'])} ({', '.join(result['meshes'])}); training: {result['train']['steps']} "
                 f"steps of {result['train']['batch_size']} points; extraction {result['extract']['method']} "
                 f"{result['extract']['resolution']}^3.")
    lines.append("")
    for key, name in (("bd_rate_sine_vs_draco", "sine vs Draco"), ("bd_rate_sine_vs_lowrank", "sine vs plain low-rank"),
                      ("bd_rate_sine16_vs_sine8", "sine 16-bit vs sine 8-bit")):
        bd = summary[key]
        if bd["bd_rate_percent"] is None:
            lines.append(f"- BD-rate {name}: not defined ({bd['reason']}).")
        else:
            lines.append(f"- BD-rate {name}: {bd['bd_rate_percent']:+.1f} % bytes at equal Chamfer-L1 "
                         f"(Chamfer-L1 {bd['chamfer_range'][0]:.4f} to {bd['chamfer_range'][1]:.4f}).")
    for row in summary.get("equal_bytes_sine_vs_lowrank", []):
        lines.append(f"- {row['setting']} ({row['bytes']:.0f} bytes) vs the plain low-rank field of the same parameter count "
                     f"({row.get('lowrank_bytes', row['bytes']):.0f} bytes): Chamfer-L1 {row['sine_chamfer_l1']:.5f} vs "
                     f"{row['lowrank_chamfer_l1']:.5f} ({row['ratio']:.1f} times lower).")
    for point in summary["at_8kb_sine_vs_draco"]:
        draco = point["draco_bytes_same_chamfer"]
        if draco is None:
            verdict = "more accurate than every measured Draco point"
        else:
            needs = (f"Draco needs {draco:.0f} bytes" if point.get("draco_how", "interpolated") == "interpolated" else
                     f"Draco needs at most {draco:.0f} bytes (its smallest measured file at least as accurate)")
            verdict = f"{needs}: {'sine smaller' if point['ours_smaller'] else 'Draco smaller'}"
        lines.append(f"- sine at {point['bytes']:.0f} bytes, Chamfer-L1 {point['chamfer_l1']:.5f}: {verdict}.")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sine_fields.io import atomic_write_bytes

    meshes = result["meshes"]
    styles = {"sine": ("tab:red", "o"), "lowrank": ("tab:blue", "s"), "dense": ("tab:green", "^"), "draco": ("black", "x")}
    columns = min(4, len(meshes) + 1)
    rows_n = math.ceil((len(meshes) + 1) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4 * columns, 3.2 * rows_n), squeeze=False)
    panels = [("median mesh", None)] + [(Path(mesh).name if "/" in mesh else mesh, mesh) for mesh in meshes]
    for ax, (title, mesh) in zip(axes.flat, panels):
        for method, (colour, marker) in styles.items():
            if mesh is None:
                points = [(m["bytes"], m["chamfer_l1"]) for m in result["summary"]["median"].values() if m["method"] == method]
            else:
                points = [(r["bytes"], r["chamfer_l1"]) for r in result["rows"]
                          if r["mesh"] == mesh and r["method"] == method and r.get("status", "ok") == "ok"]
            if not points:
                continue
            ax.scatter(*zip(*points), s=12, color=colour, marker=marker, alpha=0.5)
            front = pareto(points)
            ax.plot(*zip(*front), color=colour, label=method)
        ax.axvline(TARGET_BYTES, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("bytes")
        ax.set_ylabel("Chamfer-L1")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def replot(output: Path | None) -> int:
    """Table and plot from an existing JSON; the summary is recomputed from its rows (the JSON is kept)."""
    import json

    from sine_fields.io import atomic_write_text

    json_path = output / "compression.json" if output else RESULTS
    result = json.loads(json_path.read_text())
    result["summary"] = summarise(result["rows"], result["meshes"])
    atomic_write_text((output / "compression.md") if output else RESULTS.with_suffix(".md"), markdown(result))
    plot(result, (output / "compression.png") if output else PLOT)
    print(markdown(result))
    return 0


def _without_runs(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--runs":
            skip = True
        elif not arg.startswith("--runs="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 meshes, k = 1 and width 16 only, a tiny budget (CI)")
    parser.add_argument("--output", type=Path, default=None, help="folder for JSON, table and plot (default: the committed paths)")
    parser.add_argument("--meshes", nargs="*", default=None, help="mesh sources instead of the rule's selection")
    parser.add_argument("--limit", type=int, default=None, help="only the first N meshes of the selection (a partial run)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per fit (default 300; quick 30)")
    parser.add_argument("--resolution", type=int, default=None, help="extraction grid (default 256; quick 64)")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: a local one)")
    parser.add_argument("--executor", choices=("ray", "local"), default="ray",
                        help="fit-many's executor: Ray tasks, or one fit after another in this process")
    parser.add_argument("--runs", type=Path, default=None, help="run folders and Draco rows (reused: finished fits and measured meshes are not redone)")
    parser.add_argument("--replot", action="store_true",
                        help="only rewrite the table and plot from the JSON (e.g. of an interrupted run)")
    args = parser.parse_args(argv)
    if args.replot:
        return replot(args.output)

    from sine_fields.io import atomic_write_json, atomic_write_text
    from sine_fields.shapes.config import ExtractConfig
    from sine_fields.shapes.fit import TrainConfig
    from sine_fields.shapes.many import mesh_folders
    from sine_fields.shapes.run import load_ground_truth

    quick = args.quick
    meshes = args.meshes or select_meshes(2 if quick else CGAL_COUNT)
    selected = list(meshes)
    if args.limit:
        meshes = meshes[: args.limit]
    steps = args.steps or (30 if quick else 300)
    # The demo's budget for full runs (300 steps of 4,096 points from a 200k pool); far below the paper's.
    train = TrainConfig(steps=steps, batch_size=1024 if quick else 4096, samples=20_000 if quick else 200_000)
    extract = ExtractConfig(resolution=args.resolution or (64 if quick else 256))
    samples = 20_000 if quick else 100_000
    finetune_steps = 10 if quick else 200
    output = args.output
    json_path = output / "compression.json" if output else RESULTS
    runs = args.runs or (output / "runs" if output else RUNS)
    started = time.time()
    rows: list[dict] = []
    result = {
        # The command that made this JSON (--runs, a cache folder for the fits, does not change results).
        "command": " ".join(["benchmarks/compression.py", *_without_runs(argv if argv is not None else sys.argv[1:])]),
        "quick": quick, "selected_meshes": selected, "meshes": meshes,
        "partial": meshes != selected, "train": train.to_dict(), "extract": extract.to_dict(),
        "executor": args.executor, "finetune_steps_8bit": finetune_steps, "surface_samples": samples, "draco_compression_level": DRACO_LEVEL,
        "platform": platform.platform(), "rows": rows,
    }

    def save() -> None:
        result["seconds"] = round(time.time() - started, 1)
        result["load_average"] = list(__import__("os").getloadavg())
        result["summary"] = summarise(rows, meshes)
        atomic_write_json(json_path, result)

    folders = mesh_folders(meshes)
    for mesh in meshes:
        for row in _cached_draco(runs / "draco" / f"{folders[mesh]}.json", mesh, samples,
                                 lambda: draco_points(load_ground_truth(mesh), samples)):
            rows.append({"mesh": mesh, "status": "ok", **row})
        save()
        print(f"draco {mesh}: {sum(r['mesh'] == mesh for r in rows)} points", flush=True)

    def on_row(row: dict) -> None:
        rows.append(row)
        save()
        print(f"{row['mesh']} {row['label']}: {row.get('bytes')} bytes, Chamfer-L1 {row.get('chamfer_l1')}", flush=True)

    from sine_fields.shapes.many import start_ray

    ray, ours = start_ray(args.address) if args.executor == "ray" else (None, False)  # one cluster for all fits
    try:
        fit_and_score(meshes, runs, field_configs(quick), train, extract, finetune_steps, samples, args.address, on_row,
                      args.executor)
    finally:
        if ours:
            ray.shutdown()
    save()
    table = markdown(result)
    atomic_write_text((output / "compression.md") if output else RESULTS.with_suffix(".md"), table)
    plot(result, (output / "compression.png") if output else PLOT)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
