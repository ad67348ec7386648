"""Meshes from a trained NeRF, scored against the ground truth: `sine-fields nerf-mesh` at its auto level and
at fixed density levels, and `ns-export poisson` on the same run, all with the same shape metrics.

    .venv/bin/python benchmarks/nerf_mesh.py RUN/config.yml --output benchmarks/results/nerf_mesh_duck.json

The run's dataset folder must hold the ground-truth `mesh.ply` (`sine-fields data scene` writes it). Every
mesh, extraction.json and metrics.json is kept under `--work` (default: beside the JSON, in a folder named
after it, which is not committed). Poisson runs nerfstudio's own exporter in a subprocess with the quick
point-cloud texture (its default texture unwrapping takes more than 10 minutes on a CPU) and normals from
open3d (vanilla NeRF has no normal output); its mesh is in the model's frame, which the run's
dataparser transform maps back to the dataset's, as nerf-mesh does.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LEVELS = (1.0, 3.0, 10.0, 30.0, 100.0)
METRICS = ("chamfer_l1", "chamfer_l2", "normal_consistency", "fscore")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def mesh_levels(config: Path, work: Path, levels: list[float | None], resolution: int, smooths: list[float] = (0.0,),
                opacities: list[float] | None = None, fills: list[bool] = (True,)):
    """nerf-mesh at each interior fill, smoothing and level (None: auto, at each of ``opacities``, by default
    nerf-mesh's own) on one loaded pipeline; returns (run info, rows, the dataparser's frame)."""
    from sine_fields.methods.nerf_density import SceneFrame
    from sine_fields.methods.nerf_mesh import NerfMeshOptions, load_pipeline, mesh_pipeline

    recorded, pipeline, checkpoint, dataset = load_pipeline(config)
    frame = SceneFrame.of(pipeline.datamanager.train_dataparser_outputs)
    run = {"config": str(config), "method": recorded.method_name, "checkpoint": checkpoint.name,
           "dataset": str(dataset), "model_parameters": int(sum(p.numel() for p in pipeline.model.parameters())),
           "scene_box": pipeline.datamanager.train_dataparser_outputs.scene_box.aabb.tolist()}
    rows = []
    opacities = list(opacities) if opacities else [None]  # None: nerf-mesh's default for the smoothing
    settings = [(f, s, l, o) for f in fills for s in smooths for l in levels for o in (opacities if l is None else [None])]
    for fill, smooth, level, opacity in settings:
        options = NerfMeshOptions(resolution=resolution, level=level, smooth=smooth, fill_interior=fill,
                                  auto_opacity=opacity)
        name = ((f"auto-{options.opacity:g}" if level is None else f"level-{level:g}")
                + (f"-smooth-{smooth:g}" if smooth else "") + ("" if fill else "-no-fill"))
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        load = _load()
        started = time.perf_counter()
        info = mesh_pipeline(pipeline, folder, options, dataset)
        rows.append({
            "mesh": "nerf-mesh", "smooth": smooth, "fill_interior": fill, "interior_fill": info["interior_fill"],
            "level_method": info["level_method"], "level": info["level"],
            "auto_level": info["auto_level"], "resolution": resolution, "method": info["method"],
            "faces": info["faces"], "field_queries": info["field_queries"],
            "seconds": round(time.perf_counter() - started, 2), "load_average": load,
            **{k: info["metrics"][k] for k in METRICS},
        })
        print(f"{name}: level {info['level']:.4g}, chamfer_l1 {info['metrics']['chamfer_l1']:.4g}", flush=True)
    return run, rows, frame


def poisson_command(config: Path, folder: Path, points: int, crop: np.ndarray | None = None) -> list[str]:
    """The `ns-export poisson` command line: point-cloud texture, open3d normals, and with ``crop`` (a
    model-frame box ``[[min], [max]]``) nerfstudio's oriented-box crop of the point cloud set to that box
    (``OrientedBox.within`` keeps ``|p - center| <= scale / 2``; ns-export's ``--bounding-box-*`` flags are
    not read by its Poisson exporter)."""
    command = [str(Path(sys.executable).parent / "ns-export"), "poisson", "--load-config", str(config),
               "--output-dir", str(folder), "--texture-method", "point_cloud", "--normal-method", "open3d",
               "--num-points", str(points)]
    if crop is not None:
        low, high = np.asarray(crop, dtype=np.float64)
        command += ["--obb-center", *(f"{v:g}" for v in (low + high) / 2), "--obb-rotation", "0", "0", "0",
                    "--obb-scale", *(f"{v:g}" for v in high - low)]
    return command


def poisson(config: Path, dataset: Path, frame, work: Path, points: int, crop: np.ndarray | None = None) -> dict:
    """`ns-export poisson` (``poisson_command``) on the run, scored like nerf-mesh; ``frame`` (a
    ``SceneFrame``) maps its model-frame mesh to the dataset frame. ``crop``: the model-frame box its point
    cloud is cropped to, or None for the exporter's default (no crop)."""
    from sine_fields.methods.nerf_mesh import score_mesh

    import trimesh

    folder = work / ("poisson" if crop is None else "poisson-scene-box")
    shutil.rmtree(folder, ignore_errors=True)
    command = poisson_command(config, folder, points, crop)
    load = _load()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ns-export poisson failed ({done.returncode}):\n{done.stderr[-3000:]}")
    mesh = trimesh.load(folder / "poisson_mesh.ply", force="mesh", process=False)  # the exporter's file name
    vertices = frame.to_dataset(mesh.vertices) if len(mesh.vertices) else np.zeros((0, 3))
    metrics = score_mesh(vertices, np.asarray(mesh.faces), dataset / "mesh.ply")
    return {"mesh": "ns-export poisson", "command": " ".join(["ns-export"] + command[1:]), "num_points": points,
            "crop": None if crop is None else "scene box",
            "faces": int(len(mesh.faces)), "seconds": round(seconds, 2), "load_average": load,
            **{k: metrics[k] for k in METRICS}}


def markdown(data: dict) -> str:
    """The table in docs/radiance-fields.md: one row per mesh, best Chamfer-L1 first among the levels."""
    header = "| mesh | level (density) | Chamfer-L1 | Chamfer-L2 | normal consistency | F-score (1 %) | faces |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        if row["mesh"] == "nerf-mesh":
            name = (f"nerf-mesh, {row['resolution']}^3" + (f", --smooth {row['smooth']:g}" if row["smooth"] else "")
                    + ("" if row["fill_interior"] else ", --no-fill-interior"))
            level = (f"auto (opacity {row['auto_level']['opacity']:g}) = {row['level']:.3g}"
                     if row["level_method"] == "auto" else f"{row['level']:g}")
        else:
            crop = ", cropped to the scene box" if row.get("crop") else ""  # files before the crop had none
            name, level = f"ns-export poisson ({row['num_points']:,} points{crop})", "n/a"
        lines.append(f"| {name} | {level} | {row['chamfer_l1']:.4f} | {row['chamfer_l2']:.6f} | "
                     f"{row['normal_consistency']:.3f} | {row['fscore']:.3f} | {row['faces']:,} |")
    run = data["run"]
    lines.append("")
    lines.append(f"Run: `{run['method']}` ({run['model_parameters']:,} parameters), checkpoint `{run['checkpoint']}`; "
                 f"metrics in the normalised frame (ground truth's longest side 1).")
    return "\n".join(lines)


def _seed_of(data: dict) -> str:
    """The seed in the run's name (benchmarks/nerf_lite.py names runs ``{linear}-seed{seed}``), or the config path."""
    import re

    found = re.search(r"-seed(\d+)", data["run"]["config"])
    return f"seed {found.group(1)}" if found else data["run"]["config"]


def headline_markdown(runs: list[dict]) -> str:
    """The README's table: per run, Chamfer-L1 and F-score at nerf-mesh's defaults (auto level, interior fill)
    without and with smoothing; the auto level's opacity is the default for each (0.1 unsmoothed, 0.2 smoothed)."""
    from sine_fields.methods.nerf_density import default_auto_opacity

    lines = ["| `sine-nerf-lite` run | mesh resolution | `nerf-mesh` defaults: Chamfer-L1, F-score | with `--smooth 0.0156` |",
             "|---|---|---|---|"]
    for data in runs:
        def pick(smooth: float) -> str:
            for row in data["rows"]:
                if (row["mesh"] == "nerf-mesh" and row["fill_interior"] and row["smooth"] == smooth
                        and row["level_method"] == "auto" and row["auto_level"]["opacity"] == default_auto_opacity(smooth)):
                    return f"{row['chamfer_l1']:.4f}, {row['fscore']:.3f}"
            raise ValueError(f"{data['command']}: no default auto row with smooth {smooth:g}")

        resolution = data["rows"][0]["resolution"]
        lines.append(f"| {_seed_of(data)} | {resolution}^3 | {pick(0.0)} | {pick(0.0156)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from experiments.common import OneLineParser

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="config.yml of an ns-train run on a dataset with mesh.ply")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/nerf_mesh_duck.json")
    parser.add_argument("--work", type=Path, default=None, help="folder for the meshes (default: beside --output)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--levels", type=float, nargs="*", default=list(DEFAULT_LEVELS), help="fixed densities")
    parser.add_argument("--smooth", type=float, nargs="*", default=[0.0],
                        help="nerf-mesh --smooth values to run every level with (0: none)")
    parser.add_argument("--auto-opacities", type=float, nargs="*", default=None,
                        help="rendered opacities whose crossing gives an auto level, one auto row each "
                             "(default: nerf-mesh's default for each smoothing)")
    parser.add_argument("--fill-interior", choices=("on", "off"), nargs="+", default=["on"],
                        help="run every level with nerf-mesh's interior fill on, off, or both (on off)")
    parser.add_argument("--poisson-points", type=int, default=200_000, help="0: skip ns-export poisson")
    parser.add_argument("--poisson-crop", choices=("none", "box"), nargs="+", default=["none"],
                        help="run ns-export poisson as it comes (none), with its point cloud cropped to the scene "
                             "box (box), or both (none box)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    # checked before the minutes of meshing, each as one line and exit code 2
    if args.output.exists() and not args.overwrite:
        print(f"error: --output {args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if not args.config.is_file():
        print(f"error: config {args.config}: no such file (the config.yml of an ns-train run)", file=sys.stderr)
        return 2
    work = args.work or args.output.parent / "runs" / args.output.stem
    started = time.perf_counter()
    load = _load()
    run, rows, frame = mesh_levels(args.config.resolve(), work, [None, *args.levels], args.resolution, args.smooth,
                                   args.auto_opacities, [choice == "on" for choice in args.fill_interior])
    if args.poisson_points > 0:
        for crop in args.poisson_crop:
            box = np.asarray(run["scene_box"]) if crop == "box" else None
            rows.append(poisson(args.config.resolve(), Path(run["dataset"]), frame, work, args.poisson_points, box))
    from sine_fields.io import atomic_write_json

    data = {
        "command": "benchmarks/nerf_mesh.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "run": run, "rows": rows,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_average_start": load,
                    "load_average_end": _load(), "seconds": round(time.perf_counter() - started, 1)},
    }
    atomic_write_json(args.output, data)
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
