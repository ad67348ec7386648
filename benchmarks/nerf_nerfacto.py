"""sine-nerfacto against its dense twin (the same config with ``linear dense``) at equal iterations.

    .venv/bin/python benchmarks/nerf_nerfacto.py --scene duck --scene spider --iterations 300 \
        --output benchmarks/results/nerf-nerfacto.json

Stock ``nerfacto`` cannot be the baseline offline (it downloads LPIPS weights at start-up), so the dense
twin is ``sine-nerfacto`` with ``--pipeline.model.linear dense``: everything else (hash grid, proposal
networks, sampler, optimisers, schedule, rays) is identical. Reports held-out PSNR, the exact parameters of
the hash grids, of the field MLPs that get factorised and of everything else, and seconds per iteration with
the load average (a shared CPU makes timings follow the load, not the layers).
"""

from __future__ import annotations

import argparse
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

    from nerfstudio.data.scene_box import SceneBox

    from sine_fields.methods.sine_nerfacto import nerfacto_trainer_config

    meta = json.loads((scene / "transforms.json").read_text())
    config = nerfacto_trainer_config().pipeline.model
    config.linear = linear
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = config.setup(scene_box=box, num_train_data=len(meta["train_filenames"]), metadata={})
    return {"scene": scene.name, "linear": linear, "rank": config.rank if linear != "dense" else None,
            "omega": config.omega if linear == "sine" else None, "iterations": 0, "parameters": parameter_split(model)}


def train(scene: Path, linear: str, iterations: int, rays: int, seed: int, output: Path) -> dict:
    from sine_fields.methods.common import drop_missing_lpips, lpips_only_if_available
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
    started = time.perf_counter()
    for step in range(iterations):
        trainer.train_iteration(step)
    train_seconds = time.perf_counter() - started
    load_end = os.getloadavg()
    trainer.pipeline.eval()
    metrics = drop_missing_lpips(model, trainer.pipeline.get_average_eval_image_metrics())
    return {
        "scene": scene.name,
        "linear": linear,
        "rank": model.config.rank if linear != "dense" else None,
        "omega": model.config.omega if linear == "sine" else None,
        "iterations": iterations,
        "rays": rays,
        "parameters": parameter_split(model),
        "psnr": float(metrics["psnr"]),
        "ssim": float(metrics.get("ssim", float("nan"))),
        "seconds_per_iteration": train_seconds / iterations,
        "load_average_start": list(load_start),
        "load_average_end": list(load_end),
    }


def markdown(data: dict) -> str:
    """One row per scene and layer kind."""
    rows = ["| scene | field MLP layers | held-out PSNR (dB) | SSIM | hash-grid parameters | field-MLP parameters | other | total | s / iteration | load average (start / end, 1 min) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        p = r["parameters"]
        if r["iterations"] == 0:  # --count-only: the split alone
            kind = "dense" if r["linear"] == "dense" else f"{r['linear']} k={r['rank']}"
            rows.append(f"| {r['scene']} | {kind} | - | - | {p['hash_grids']:,} | {p['field_mlps']:,} | {p['other']:,} | {p['total']:,} | - | - |")
            continue
        kind = "dense" if r["linear"] == "dense" else f"{r['linear']} k={r['rank']}" + (f", omega {r['omega']:g}" if r["omega"] else "")
        rows.append(f"| {r['scene']} | {kind} | {r['psnr']:.2f} | {r['ssim']:.3f} | {p['hash_grids']:,} | {p['field_mlps']:,} | {p['other']:,} | {p['total']:,} | "
                    f"{r['seconds_per_iteration']:.2f} | {r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", action="append", required=True, help="a scene name (rendered here) or a dataset folder; repeat")
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--count-only", action="store_true", help="build both models and count their parameters; no training")
    args = parser.parse_args(argv)
    try:
        if args.output.exists() and not args.overwrite:
            raise BenchmarkError(f"--output {args.output} exists; pass --overwrite to replace it")
        if args.iterations < 1 or args.rays < 1:
            raise BenchmarkError("--iterations and --rays must be >= 1")
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from sine_fields.data.scenes import RenderOptions, render_scene

    report = {"command": " ".join(["benchmarks/nerf_nerfacto.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
              "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.scene:
            folder = Path(source)
            if not folder.is_dir():
                folder = Path(tmp) / source
                render_scene(source, folder, RenderOptions(views=args.views, resolution=args.resolution))
            for linear in ("sine", "dense"):
                if args.count_only:
                    report["runs"].append(count_only(folder, linear))
                else:
                    print(f"{folder.name}: {linear}, {args.iterations} iterations", flush=True)
                    report["runs"].append(train(folder, linear, args.iterations, args.rays, args.seed, Path(tmp) / "outputs"))
                atomic_write_json(args.output, report)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
