"""How far a packed shape unpacks from its run, per packing option: where 8-bit codes lose the surface.

    .venv/bin/python benchmarks/pack_precision.py              # writes benchmarks/results/pack_precision.json
    .venv/bin/python benchmarks/pack_precision.py --quick --output /tmp/pp.json   # a few options (smoke run)

The field: a rank-1 sine occupancy fit of the bunny in the paper's 3 -> 256 -> 256 -> 256 -> 1 network, fitted
once with the settings of the pack test (200 steps of 4,096 points from a 100k pool, mesh at 128^3) into
``--runs`` (reused when present), and once with 1,000 steps for the options that decide the default.

Each option writes a real packed file (``pack_bytes``), unpacks it (``unpack_bytes``), extracts it the way
``sine-fields unpack`` does (coarse-to-fine, 128^3) and records: the file's bytes, the Chamfer-L1 from the
unpacked surface to the run's own mesh (``surface_chamfer``: points on each surface against the other's
triangles), and IoU against the ground truth on the run metrics' fixed point set. The options:

- the 16-bit file (reference) and the all-8-bit file after post-training quantisation (PTQ);
- one group of tensors at 8 bits, the rest at 16 (PTQ): which tensors lose the surface;
- quantisation-aware fine-tuning (QAT) of the all-8-bit file: targets (ground-truth labels or the run's own
  outputs), steps and learning rate;
- finer affine groups: one (offset, step) pair, in float16, per block of 64 or 16 entries of a row;
- wider codes for the sine factors only (9 to 12 bits, or 16 bits for the first sine layer's), with and without QAT.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pack_precision.json"
RUNS = ROOT / "runs" / "pack-precision"
# The pack test's bunny fit (tests/shapes/test_pack.py, BUNNY_FIT), and the fit command's default length.
FIT_ARGS = ["--rank", "1", "--batch-size", "4096", "--samples", "100000", "--resolution", "128", "--device", "cpu"]
FIT_STEPS = {"bunny-k1": 200, "bunny-k1-1000steps": 1000}
RESOLUTION = 128
TARGET = 0.005  # the bound on Chamfer-L1 to the run's own mesh at 8 bits


def _option(label: str, group: str, *, eight: str = "all", factor_bits: int = 8, block: int = 0, half_affine: bool = False,
            qat_steps: int = 0, qat_lr: float = 1e-4, qat_target: str = "run", bits: int = 8, runs: tuple[str, ...] = ("bunny-k1",)):
    """One packing option. ``eight``: which tensors get 8-bit codes (the others 16): all, first, factors,
    factors-1 / factors-2 (one sine layer's), hidden-biases, last; ``factor_bits``: the sine factors' width
    when ``eight`` is all; ``bits``: the file's nominal width (16: everything at 16)."""
    return {"label": label, "group": group, "bits": bits, "eight": eight, "factor_bits": factor_bits, "block": block,
            "affine": "float16" if half_affine else "float32", "qat_steps": qat_steps, "qat_lr": qat_lr,
            "qat_target": qat_target, "runs": runs}


BOTH = ("bunny-k1", "bunny-k1-1000steps")
OPTIONS = [
    _option("16-bit codes", "reference", bits=16, factor_bits=16, runs=BOTH),
    _option("8-bit codes, PTQ", "PTQ", runs=BOTH),
    _option("8-bit first layer only (rest 16)", "one group at 8 bits", eight="first"),
    _option("8-bit sine factors only (rest 16)", "one group at 8 bits", eight="factors"),
    _option("8-bit factors of sine layer 1 only", "one group at 8 bits", eight="factors-1"),
    _option("8-bit factors of sine layer 2 only", "one group at 8 bits", eight="factors-2"),
    _option("8-bit hidden biases only (rest 16)", "one group at 8 bits", eight="hidden-biases"),
    _option("8-bit last layer only (rest 16)", "one group at 8 bits", eight="last"),
    _option("8-bit, QAT 200 steps on labels (lr 1e-4)", "QAT", qat_steps=200, qat_target="labels"),
    _option("8-bit, QAT 200 steps on the run (lr 1e-4)", "QAT", qat_steps=200),
    _option("8-bit, QAT 600 steps on the run (lr 1e-4)", "QAT", qat_steps=600),
    _option("8-bit, blocks of 64 (float16 pairs), PTQ", "finer affine groups", block=64, half_affine=True),
    _option("8-bit, blocks of 16 (float16 pairs), PTQ", "finer affine groups", block=16, half_affine=True),
    _option("8-bit, sine layer 1 factors at 16 bits, PTQ", "wider factor codes", eight="all-but-factors-1"),
    _option("8-bit, factors at 12 bits, PTQ", "wider factor codes", factor_bits=12),
    _option("8-bit, factors at 11 bits, PTQ", "wider factor codes", factor_bits=11),
    _option("8-bit, factors at 10 bits, PTQ", "wider factor codes", factor_bits=10, runs=BOTH),
    _option("8-bit, factors at 9 bits, PTQ", "wider factor codes", factor_bits=9),
    _option("8-bit, factors at 9 bits, QAT 200 on the run", "wider factor codes", factor_bits=9, qat_steps=200, runs=BOTH),
    _option("8-bit, factors at 10 bits, QAT 200 on the run", "wider factor codes", factor_bits=10, qat_steps=200, runs=BOTH),
    _option("8-bit, factors at 10 bits, QAT 200 on labels", "wider factor codes", factor_bits=10, qat_steps=200,
            qat_target="labels"),
]
QUICK = ["16-bit codes", "8-bit codes, PTQ", "8-bit sine factors only (rest 16)", "8-bit, factors at 10 bits, PTQ"]


def _widths(option: dict, names: list[str], factors: set[str]) -> dict[str, int]:
    """Each tensor's code width for ``option``."""
    if option["bits"] == 16:
        return {name: 16 for name in names}
    first, last = names[0].rsplit(".", 1)[0], names[-1].rsplit(".", 1)[0]
    layer = {name: name.rsplit(".", 1)[0] for name in names}
    sine_layers = list(dict.fromkeys(layer[name] for name in names if name in factors))  # in network order
    chosen = {
        "all": set(names),
        "first": {n for n in names if layer[n] == first},
        "last": {n for n in names if layer[n] == last},
        "factors": set(factors),
        "factors-1": {n for n in factors if layer[n] == sine_layers[0]},
        "factors-2": {n for n in factors if layer[n] == sine_layers[1]},
        "hidden-biases": {n for n in names if n.endswith("bias") and layer[n] in sine_layers},
        "all-but-factors-1": set(names) - {n for n in factors if layer[n] == sine_layers[0]},
    }[option["eight"]]
    return {name: (option["factor_bits"] if name in factors else 8) if name in chosen else 16 for name in names}


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _fit(root: Path, steps: int) -> None:
    from sine_fields import cli

    if (root / "metrics.json").exists():
        return
    code = cli.main(["fit", "--mesh", "bunny", "--output", str(root), "--steps", str(steps), *FIT_ARGS])
    if code != 0:
        raise SystemExit(f"the bunny fit into {root} failed (exit code {code})")


def measure(run_root: Path, option: dict, iou_points, samples: int) -> dict:
    """Pack the run with ``option``, unpack, extract, and measure the file against the run and the ground truth."""
    import torch
    import trimesh

    from sine_fields.shapes.metrics import iou
    from sine_fields.shapes.pack import AFFINE_DTYPES, pack_bytes, sine_factor_names, unpack_bytes
    from sine_fields.shapes.pack_commands import extract_packed, finetune_for_pack, surface_chamfer
    from sine_fields.shapes.run import ShapeRun

    run = ShapeRun.open(run_root)
    field = run.load_field("cpu")
    names = list(field.state_dict())
    widths = _widths(option, names, sine_factor_names(run.field_config))
    affine = AFFINE_DTYPES[option["affine"]]
    start = time.perf_counter()
    if option["qat_steps"]:
        finetune_for_pack(run, field, option["qat_steps"], widths, lr=option["qat_lr"], target=option["qat_target"],
                          block=option["block"], affine_dtype=affine)
    data = pack_bytes(run.field_config, field.state_dict(), run.normalisation, option["bits"], widths,
                      block=option["block"], affine_dtype=affine)
    pack_seconds = time.perf_counter() - start
    packed = unpack_bytes(data)
    extraction = extract_packed(packed, RESOLUTION, "coarse-to-fine")
    surface = trimesh.Trimesh(extraction.vertices, extraction.faces, process=False)
    uniform, near = iou_points
    with torch.no_grad():
        result = {
            "run": run_root.name, "bytes": len(data), "code_bits": sorted(set(widths.values())),
            "chamfer_to_run": surface_chamfer(surface, run.mesh("normalised"), samples),
            "iou": iou(packed.field.inside(uniform.points), uniform.occupancy),
            "iou_near_surface": iou(packed.field.inside(near.points), near.occupancy),
            "run_iou": iou(field.inside(uniform.points), uniform.occupancy) if not option["qat_steps"] else None,
            "pack_seconds": round(pack_seconds, 2), "load_after": _load(),
        }
    return result


def _cached(run_root: Path, option: dict, points, samples: int) -> dict:
    """``measure``, kept in the run folder's ``pack-precision/`` by option (with the surface samples), so
    that an interrupted benchmark resumes; delete that folder to measure again."""
    import hashlib
    import json

    from sine_fields.io import atomic_write_json

    key = json.dumps({**{k: v for k, v in option.items() if k not in ("label", "group", "runs")}, "samples": samples},
                     sort_keys=True)
    path = run_root / "pack-precision" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return {**json.loads(path.read_text())["result"], "reused": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)}
    result = measure(run_root, option, points, samples)
    path.parent.mkdir(exist_ok=True)
    atomic_write_json(path, {"option": json.loads(key), "result": result})
    return result


def markdown(result: dict) -> str:
    """The options table: bytes (the same for every fit), then Chamfer-L1 to the run's surface and IoU per fit."""
    runs = result["runs"]
    header = ["option", "group", "bytes"] + [h for run in runs for h in (f"Chamfer-L1 to run, {run['steps']}-step fit",
                                                                         f"IoU, {run['steps']}-step fit")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for option in result["options"]:
        label = f"**{option['label']} (default)**" if option["label"] == result["default"] else option["label"]
        cells = [label, option["group"], f"{option['results'][0]['bytes']:,}"]
        for run in runs:
            row = next((r for r in option["results"] if r["run"] == run["name"]), None)
            cells += ["-", "-"] if row is None else [f"{row['chamfer_to_run']:.4f}", f"{row['iou']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    float_iou = "; ".join(f"{run['steps']}-step fit {run['float_iou']:.3f}" for run in runs)
    lines += ["", f"IoU of the runs themselves (unquantised): {float_iou}. Asked for at 8 bits: Chamfer-L1 to the run's "
              f"mesh at most {result['target']}. The 16-bit file is {result['reference_bytes']:,} bytes, the default "
              f"8-bit file {result['default_bytes']:,} ({result['default_bytes'] / result['reference_bytes']:.2f} times as many)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON to write")
    parser.add_argument("--runs", type=Path, default=RUNS, help="folder of the bunny fits (reused when present)")
    parser.add_argument("--samples", type=int, default=50_000, help="surface points per mesh for the Chamfer-L1")
    parser.add_argument("--quick", action="store_true", help="four options, the 200-step fit only")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.overwrite:
        print(f"error: --output {args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2

    import torch
    from rich.progress import Progress

    from sine_fields.io import atomic_write_json
    from sine_fields.shapes.metrics import iou
    from sine_fields.shapes.pack import SINE_FACTOR_BITS
    from sine_fields.shapes.pack_commands import FINETUNE_STEPS
    from sine_fields.shapes.run import IOU_POINTS, ShapeRun
    from sine_fields.shapes.sampling import evaluation_points

    options = [o for o in OPTIONS if o["label"] in QUICK] if args.quick else OPTIONS
    run_names = ["bunny-k1"] if args.quick else list(FIT_STEPS)
    load_before, started = _load(), time.perf_counter()
    runs, results = [], {option["label"]: [] for option in options}
    jobs = sum(name in option["runs"] for option in options for name in run_names)
    with Progress() as bar:
        task = bar.add_task("pack options", total=jobs)
        for name in run_names:  # one fit after the other: a fit's folder is complete before it is measured
            bar.update(task, description=f"fit {name}")
            _fit(args.runs / name, FIT_STEPS[name])
            run = ShapeRun.open(args.runs / name)
            points = evaluation_points(run.ground_truth(), IOU_POINTS)
            runs.append({"name": name, "steps": FIT_STEPS[name],
                         "float_iou": iou(run.load_field("cpu").inside(points[0].points), points[0].occupancy)})
            for option in options:
                if name in option["runs"]:
                    bar.update(task, description=f"{name}: {option['label']}")
                    results[option["label"]].append(_cached(args.runs / name, option, points, args.samples))
                    bar.advance(task)
    # The default of `sine-fields pack --bits 8`: sine factors SINE_FACTOR_BITS wide, FINETUNE_STEPS of QAT on the run.
    default = next((o["label"] for o in options if o["bits"] == 8 and o["eight"] == "all" and o["block"] == 0
                    and o["factor_bits"] == SINE_FACTOR_BITS and o["qat_steps"] == FINETUNE_STEPS
                    and o["qat_target"] == "run"), None)
    first = lambda label: results[label][0]["bytes"] if label in results and results[label] else None  # noqa: E731
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else "pack_precision " + " ".join(argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_before": load_before, "load_after": _load()},
        # Measurements already in a run folder's pack-precision/ are reused (marked "reused"): seconds and the
        # load above cover this invocation only; each new measurement records the load after it.
        "seconds": round(time.perf_counter() - started, 1),
        "target": TARGET, "resolution": RESOLUTION, "surface_samples": args.samples, "iou_points": IOU_POINTS,
        "runs": runs,
        "default": default, "reference_bytes": first("16-bit codes"), "default_bytes": first(default),
        "options": [{**{k: v for k, v in option.items() if k != "runs"}, "results": results[option["label"]]}
                    for option in options],
    }
    atomic_write_json(args.output, result)
    print(markdown(result) if default else f"{args.output}: {jobs} measurements (no default option among them)")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
