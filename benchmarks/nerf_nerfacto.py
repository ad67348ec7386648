"""sine-nerfacto against its dense twin (the same config with ``linear dense``) at equal iterations.

    .venv/bin/python benchmarks/nerf_nerfacto.py --scene duck --iterations 300 --seed 0 --seed 1 --seed 2 \
        --output benchmarks/results/nerf-nerfacto-duck.json

Stock ``nerfacto`` cannot be the baseline offline (it downloads LPIPS weights at start-up), so the dense
twin is ``sine-nerfacto`` with ``--pipeline.model.linear dense``: everything else (hash grid, proposal
networks, sampler, optimisers, schedule, rays) is identical. Reports held-out PSNR, the exact parameters of
the hash grids, of the field MLPs that get factorised and of everything else, and seconds per iteration with
the load average (a shared CPU makes timings follow the load, not the layers). ``--seed`` repeats for several
runs per layer kind; each run stores its held-out PSNR at every quarter of its iterations and the gain over
the last quarter, and the table adds the mean and spread over the seeds. A finished run is kept: rerunning the
same command (without ``--overwrite``) trains only the runs its output does not hold yet.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from sine_fields.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


class BenchmarkError(Exception):
    """Bad input: printed on one line, exit code 2."""


def parameter_split(model) -> dict[str, int]:
    """Exact parameter counts of the model: hash grids, the field MLPs (the factorised part), the rest."""
    from nerfstudio.field_components.encodings import HashEncoding

    from sine_fields.methods.sine_nerfacto import NERFACTO_MLPS

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    grids = sum(count(m) for m in model.modules() if isinstance(m, HashEncoding))
    field_mlps = sum(count(model.field.get_submodule(name)) for name in NERFACTO_MLPS)
    total = count(model)
    return {"total": total, "hash_grids": grids, "field_mlps": field_mlps, "other": total - grids - field_mlps}


def count_only(scene: Path, linear: str) -> dict:
    """The parameter split of the model nerfstudio would build for ``scene``, without training it."""
    import json

    from sine_fields.methods.common import model_in_unit_box
    from sine_fields.methods.sine_nerfacto import nerfacto_trainer_config

    meta = json.loads((scene / "transforms.json").read_text())
    config = nerfacto_trainer_config().pipeline.model
    config.linear = linear
    model = model_in_unit_box(config, num_train_data=len(meta["train_filenames"]))
    return {"scene": scene.name, "linear": linear, "rank": config.rank if linear != "dense" else None,
            "omega": config.omega if linear == "sine" else None, "iterations": 0, "parameters": parameter_split(model)}


def train(scene: Path, linear: str, iterations: int, rays: int, seed: int, output: Path) -> dict:
    from sine_fields.methods.common import lpips_only_if_available
    from sine_fields.methods.sine_nerfacto import nerfacto_trainer_config

    config = nerfacto_trainer_config()
    config.pipeline.datamanager.data = scene
    config.pipeline.datamanager.dataparser.orientation_method = "none"
    config.pipeline.datamanager.dataparser.center_method = "none"
    config.pipeline.datamanager.dataparser.auto_scale_poses = False
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    config.pipeline.datamanager.eval_num_rays_per_batch = rays
    config.pipeline.model.linear = linear
    config.machine.device_type = "cpu"
    config.machine.seed = seed
    config.vis = "tensorboard"
    config.output_dir = output
    config.max_num_iterations = iterations
    config.steps_per_save = 10**9
    config.steps_per_eval_batch = 10**9
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.set_timestamp()
    torch.manual_seed(seed)
    trainer = config.setup(local_rank=0, world_size=1)
    with lpips_only_if_available():
        trainer.setup()
    model = trainer.pipeline.model
    load_start = os.getloadavg()
    quarter = max(1, iterations // 4)
    curve: list[list[float]] = []
    evaluating = 0.0
    started = time.perf_counter()
    for step in range(iterations):
        trainer.train_iteration(step)
        if (step + 1) % quarter == 0 and step + 1 < iterations:
            before = time.perf_counter()
            curve.append([step + 1, held_out_metrics(trainer, model)["psnr"]])
            evaluating += time.perf_counter() - before
    train_seconds = time.perf_counter() - started - evaluating
    load_end = os.getloadavg()
    metrics = held_out_metrics(trainer, model)
    curve.append([iterations, metrics["psnr"]])
    from experiments.common import last_quarter_gain

    return {
        "scene": scene.name,
        "linear": linear,
        "seed": seed,
        "rank": model.config.rank if linear != "dense" else None,
        "omega": model.config.omega if linear == "sine" else None,
        "iterations": iterations,
        "rays": rays,
        "parameters": parameter_split(model),
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "psnr_curve": curve,
        "last_quarter_gain_db": last_quarter_gain(curve, iterations),
        "seconds_per_iteration": train_seconds / iterations,
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
    }


def held_out_metrics(trainer, model) -> dict[str, float]:
    """PSNR and SSIM averaged over the held-out images, the pipeline put back in training mode after."""
    from sine_fields.methods.common import drop_missing_lpips

    trainer.pipeline.eval()
    try:
        metrics = drop_missing_lpips(model, trainer.pipeline.get_average_eval_image_metrics())
    finally:
        trainer.pipeline.train()
    return {"psnr": float(metrics["psnr"]), "ssim": float(metrics.get("ssim", float("nan")))}


def seed_summaries(runs: list[dict]) -> list[dict]:
    """Per scene and layer kind trained with two seeds or more: the final held-out PSNR's mean and sample
    standard deviation, its range, and the mean last-quarter gain."""
    from experiments.common import mean_std, seed_summaries as summarise

    summaries = summarise([r for r in runs if r["iterations"] > 0], lambda r: (r["scene"], r["linear"]), lambda r: r["psnr"])
    for s in summaries:
        s["scene"], s["linear"] = s["group"]
        gains = [r["last_quarter_gain_db"] for r in s["runs"] if r.get("last_quarter_gain_db") is not None]
        s["last_quarter_gain_mean"] = mean_std(gains)[0] if gains else None
    return summaries


def markdown(data: dict) -> str:
    """One row per scene, layer kind and seed; then, per scene and layer kind with several seeds, the mean ±
    standard deviation over the seeds. A ``--count-only`` report: the parameter split alone."""
    from experiments.common import SEED_SUMMARY_COLUMNS, layer_kind, markdown_table, seed_summary_cells

    if all(r["iterations"] == 0 for r in data["runs"]):  # --count-only: the split alone
        rows = ["| scene | field MLP layers | hash-grid parameters | field-MLP parameters | other | total |",
                "|---|---|---|---|---|---|"]
        for r in data["runs"]:
            p = r["parameters"]
            kind = layer_kind(r | {"omega": None})  # omega does not change the parameter count
            rows.append(f"| {r['scene']} | {kind} | {p['hash_grids']:,} | {p['field_mlps']:,} | {p['other']:,} | {p['total']:,} |")
        return "\n".join(rows)
    # The parameter split is the same for every seed: the --count-only table shows it.
    rows = ["| scene | field MLP layers | seed | held-out PSNR (dB) | SSIM | PSNR gain over the last quarter (dB) | "
            "parameters | s / iteration | load average (start / end, 1 min) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        gain = "-" if r.get("last_quarter_gain_db") is None else f"{r['last_quarter_gain_db']:+.2f}"
        rows.append(f"| {r['scene']} | {layer_kind(r)} | {r['seed']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {gain} | "
                    f"{r['parameters']['total']:,} | {r['seconds_per_iteration']:.2f} | "
                    f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f} |")
    summaries = seed_summaries(data["runs"])
    if summaries:
        header = ["scene", "field MLP layers", *SEED_SUMMARY_COLUMNS, "mean last-quarter gain (dB)"]
        cells = [[m["scene"], m["kind"], *seed_summary_cells(m),
                  "-" if m["last_quarter_gain_mean"] is None else f"{m['last_quarter_gain_mean']:+.2f}"] for m in summaries]
        rows += ["", markdown_table(header, cells).rstrip("\n")]
    return "\n".join(rows)


def markdown_merged(reports: list[dict]) -> str:
    """``markdown`` of several reports' runs as one table (one report per scene, run side by side)."""
    return markdown({"runs": [run for report in reports for run in report["runs"]]})


def main(argv: list[str] | None = None) -> int:
    from experiments.common import OneLineParser, settings_differences

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", action="append", required=True, help="a scene name (rendered here) or a dataset folder; repeat")
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--seed", type=int, action="append",
                        help="machine seed of a run (repeat for several runs per layer kind; default: 0)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--count-only", action="store_true", help="build both models and count their parameters; no training")
    args = parser.parse_args(argv)
    seeds = args.seed or [0]
    report = {"command": " ".join(["benchmarks/nerf_nerfacto.py", *(argv if argv is not None else sys.argv[1:])]),
              "views": args.views, "resolution": args.resolution, "iterations": 0 if args.count_only else args.iterations,
              "rays": args.rays,
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
              "runs": []}
    try:
        if args.iterations < 1 or args.rays < 1:
            raise BenchmarkError("--iterations and --rays must be >= 1")
        if args.output.exists() and not args.overwrite:
            previous = json.loads(args.output.read_text())
            differences = settings_differences(previous, report, ("views", "resolution", "iterations", "rays"))
            if differences:
                raise BenchmarkError(f"--output {args.output} holds runs of other settings ({'; '.join(differences)}); "
                                     "pass --overwrite to replace it, or another --output")
            report["runs"] = previous["runs"]
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from sine_fields.data.scenes import RenderOptions, render_scene

    with tempfile.TemporaryDirectory() as tmp:
        for source in args.scene:
            folder = Path(source)
            rendered = not folder.is_dir()
            if rendered:
                folder = Path(tmp) / source
            for seed in [None] if args.count_only else seeds:
                for linear in ("sine", "dense"):
                    if any(r["scene"] == folder.name and r["linear"] == linear and r.get("seed") == seed for r in report["runs"]):
                        print(f"{folder.name}: {linear}, seed {seed}: already in {args.output}", flush=True)
                        continue
                    if rendered and not (folder / "transforms.json").exists():
                        render_scene(source, folder, RenderOptions(views=args.views, resolution=args.resolution))
                    if args.count_only:
                        report["runs"].append(count_only(folder, linear) | {"seed": None})
                    else:
                        print(f"{folder.name}: {linear}, seed {seed}, {args.iterations} iterations", flush=True)
                        report["runs"].append(train(folder, linear, args.iterations, args.rays, seed, Path(tmp) / "outputs"))
                    atomic_write_json(args.output, report)
    # written again when nothing was trained, so the file names the command that completed it
    atomic_write_json(args.output, report)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
