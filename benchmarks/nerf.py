"""Dense vs plain low-rank vs sine low-rank NeRF fields, each trained until its held-out PSNR stops rising.

    # 1. here, on the CPU: render the scenes and pack them into one .npz (trimesh is needed only here)
    .venv/bin/python benchmarks/nerf.py prepare --scene duck --scene SECOND --output benchmarks/runs/nerf/scenes.npz
    # 2. on a GPU (needs only torch, numpy and sine_fields' layers and encodings):
    python benchmarks/nerf.py run --scenes benchmarks/runs/nerf/scenes.npz --output benchmarks/results/nerf.json
    # a tiny but complete run on the CPU (CI): renders a small Duck first when --scenes is not given
    .venv/bin/python benchmarks/nerf.py run --quick --output /tmp/nerf-quick.json

The field is vanilla NeRF's as nerfstudio builds it (and as our ``sine-nerf`` method factorises it): an
8 x 256 ReLU base MLP with the encoded position joined again at layer 4, a density head, a 2 x 128 head
MLP that also reads the encoded view direction, and an RGB head. Every layer of the two MLPs becomes
``LowRankLinear`` or ``SineLowRankLinear`` through ``sine_fields.convert`` (the heads stay dense): at
k = 5 that keeps 4.8 % of the dense field, the paper's NeRF budget (4.7 %, LLFF Flower, 19.81 dB
plain low-rank vs 23.27 dB sine). One field per run (no coarse/fine pair), stratified samples inside
the scene box, softplus(raw - 1) density, white background, Adam with an exponential learning-rate decay.

Every run stops when its held-out PSNR gained less than 0.3 dB over the last quarter of its iterations
(checked from ``min_iterations`` on; ``--rule smoothed`` reads that gain off a quadratic through the last
half's points, with a margin of two standard errors, so that a dip does not stop a noisy run), or at the
iteration cap, which is then recorded. The cap is planned from a timing taken at the start of the same
command, so that all runs fit in ``--budget-seconds``. The omega sweep runs first on one seed; the chosen
omega then runs on every seed.
Runs go to several processes sharing one GPU; the JSON is rewritten (atomically) as results arrive.

``--resume`` continues a results JSON over several calls (a device lent for minutes at a time): the runs
it holds that ended by the gain rule, at the cap or diverged are kept, the others (cut by the deadline,
failed, never started) are trained from the start, with the cap and settings the file records; each call
is recorded under ``calls``. The same command, repeated, completes the grid.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import queue
import shutil
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from experiments.common import CONVERGED_GAIN_DB, smoothed_last_quarter_gain, smoothed_verdict
from sine_fields.convert import convert, count_parameters
from sine_fields.fields.encodings import FourierFeatures
from sine_fields.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
# The paper's NeRF row (Ji et al., ICLR 2025, Table 4: LLFF Flower, vanilla NeRF, k = 5).
PAPER = {"scene": "LLFF Flower", "rank": 5, "lowrank_psnr": 19.81, "sine_psnr": 23.27, "budget_percent": 4.7}
KINDS = ("dense", "lowrank", "sine")


class BenchmarkError(Exception):
    """Bad input to the benchmark (a missing file, an option out of range): printed on one line, exit code 2."""


# --- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The field and renderer every run shares; only the layer kind, rank, omega and seed differ."""

    depth: int = 8
    """Layers of the base MLP (vanilla NeRF: 8)."""
    width: int = 256
    """Width of the base MLP (vanilla NeRF: 256)."""
    skip: int = 4
    """Base layer that reads the encoded position again, concatenated to its input (vanilla NeRF: 4)."""
    head_depth: int = 2
    """Layers of the head MLP that reads the view direction (nerfstudio's NeRFField: 2)."""
    head_width: int = 128
    """Width of the head MLP (nerfstudio's NeRFField: 128)."""
    position_frequencies: int = 10
    """Octaves of the position encoding (NeRF: 10)."""
    direction_frequencies: int = 4
    """Octaves of the direction encoding (NeRF: 4)."""
    rays: int = 1024
    """Rays per iteration (vanilla NeRF: 1024)."""
    samples: int = 48
    """Stratified samples per ray inside the scene box (no importance pass)."""
    box: float = 1.0
    """Half side of the scene box (the scenes are rendered inside [-1, 1]^3)."""
    lr: float = 5e-4
    """Adam's learning rate at the start (vanilla NeRF: 5e-4) ..."""
    lr_final: float = 5e-5
    """... decayed exponentially to this at the iteration cap (vanilla NeRF decays by 10x)."""
    eval_stride: int = 4
    """The PSNR curve reads every eval_stride-th pixel of each held-out view; the final PSNR reads all."""
    chunk: int = 8192
    """Rays rendered at a time when evaluating."""


# A field small enough for a CI machine; a larger learning rate so that 60 iterations learn something.
QUICK_RECIPE = Recipe(depth=4, width=64, skip=2, head_depth=2, head_width=32, rays=256, samples=16, lr=5e-3, lr_final=5e-4, chunk=2048)


@dataclass(frozen=True)
class Plan:
    """Which runs, and when each stops."""

    ranks: tuple[int, ...] = (1, 2, 5)
    seeds: tuple[int, ...] = (0, 1, 2)
    omegas: tuple[float, ...] = (30.0, 100.0, 300.0, 1000.0)
    sweep_ranks: tuple[int, ...] = (1, 5)
    """Ranks swept over omegas (seed 0, first scene); another rank takes the omega best on average over these."""
    gain_db: float = CONVERGED_GAIN_DB
    """A run has converged when its held-out PSNR gained less than this over the last quarter of its iterations."""
    rule: str = "last-quarter"
    """How that gain is read: ``last-quarter``, the last point minus the one at three quarters; ``smoothed``, off
    a quadratic through the last half's points, under ``gain_db`` by two standard errors
    (``smoothed_last_quarter_gain``), which one dip between two evaluations moves far less."""
    cap: int = 0
    """Iterations at most (0: planned from the timing at the start)."""
    eval_every: int = 0
    """Iterations between two points of the PSNR curve (0: cap / evals_per_cap)."""
    evals_per_cap: int = 24
    min_fraction: float = 0.5
    """The convergence test starts at this fraction of the cap (early plateaus are not convergence)."""

    @property
    def min_iterations(self) -> int:
        return max(1, int(self.cap * self.min_fraction))


QUICK_PLAN = Plan(ranks=(1,), seeds=(0,), omegas=(30.0, 300.0), sweep_ranks=(1,), cap=60, eval_every=10, min_fraction=0.5)


@dataclass(frozen=True)
class Job:
    """One training run."""

    scene: str
    kind: str
    rank: int
    omega: float
    seed: int
    phase: str  # "sweep" (omega sweep, seed 0) or "main"

    @property
    def key(self) -> str:
        return f"{self.scene}/{variant_name(self.kind, self.rank, self.omega)}/seed{self.seed}"


def variant_name(kind: str, rank: int, omega: float) -> str:
    if kind == "dense":
        return "dense"
    if kind == "lowrank":
        return f"lowrank-k{rank}"
    return f"sine-k{rank}-w{omega:g}"


# --- scenes ---------------------------------------------------------------------------------------


def pack_scene_folder(folder: Path) -> dict[str, np.ndarray]:
    """Arrays of one ``sine-fields data scene`` folder: RGBA images, poses, intrinsics and the split."""
    import json

    from PIL import Image

    transforms_path = folder / "transforms.json"
    if not transforms_path.is_file():
        raise BenchmarkError(f"{folder}: no transforms.json (expected a folder written by `sine-fields data scene`)")
    meta = json.loads(transforms_path.read_text())
    names = [frame["file_path"] for frame in meta["frames"]]
    images = np.stack([np.asarray(Image.open(folder / name).convert("RGBA")) for name in names])
    poses = np.stack([np.asarray(frame["transform_matrix"], dtype=np.float32) for frame in meta["frames"]])
    index = {name: i for i, name in enumerate(names)}
    test = set(meta["test_filenames"])
    return {
        "images": images.astype(np.uint8),
        "poses": poses,
        "intrinsics": np.array([meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]], dtype=np.float32),
        "train": np.array([index[n] for n in meta["train_filenames"] if n not in test], dtype=np.int64),
        "test": np.array([index[n] for n in meta["test_filenames"]], dtype=np.int64),
    }


def save_scenes(path: Path, scenes: dict[str, dict[str, np.ndarray]]) -> None:
    """One ``.npz`` holding every scene's arrays as ``NAME.KEY`` (written to a temporary file, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}.{key}": value for name, data in scenes.items() for key, value in data.items()}
    arrays["names"] = np.array(list(scenes))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_scenes(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.is_file():
        raise BenchmarkError(f"--scenes {path}: no such file (write it with `benchmarks/nerf.py prepare`)")
    with np.load(path) as data:
        if "names" not in data:
            raise BenchmarkError(f"--scenes {path}: not a scenes file written by `benchmarks/nerf.py prepare`")
        names = [str(n) for n in data["names"]]
        return {n: {k: data[f"{n}.{k}"] for k in ("images", "poses", "intrinsics", "train", "test")} for n in names}


@dataclass
class Rays:
    """Rays of some views with their target colours (white background composited)."""

    origins: Tensor  # (n, 3)
    directions: Tensor  # (n, 3), unit length
    near: Tensor  # (n,) entry into the scene box (0 where the ray misses it)
    far: Tensor  # (n,) exit from the scene box (= near where the ray misses it)
    rgb: Tensor  # (n, 3) in [0, 1]

    def __len__(self) -> int:
        return self.origins.shape[0]

    def take(self, index: Tensor | slice) -> "Rays":
        return Rays(self.origins[index], self.directions[index], self.near[index], self.far[index], self.rgb[index])


def box_interval(origins: Tensor, directions: Tensor, half: float) -> tuple[Tensor, Tensor]:
    """Where each ray enters and leaves the cube ``[-half, half]^3`` (slab method); misses give near = far."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (-half - origins) / safe
    t1 = (half - origins) / safe
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    far = torch.maximum(far, near)
    return near, far


def view_rays(scene: dict[str, np.ndarray], views: np.ndarray, box: float, device: torch.device) -> Rays:
    """The rays through every pixel centre of ``views`` (OpenGL poses: the camera looks along -z, y up)."""
    images = torch.as_tensor(scene["images"][views], dtype=torch.float32, device=device) / 255.0
    poses = torch.as_tensor(scene["poses"][views], dtype=torch.float32, device=device)
    fx, fy, cx, cy = (float(v) for v in scene["intrinsics"])
    count, height, width = images.shape[:3]
    rows, cols = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    camera = torch.stack([(cols - cx) / fx, -(rows - cy) / fy, -torch.ones_like(cols)], dim=-1)  # (h, w, 3)
    directions = torch.einsum("vij,hwj->vhwi", poses[:, :3, :3], camera)
    directions = F.normalize(directions, dim=-1).reshape(-1, 3)
    origins = poses[:, None, None, :3, 3].expand(count, height, width, 3).reshape(-1, 3)
    alpha = images[..., 3:4]
    rgb = (images[..., :3] * alpha + (1.0 - alpha)).reshape(-1, 3)  # straight alpha over white
    near, far = box_interval(origins, directions, box)
    return Rays(origins.contiguous(), directions, near, far, rgb)


# --- field and renderer ---------------------------------------------------------------------------


class MLP(nn.Module):
    """ReLU layers ``self.layers``; layer ``skip`` reads the network input again, concatenated (NeRF)."""

    def __init__(self, in_dim: int, width: int, depth: int, skip: int | None) -> None:
        super().__init__()
        self.skip = skip
        widths_in = [in_dim] + [width + (in_dim if i == skip else 0) for i in range(1, depth)]
        self.layers = nn.ModuleList(nn.Linear(fan_in, width) for fan_in in widths_in)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, x], dim=-1)
            h = F.relu(layer(h))
        return h


class NeRFField(nn.Module):
    """Vanilla NeRF's field: position -> (density, feature); feature + direction -> colour."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.position_encoding = FourierFeatures(3, recipe.position_frequencies)
        self.direction_encoding = FourierFeatures(3, recipe.direction_frequencies)
        position_dim = self.position_encoding.get_out_dim()
        direction_dim = self.direction_encoding.get_out_dim()
        self.mlp_base = MLP(position_dim, recipe.width, recipe.depth, recipe.skip if 0 < recipe.skip < recipe.depth else None)
        self.density_head = nn.Linear(recipe.width, 1)
        self.mlp_head = MLP(recipe.width + direction_dim, recipe.head_width, recipe.head_depth, None)
        self.rgb_head = nn.Linear(recipe.head_width, 3)

    def forward(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """``(n, 3), (n, 3) -> density (n,), rgb (n, 3)``."""
        base = self.mlp_base(self.position_encoding(points))
        # softplus(raw - 1) (mip-NeRF): a ReLU density can die everywhere at the start and never recover.
        density = F.softplus(self.density_head(base).squeeze(-1) - 1.0)
        head = self.mlp_head(torch.cat([base, self.direction_encoding(directions)], dim=-1))
        return density, torch.sigmoid(self.rgb_head(head))


MLP_LAYERS = r"mlp_(base|head)\.layers\.\d+"


def build_field(recipe: Recipe, kind: str, rank: int, omega: float) -> NeRFField:
    """The field with every MLP layer dense, plain low-rank or sine low-rank (the heads stay dense)."""
    model = NeRFField(recipe)
    if kind != "dense":
        summary = convert(model, kind, rank, omega=omega, target_modules=MLP_LAYERS)  # type: ignore[arg-type]
        if summary.skipped:
            raise BenchmarkError(f"rank {rank} does not fit layers {sorted(summary.skipped)}")
    return model


def render(field: NeRFField, rays: Rays, samples: int, generator: torch.Generator | None) -> Tensor:
    """Volume-render ``rays`` with ``samples`` points per ray over white; stratified when a generator is given.

    The box interval [near, far] is cut into equal bins; one point per bin (jittered in training, at the
    bin centre otherwise), each standing for its whole bin: alpha = 1 - exp(-density * bin length).
    """
    n = len(rays)
    device = rays.origins.device
    offsets = torch.rand(n, samples, device=device, generator=generator) if generator is not None else torch.full((n, samples), 0.5, device=device)
    length = rays.far - rays.near  # (n,)
    t = rays.near[:, None] + length[:, None] * (torch.arange(samples, device=device) + offsets) / samples
    points = rays.origins[:, None, :] + t[..., None] * rays.directions[:, None, :]
    directions = rays.directions[:, None, :].expand(n, samples, 3)
    density, rgb = field(points.reshape(-1, 3), directions.reshape(-1, 3))
    return composite(density.view(n, samples), rgb.view(n, samples, 3), (length / samples)[:, None].expand(n, samples))


def composite(density: Tensor, rgb: Tensor, delta: Tensor) -> Tensor:
    """Colour of each ray from per-sample ``density (n, s)``, ``rgb (n, s, 3)``, ``delta (n, s)``, over white."""
    alpha = 1.0 - torch.exp(-density * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
    weights = alpha * transmittance
    return (weights[..., None] * rgb).sum(dim=1) + (1.0 - weights.sum(dim=1, keepdim=True))


def psnr_of(mse: Tensor) -> Tensor:
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def held_out_psnr(field: NeRFField, views: list[Rays], recipe: Recipe) -> float:
    """Mean over held-out views of each view's PSNR (nerfstudio's way), samples at bin centres."""
    values = []
    for rays in views:
        colour = torch.cat([render(field, rays.take(slice(i, i + recipe.chunk)), recipe.samples, None) for i in range(0, len(rays), recipe.chunk)])
        values.append(psnr_of(F.mse_loss(colour, rays.rgb)))
    return float(torch.stack(values).mean())


# --- one run ----------------------------------------------------------------------------------------


RULES = ("last-quarter", "smoothed")


def converged(curve: list[tuple[int, float]], gain_db: float, min_iterations: int, rule: str = "last-quarter") -> bool:
    """True when the last point is at or past ``min_iterations`` and its PSNR gained less than ``gain_db``
    over the last quarter: by ``rule`` ``last-quarter``, over the PSNR at the last recorded iteration not later
    than 3/4 of its own; by ``smoothed``, on a quadratic through the last half's points, with a margin of two
    standard errors (``Plan.rule``)."""
    if not curve or curve[-1][0] < min_iterations:
        return False
    if rule == "smoothed":
        return smoothed_verdict(smoothed_last_quarter_gain(curve, curve[-1][0]), gain_db) == "converged"
    iteration, psnr = curve[-1]
    earlier = [p for it, p in curve if it <= 0.75 * iteration]
    if not earlier:
        return False
    return psnr - earlier[-1] < gain_db


def learning_rate(recipe: Recipe, iteration: int, cap: int) -> float:
    return recipe.lr * (recipe.lr_final / recipe.lr) ** min(1.0, iteration / max(cap, 1))


def train_run(
    job: Job,
    scene: dict[str, np.ndarray],
    recipe: Recipe,
    plan: Plan,
    device: torch.device,
    deadline: float,
    progress=None,
) -> dict:
    """Train one field until it converges, reaches the cap or the deadline; return its record."""
    torch.manual_seed(job.seed)
    field = build_field(recipe, job.kind, job.rank, job.omega).to(device)
    train = view_rays(scene, scene["train"], recipe.box, device)
    tests = [view_rays(scene, scene["test"][i : i + 1], recipe.box, device) for i in range(len(scene["test"]))]
    curve_views = [rays.take(slice(None, None, recipe.eval_stride)) for rays in tests]
    generator = torch.Generator(device=device).manual_seed(1000 + job.seed)
    optimizer = torch.optim.Adam(field.parameters(), lr=recipe.lr)
    curve: list[tuple[int, float]] = []
    losses: list[float] = []
    status = "cap"
    started = time.perf_counter()
    load_start = os.getloadavg()
    iteration = 0
    while iteration < plan.cap:
        if time.time() > deadline:
            status = "deadline"
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, iteration, plan.cap)
        batch = train.take(torch.randint(len(train), (recipe.rays,), device=device, generator=generator))
        loss = F.mse_loss(render(field, batch, recipe.samples, generator), batch.rgb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        if iteration % plan.eval_every == 0 or iteration == plan.cap:
            value = float(loss.detach())
            losses.append(value)
            if not math.isfinite(value):
                status = "diverged"
                break
            curve.append((iteration, held_out_psnr(field, curve_views, recipe)))
            if progress is not None:
                progress({"iterations": iteration, "curve": [list(p) for p in curve]})
            if converged(curve, plan.gain_db, plan.min_iterations, plan.rule):
                status = "converged"
                break
    train_seconds = time.perf_counter() - started
    final = held_out_psnr(field, tests, recipe) if status != "diverged" else float("nan")
    return {
        "key": job.key,
        **asdict(job),
        "variant": variant_name(job.kind, job.rank, job.omega),
        "status": status,
        "iterations": iteration,
        "parameters": count_parameters(field),
        "psnr": final,
        "curve": [list(p) for p in curve],
        "train_loss": losses,
        "train_seconds": train_seconds,
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
    }


# --- planning ----------------------------------------------------------------------------------------


def independent_jobs(scenes: list[str], plan: Plan) -> list[Job]:
    """The omega sweep (first scene, seed 0) first, then every dense and plain low-rank run."""
    jobs = [Job(scenes[0], "sine", k, w, plan.seeds[0], "sweep") for k in plan.sweep_ranks for w in plan.omegas]
    for scene in scenes:
        jobs += [Job(scene, "dense", 0, 0.0, s, "main") for s in plan.seeds]
        jobs += [Job(scene, "lowrank", k, 0.0, s, "main") for k in plan.ranks for s in plan.seeds]
    return jobs


def adopt_sweep_runs(report: "Report", sweep_keys: set[str], omegas: dict) -> None:
    """Mark the sweep runs at the chosen omega of their rank: they stand for seed 0 in the main table."""
    for key in sweep_keys:
        run = report.data["runs"][key]
        run["also_main"] = run["omega"] == omegas["by_rank"][str(run["rank"])]


def choose_omegas(sweep: list[dict], plan: Plan) -> dict:
    """The omega with the best held-out PSNR for each swept rank; other ranks take the best mean over swept ranks."""
    table = defaultdict(dict)
    for run in sweep:
        table[run["rank"]][run["omega"]] = run["psnr"] if math.isfinite(run["psnr"]) else -math.inf
    chosen = {k: max(plan.omegas, key=lambda w: table[k].get(w, -math.inf)) for k in plan.sweep_ranks}
    mean = {w: float(np.mean([table[k].get(w, -math.inf) for k in plan.sweep_ranks])) for w in plan.omegas}
    best_mean = max(plan.omegas, key=lambda w: mean[w])
    for k in plan.ranks:
        chosen.setdefault(k, best_mean)
    return {
        "by_rank": {str(k): chosen[k] for k in plan.ranks},
        "rule": "swept ranks: best held-out PSNR of the seed-0 sweep on the first scene; other ranks: best mean over swept ranks",
        "sweep_psnr": {str(k): {f"{w:g}": table[k].get(w) for w in plan.omegas} for k in plan.sweep_ranks},
    }


def dependent_jobs(scenes: list[str], plan: Plan, omegas: dict) -> list[Job]:
    """Sine runs at the chosen omega on every scene and seed, except those the sweep already ran."""
    jobs = []
    for scene in scenes:
        for k in plan.ranks:
            w = omegas["by_rank"][str(k)]
            for s in plan.seeds:
                if scene == scenes[0] and s == plan.seeds[0] and k in plan.sweep_ranks:
                    continue  # the very same run (scene, rank, omega, seed) is in the sweep
                jobs.append(Job(scene, "sine", k, w, s, "main"))
    return jobs


def time_iterations(scene: dict, recipe: Recipe, kind: str, rank: int, device: torch.device, steps: int = 12,
                    evaluate: bool = True, barrier=None) -> dict:
    """Seconds per training iteration and per PSNR-curve evaluation of one field.

    With a ``barrier`` (the concurrency probe), the timed steps start when every process has warmed up,
    so that start-up (building the field, the device's first kernels) is not counted as training time.
    """
    field = build_field(recipe, kind, rank, 100.0).to(device)
    train = view_rays(scene, scene["train"], recipe.box, device)
    tests = [view_rays(scene, scene["test"][i : i + 1], recipe.box, device).take(slice(None, None, recipe.eval_stride)) for i in range(len(scene["test"]))]
    optimizer = torch.optim.Adam(field.parameters(), lr=recipe.lr)
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        batch = train.take(torch.randint(len(train), (recipe.rays,), device=device, generator=generator))
        loss = F.mse_loss(render(field, batch, recipe.samples, generator), batch.rgb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        step()
    sync()
    if barrier is not None:
        barrier.wait()
    window_start = time.time()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    per_iteration = (time.perf_counter() - started) / steps
    window = (window_start, time.time())
    started = time.perf_counter()
    if evaluate:
        held_out_psnr(field, tests, recipe)
        sync()
    return {"kind": kind, "rank": rank, "seconds_per_iteration": per_iteration, "seconds_per_curve_point": time.perf_counter() - started,
            "window": window, "load_average": list(os.getloadavg())}


def plan_cap(timings: dict[str, dict], jobs_per_kind: dict[str, int], budget: float, plan: Plan) -> Plan:
    """The largest equal cap for which every run, if none converged early, fits in ``budget`` seconds
    of runs one after another alone on the device (``timings``), with ``plan.evals_per_cap`` curve points
    each. Runs side by side go faster than that by the probe's measured speedup: the caller scales ``budget``."""
    per_cap_iteration = sum(jobs_per_kind[k] * timings[k]["seconds_per_iteration"] for k in jobs_per_kind)
    evals = sum(jobs_per_kind[k] * plan.evals_per_cap * timings[k]["seconds_per_curve_point"] for k in jobs_per_kind)
    cap = int((budget - evals) / per_cap_iteration)
    if cap < plan.evals_per_cap:
        raise BenchmarkError(f"--budget-seconds {budget:g} leaves {cap} iterations per run; give more time or fewer runs")
    eval_every = max(1, cap // plan.evals_per_cap)
    cap = eval_every * plan.evals_per_cap
    return replace(plan, cap=cap, eval_every=eval_every)


# --- running many jobs ---------------------------------------------------------------------------


def _worker(scenes_path: str, recipe: Recipe, device: str, deadline: float, tasks, results, barrier) -> None:
    """A process that trains the ``(job, plan)`` it takes from ``tasks`` and reports on ``results``."""
    torch.set_num_threads(1)
    scenes = load_scenes(Path(scenes_path))
    torch.zeros(1, device=device)  # start the device context before saying ready (it takes seconds)
    results.put(("ready", str(os.getpid()), None))
    while True:
        item = tasks.get()
        if item is None:
            return
        job, plan = item
        try:
            if job.phase == "probe":
                timing = time_iterations(scenes[job.scene], recipe, job.kind, job.rank, torch.device(device), steps=PROBE_STEPS, evaluate=False, barrier=barrier)
                results.put(("probe", job.key, timing))
                continue
            record = train_run(job, scenes[job.scene], recipe, plan, torch.device(device), deadline,
                               progress=lambda update, key=job.key: results.put(("progress", key, update)))
            results.put(("done", job.key, record))
        except Exception:  # noqa: BLE001 - a failed run is recorded with its traceback; the others go on
            results.put(("failed", job.key, traceback.format_exc()))


PROBE_STEPS = 20


class WorkerPool:
    """Processes that share the device, each training one run at a time."""

    def __init__(self, scenes_path: Path, recipe: Recipe, device: str, workers: int, deadline: float) -> None:
        context = mp.get_context("spawn")
        self.tasks, self.results = context.Queue(), context.Queue()
        barrier = context.Barrier(workers)
        self.processes = [context.Process(target=_worker, args=(str(scenes_path), recipe, device, deadline, self.tasks, self.results, barrier), daemon=True)
                          for _ in range(workers)]
        for process in self.processes:
            process.start()
        ready = 0
        while ready < workers:
            try:
                message, _, payload = self.results.get(timeout=5)
            except queue.Empty:
                if not all(p.is_alive() for p in self.processes):
                    raise RuntimeError("a worker process died while starting")
                continue
            ready += message == "ready"

    def probe(self, scene: str, mix: dict[str, int], rank: int, timings: dict[str, dict]) -> dict:
        """Every process trains ``PROBE_STEPS`` iterations of a field at the same time (after 3 warm-up
        iterations each), kinds in the proportions of ``mix``: how much faster than one after another
        (``timings``, each alone) they go. Start-up is left out: it once made the probe read 0.3 where
        the runs then went about 1.0 (a cap planned from it was three times too small)."""
        workers = len(self.processes)
        total = sum(mix.values())
        kinds = [k for k in mix for _ in range(round(workers * mix[k] / total))][:workers]
        kinds += [max(mix, key=mix.get)] * (workers - len(kinds))
        for i, kind in enumerate(kinds):
            self.tasks.put((Job(scene, kind, rank, 100.0, i, "probe"), None))
        windows = []
        while len(windows) < workers:
            message, key, payload = self.results.get(timeout=300)
            if message == "failed":
                raise RuntimeError(f"probe {key} failed:\n{payload}")
            if message == "probe":
                windows.append(payload["window"])
        wall = max(end for _, end in windows) - min(start for start, _ in windows)
        alone = sum(PROBE_STEPS * timings[k]["seconds_per_iteration"] for k in kinds)
        return {"kinds": kinds, "wall_seconds": wall, "alone_seconds": alone, "speedup": alone / wall, "load_average": list(os.getloadavg())}

    def close(self) -> None:
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


class Report:
    """The benchmark's JSON, rewritten atomically whenever a run finishes (and now and then as runs progress)."""

    def __init__(self, path: Path, header: dict, runs: dict | None = None, omega_choice: dict | None = None) -> None:
        self.path = path
        self.data = {**header, "runs": dict(runs or {}), "omega_choice": omega_choice}
        self.last_write = 0.0

    def update(self, run_key: str, job: Job | None, /, **fields) -> None:
        run = self.data["runs"].setdefault(run_key, {"key": run_key, **(asdict(job) if job else {})})
        run.update(fields)

    def write(self, force: bool = True) -> None:
        if force or time.time() - self.last_write > 10.0:
            self.data["summary"] = summarise(list(self.data["runs"].values()))
            self.data["verdict"] = verdict(self.data["summary"])
            atomic_write_json(self.path, self.data)
            self.last_write = time.time()


def run_jobs(scenes_path: Path, scene_names: list[str], recipe: Recipe, plan: Plan, device: str, pool: WorkerPool | None,
             deadline: float, report: Report, log) -> int:
    """Run the sweep, the dense and low-rank runs, then the sine runs at the chosen omegas, leaving out the
    runs ``report`` already holds complete (``--resume``). Returns how many runs this call trained."""
    everything = independent_jobs(scene_names, plan)
    sweep_keys = {job.key for job in everything if job.phase == "sweep"}
    complete = {key for key, run in report.data["runs"].items() if run.get("status") in COMPLETE}
    first = [job for job in everything if job.key not in complete]
    if report.data["omega_choice"] is not None:  # chosen by an earlier call from a complete sweep
        first += [job for job in dependent_jobs(scene_names, plan, report.data["omega_choice"]) if job.key not in complete]
    for job in first:
        report.update(job.key, job, status="queued")

    def sine_jobs_once_swept() -> list[Job]:
        """When the sweep has just finished: choose the omegas and queue the sine runs at them."""
        runs = report.data["runs"]
        if report.data["omega_choice"] is not None or not sweep_keys or not all(runs[k].get("status") in FINISHED for k in sweep_keys):
            return []
        report.data["omega_choice"] = choose_omegas([runs[k] for k in sweep_keys], plan)
        adopt_sweep_runs(report, sweep_keys, report.data["omega_choice"])
        log(f"omega chosen: {report.data['omega_choice']['by_rank']}")
        more = [job for job in dependent_jobs(scene_names, plan, report.data["omega_choice"]) if job.key not in complete]
        for job in more:
            report.update(job.key, job, status="queued")
        return more

    first += sine_jobs_once_swept()  # a resumed file whose sweep is complete but whose choice was not written
    report.write()
    trained = 0
    if pool is None:  # in this process, one run after another (the CPU path and the tests)
        scenes = load_scenes(scenes_path)
        todo = list(first)
        while todo:
            job = todo.pop(0)
            record = train_run(job, scenes[job.scene], recipe, plan, torch.device(device), deadline)
            report.update(job.key, job, **record)
            trained += 1
            log(f"{job.key}: {record['status']} at {record['iterations']} iterations, {record['psnr']:.2f} dB")
            todo += sine_jobs_once_swept()
            report.write()
        return trained
    by_key = {job.key: job for job in first}
    for job in first:
        pool.tasks.put((job, plan))
    outstanding = set(by_key)
    while outstanding:
        try:
            message, key, payload = pool.results.get(timeout=5.0)
        except queue.Empty:
            if time.time() > deadline + 60 or not any(p.is_alive() for p in pool.processes):
                log(f"stopping: {len(outstanding)} runs unfinished (deadline or workers gone)")
                break
            continue
        if message == "progress":
            report.update(key, by_key[key], status="running", **payload)
            report.write(force=False)
            continue
        outstanding.discard(key)
        if message == "done":
            report.update(key, by_key[key], **payload)
            trained += 1
            log(f"{key}: {payload['status']} at {payload['iterations']} iterations, {payload['psnr']:.2f} dB")
        else:
            report.update(key, by_key[key], status="failed", error=payload)
            log(f"{key}: failed\n{payload}")
        for job in sine_jobs_once_swept():
            by_key[job.key] = job
            outstanding.add(job.key)
            pool.tasks.put((job, plan))
        report.write()
    return trained


FINISHED = ("converged", "cap", "deadline", "diverged", "failed")
"""A run is over (the omega choice waits for every sweep run to be over) ..."""
COMPLETE = ("converged", "cap", "diverged")
"""... and complete: ``--resume`` keeps it. A run the deadline cut short, or that failed, is trained again."""


# --- resuming ----------------------------------------------------------------------------------------

RESUMED_PLAN_FIELDS = {"ranks": "--ranks", "seeds": "--seeds", "omegas": "--omegas", "sweep_ranks": "--sweep-ranks",
                       "cap": "--cap", "eval_every": "--cap", "gain_db": None, "evals_per_cap": None, "min_fraction": None,
                       "rule": "--rule"}
"""The plan's fields a resumed call must share with the file, and the option that sets each (None: none does,
``eval_every`` follows ``--cap``)."""
PLAN_FIELDS_ADDED = {"rule": "last-quarter"}
"""Plan fields added after files were written, and what such a file's runs did."""


def read_results(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("runs"), dict) or not isinstance(data.get("plan"), dict):
            raise ValueError
    except (ValueError, AttributeError):
        raise BenchmarkError(f"--output {path}: not a results JSON of `benchmarks/nerf.py run` (expected 'runs' and 'plan'); "
                             "pass --overwrite to replace it") from None
    return data


def resumed_plan(previous: dict, path: Path, plan: Plan, cap_given: bool) -> Plan:
    """This command's plan, with the file's cap unless ``--cap`` was given, checked against the plan the
    file was run with: runs of other ranks, seeds, omegas or caps cannot be mixed into one table."""
    saved = previous["plan"]
    if not cap_given:
        plan = replace(plan, cap=int(saved.get("cap", 0)), eval_every=int(saved.get("eval_every", 0)))
    for name, option in RESUMED_PLAN_FIELDS.items():
        mine, theirs = getattr(plan, name), saved.get(name, PLAN_FIELDS_ADDED.get(name))
        if isinstance(mine, tuple):
            mine, theirs = list(mine), list(theirs or [])
        if mine != theirs:
            remedy = f"give the same {option}" if option else "it is not an option: use the file's benchmark version"
            raise BenchmarkError(f"--resume: {path} was run with {name} {theirs}, this command asks {mine} ({remedy}, or --overwrite to start afresh)")
    return plan


def check_resumable(previous: dict, path: Path, recipe: "Recipe", scenes_header: dict) -> None:
    """The field, renderer and scenes must be the file's: a run of another recipe is another experiment."""
    import json

    if json.loads(json.dumps(asdict(recipe))) != previous.get("recipe"):
        raise BenchmarkError(f"--resume: {path} was run with another recipe ({previous.get('recipe')}); "
                             "give the same --recipe / --samples, or --overwrite")
    if json.loads(json.dumps(scenes_header)) != previous.get("scenes"):
        raise BenchmarkError(f"--resume: {path} was run on other scenes ({sorted(previous.get('scenes') or {})}); "
                             "give the same --scenes file, or --overwrite")


def runs_to_keep(previous: dict) -> tuple[dict, dict | None]:
    """The runs a resumed call keeps (complete ones) and the omega choice it keeps. A choice made while a
    sweep run was cut short is made again once the sweep is complete, and the sine runs trained at it go."""
    runs = {key: run for key, run in previous["runs"].items() if run.get("status") in COMPLETE}
    choice = previous.get("omega_choice")
    sweep = [run for run in previous["runs"].values() if run.get("phase") == "sweep"]
    if choice is not None and not all(run.get("status") in COMPLETE for run in sweep):
        choice = None
        runs = {key: run for key, run in runs.items() if not (run.get("phase") == "main" and run.get("kind") == "sine")}
    if choice is None:
        for run in runs.values():
            run.pop("also_main", None)
    return runs, choice


# --- summary ---------------------------------------------------------------------------------------


def summarise(runs: list[dict]) -> list[dict]:
    """Mean, spread and exact parameter count of each (scene, variant) over its seeds; the sweep kept apart."""
    groups = defaultdict(list)
    for run in runs:
        if run.get("status") in ("converged", "cap", "deadline", "diverged") and "psnr" in run:
            groups[(run["scene"], run["variant"], run["phase"])].append(run)
            if run.get("also_main"):  # the sweep's seed-0 run at the chosen omega is that seed's main run
                groups[(run["scene"], run["variant"], "main")].append(run)
    dense = {scene: runs_[0]["parameters"] for (scene, variant, _), runs_ in groups.items() if variant == "dense"}
    rows = []
    for (scene, variant, phase), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][2] != "main", _order(item[1][0]))):
        values = np.array([m["psnr"] for m in members], dtype=np.float64)
        first = members[0]
        rows.append({
            "scene": scene,
            "variant": variant,
            "kind": first["kind"],
            "rank": first["rank"],
            "omega": first["omega"],
            "phase": phase,
            "seeds": sorted(m["seed"] for m in members),
            "parameters": first["parameters"],
            "percent_of_dense": 100.0 * first["parameters"] / dense[scene] if scene in dense else None,
            "psnr_mean": float(values.mean()),
            "psnr_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "psnr_min": float(values.min()),
            "psnr_max": float(values.max()),
            "converged": sum(m["status"] == "converged" for m in members),
            "iterations_mean": float(np.mean([m["iterations"] for m in members])),
        })
    return rows


def _order(run: dict) -> tuple:
    return (KINDS.index(run["kind"]), run["rank"], run["omega"])


def verdict(summary: list[dict]) -> list[dict]:
    """For each scene and rank: the sine - low-rank gap and the dense - low-rank gap, each against the seeds' spread.

    A gap counts as real when it exceeds twice the larger of the two standard deviations (and at least
    two seeds each); otherwise the setting cannot tell the two apart.
    """
    main = {(r["scene"], r["kind"], r["rank"]): r for r in summary if r["phase"] == "main"}
    out = []
    for (scene, kind, rank), low in sorted(main.items()):
        if kind != "lowrank":
            continue
        entry = {"scene": scene, "rank": rank, "lowrank_psnr": low["psnr_mean"]}
        for other_kind, other in (("sine", main.get((scene, "sine", rank))), ("dense", main.get((scene, "dense", 0)))):
            if other is None:
                continue
            gap = other["psnr_mean"] - low["psnr_mean"]
            noise = 2.0 * max(other["psnr_std"], low["psnr_std"])
            enough = min(len(other["seeds"]), len(low["seeds"])) >= 2
            entry[f"{other_kind}_psnr"] = other["psnr_mean"]
            entry[f"{other_kind}_minus_lowrank_db"] = gap
            entry[f"{other_kind}_gap_exceeds_noise"] = bool(enough and abs(gap) > noise)
            entry["noise_db"] = max(entry.get("noise_db", 0.0), noise)
        out.append(entry)
    return out


def markdown(data: dict) -> str:
    """The converged table: one row per scene and variant (mean and spread over seeds)."""
    rows = ["| scene | layers | k | omega | parameters | % of dense | held-out PSNR (dB), mean ± sd | min - max | seeds | stopped by the gain rule (else cap) | iterations (mean) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["summary"]:
        if r["phase"] != "main":
            continue
        omega = f"{r['omega']:g}" if r["kind"] == "sine" else "-"
        rows.append(
            f"| {r['scene']} | {r['kind']} | {r['rank'] or '-'} | {omega} | {r['parameters']:,} | "
            f"{r['percent_of_dense']:.1f} % | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | {r['psnr_min']:.2f} - {r['psnr_max']:.2f} | "
            f"{len(r['seeds'])} | {r['converged']}/{len(r['seeds'])} | {r['iterations_mean']:.0f} |"
        )
    return "\n".join(rows)


def markdown_sweep(data: dict) -> str:
    """The omega sweep (seed 0, first scene): held-out PSNR per rank and omega."""
    runs = [r for r in data["runs"].values() if r.get("phase") == "sweep" and "psnr" in r]
    omegas = sorted({r["omega"] for r in runs})
    ranks = sorted({r["rank"] for r in runs})
    header = "| k | " + " | ".join(f"omega {w:g}" for w in omegas) + " |"
    rows = [header, "|---|" + "---|" * len(omegas)]
    for k in ranks:
        cells = []
        for w in omegas:
            run = next((r for r in runs if r["rank"] == k and r["omega"] == w), None)
            cells.append("-" if run is None else f"{run['psnr']:.2f} ({run['status']}, {run['iterations']} it)")
        rows.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def markdown_verdict(data: dict) -> str:
    """Sine minus plain low-rank and dense minus plain low-rank, against twice the seeds' spread."""
    rows = ["| scene | k | dense - low-rank (dB) | sine - low-rank (dB) | 2 x sd (dB) | sine gap beyond noise | dense gap beyond noise |",
            "|---|---|---|---|---|---|---|"]
    for v in data["verdict"]:
        rows.append(
            f"| {v['scene']} | {v['rank']} | {v.get('dense_minus_lowrank_db', float('nan')):+.2f} | {v.get('sine_minus_lowrank_db', float('nan')):+.2f} | "
            f"{v.get('noise_db', float('nan')):.2f} | {'yes' if v.get('sine_gap_exceeds_noise') else 'no'} | {'yes' if v.get('dense_gap_exceeds_noise') else 'no'} |"
        )
    return "\n".join(rows)


def plot_curves(data: dict, output: Path, ranks: tuple[int, ...] = (1, 5)) -> None:
    """Held-out PSNR against iterations of every main run (one line per seed), one panel per scene."""
    from experiments.common import plot_psnr_panels

    panels = []
    for scene in sorted({r["scene"] for r in data["runs"].values()}):
        lines = []
        for run in data["runs"].values():
            main = run.get("phase") == "main" or run.get("also_main")
            if run.get("scene") != scene or not main or not run.get("curve") or (run["kind"] != "dense" and run["rank"] not in ranks):
                continue
            label = "dense" if run["kind"] == "dense" else f"{run['kind']} k={run['rank']}" + (f", omega {run['omega']:g}" if run["kind"] == "sine" else "")
            style = "-" if run["kind"] == "dense" or run["rank"] == max(ranks) else ":"
            lines.append({"label": label, "kind": run["kind"], "style": style, "curve": run["curve"]})
        panels.append((f"{scene}: held-out PSNR (curve pixels), one line per seed", lines))
    plot_psnr_panels(panels, output)


# --- commands ----------------------------------------------------------------------------------------


def command_prepare(args) -> int:
    from sine_fields.data.scenes import RenderOptions, render_scene

    if args.output.exists() and not args.overwrite:
        raise BenchmarkError(f"--output {args.output} exists; pass --overwrite to replace it")
    scenes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.scene:
            name = Path(source).stem if Path(source).suffix else source
            folder = Path(tmp) / name
            render_scene(source, folder, RenderOptions(views=args.views, resolution=args.resolution, eval_every=args.eval_every))
            scenes[name] = pack_scene_folder(folder)
            print(f"{name}: {len(scenes[name]['train'])} train and {len(scenes[name]['test'])} held-out views at {args.resolution} px", flush=True)
    save_scenes(args.output, scenes)
    print(f"wrote {args.output}")
    return 0


def command_plot(args) -> int:
    import json

    if not args.input.is_file():
        raise BenchmarkError(f"--input {args.input}: no such file")
    if args.output.exists() and not args.overwrite:
        raise BenchmarkError(f"--output {args.output} exists; pass --overwrite to replace it")
    plot_curves(json.loads(args.input.read_text()), args.output)
    print(f"wrote {args.output}")
    return 0


def command_run(args) -> int:
    started = time.time()
    if args.resume and args.overwrite:
        raise BenchmarkError("--resume and --overwrite: pass one (keep the finished runs, or start afresh)")
    previous = None
    if args.output.exists() and not args.overwrite:
        if not args.resume:
            raise BenchmarkError(f"--output {args.output} exists; pass --resume to train only its missing runs, or --overwrite to replace it")
        previous = read_results(args.output)
    recipe = QUICK_RECIPE if args.quick or args.recipe == "quick" else Recipe()
    plan = QUICK_PLAN if args.quick else Plan()
    overrides = {name: tuple(getattr(args, name)) for name in ("ranks", "seeds", "omegas", "sweep_ranks") if getattr(args, name)}
    overrides["rule"] = args.rule
    if args.cap:
        overrides.update(cap=args.cap, eval_every=max(1, args.cap // plan.evals_per_cap))
    plan = replace(plan, **overrides)
    if previous is not None:
        plan = resumed_plan(previous, args.output, plan, cap_given=bool(args.cap))
    if not set(plan.sweep_ranks) <= set(plan.ranks):
        raise BenchmarkError(f"--sweep-ranks {list(plan.sweep_ranks)} must be among --ranks {list(plan.ranks)}")
    if args.samples:
        recipe = replace(recipe, samples=args.samples)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: this torch sees no CUDA device")
    # Full float32 matrix products: with TF32 the argument omega * U V of the sine would be rounded to
    # a 10-bit mantissa (an error of about 0.05 rad at omega = 1000), which changes the sine weight.
    torch.set_float32_matmul_precision("highest")
    if device == "cpu":
        # Small tensors: extra threads only spin, and a shared CI machine punishes that. The workers use
        # one thread too, so the timing taken here is the one the probe compares them against.
        torch.set_num_threads(1)
    workdir = args.workdir
    scenes_path = args.scenes
    if scenes_path is None:
        if not args.quick:
            raise BenchmarkError("--scenes is required (write it with `benchmarks/nerf.py prepare`), except with --quick")
        scenes_path = workdir / "quick-scenes.npz"
        if not scenes_path.exists():
            command_prepare(argparse.Namespace(scene=["duck"], views=12, resolution=24, eval_every=4, output=scenes_path, overwrite=True))
    scenes = load_scenes(scenes_path)
    names = list(scenes)
    if previous is not None:
        check_resumable(previous, args.output, recipe, scenes_header(scenes))
    log_path = args.output.with_suffix(".log")

    def log(text: str) -> None:
        line = f"[{time.time() - started:6.0f} s] {text}"
        print(line, flush=True)
        with open(log_path, "a") as handle:
            handle.write(line + "\n")

    timings = {}
    jobs_per_kind = _jobs_per_kind(names, plan)
    deadline = started + args.budget_seconds
    if plan.cap == 0:
        first = scenes[names[0]]
        top = max(plan.ranks)
        timings = {kind: time_iterations(first, recipe, kind, top, torch.device(device)) for kind in KINDS}
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        log(f"timings alone: {timings}")
    pool = WorkerPool(scenes_path, recipe, device, args.workers, deadline) if args.workers > 0 else None
    try:
        return _plan_and_run(args, started, scenes_path, scenes, recipe, plan, device, timings, jobs_per_kind, deadline, pool, log, previous)
    finally:
        if pool is not None:
            pool.close()


def scenes_header(scenes: dict) -> dict:
    return {n: {"train_views": int(len(s["train"])), "test_views": int(len(s["test"])), "resolution": list(s["images"].shape[1:3])} for n, s in scenes.items()}


def _plan_and_run(args, started, scenes_path, scenes, recipe, plan, device, timings, jobs_per_kind, deadline, pool, log, previous=None) -> int:
    names = list(scenes)
    concurrency = None
    if plan.cap == 0:
        speedup = 1.0
        if pool is not None:
            concurrency = pool.probe(names[0], jobs_per_kind, max(plan.ranks), timings)
            speedup = concurrency["speedup"]
            log(f"probe: {concurrency}")
        remaining = args.budget_seconds - (time.time() - started)
        plan = plan_cap(timings, jobs_per_kind, remaining * args.safety * speedup, plan)
        log(f"cap {plan.cap} iterations, curve point every {plan.eval_every}, convergence test from {plan.min_iterations}")
    header = {
        "command": " ".join(["benchmarks/nerf.py", *sys.argv[1:]]) if args.argv is None else " ".join(["benchmarks/nerf.py", *args.argv]),
        "description": "dense vs plain low-rank vs sine low-rank vanilla-NeRF fields, each trained to convergence",
        "paper": PAPER,
        "recipe": asdict(recipe),
        "plan": {**asdict(plan), "min_iterations": plan.min_iterations, "budget_seconds": args.budget_seconds, "safety": args.safety,
                 "jobs_per_kind": jobs_per_kind, "workers": args.workers},
        "timings_alone_on_device": timings,
        "concurrency_probe": concurrency,
        "mps": os.environ.get("NERF_BENCH_MPS", "not set"),
        "scenes": scenes_header(scenes),
        "parameters": {variant_name(k, r, 0.0).replace("-w0", ""): count_parameters(build_field(recipe, k, r, 100.0))
                       for k, r in [("dense", 0)] + [(k, r) for k in ("lowrank", "sine") for r in plan.ranks]},
        "machine": _machine(device),
        "matmul_precision": "highest (float32 products, no TF32)",
    }
    calls = []
    if previous is None:
        report = Report(args.output, header)
    else:  # the first call's header (its command, timings and plan) stays; this call is one more in "calls"
        kept, choice = runs_to_keep(previous)
        first_header = {k: v for k, v in previous.items() if k not in ("runs", "omega_choice", "summary", "verdict", "calls")}
        report = Report(args.output, first_header, kept, choice)
        calls = previous.get("calls") or [{"wall_seconds": previous.get("wall_seconds"), "load_average_end": previous.get("load_average_end")}]
        log(f"resuming {args.output}: {len(kept)} complete runs kept, omega choice {'kept' if choice else 'to be made'}")
    trained = run_jobs(scenes_path, names, recipe, plan, device, pool, deadline, report, log)
    calls.append({"command": header["command"], "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
                  "wall_seconds": time.time() - started, "budget_seconds": args.budget_seconds, "runs_trained": trained,
                  "machine": header["machine"], "load_average_end": list(os.getloadavg())})
    report.data["calls"] = calls
    report.data["wall_seconds"] = sum(call["wall_seconds"] or 0.0 for call in calls)
    report.data["load_average_end"] = list(os.getloadavg())
    report.write()
    log(f"wrote {args.output}")
    print(markdown(report.data))
    return 0


def _jobs_per_kind(names: list[str], plan: Plan) -> dict[str, int]:
    sweep = len(plan.sweep_ranks) * len(plan.omegas)
    main_sine = len(names) * len(plan.ranks) * len(plan.seeds) - len(plan.sweep_ranks)
    return {"dense": len(names) * len(plan.seeds), "lowrank": len(names) * len(plan.ranks) * len(plan.seeds), "sine": sweep + main_sine}


def _machine(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg()), "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from experiments.common import OneLineParser  # its subcommands' parsers are of its class: bad options are one line

    parser = OneLineParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="render scenes (CPU, trimesh) into one .npz")
    prepare.add_argument("--scene", action="append", required=True, help="a scene name of `sine-fields data list` or a mesh file; repeat")
    prepare.add_argument("--views", type=int, default=100)
    prepare.add_argument("--resolution", type=int, default=64)
    prepare.add_argument("--eval-every", type=int, default=8, help="every N-th view is held out")
    prepare.add_argument("--output", type=Path, required=True)
    prepare.add_argument("--overwrite", action="store_true")
    plot = sub.add_parser("plot", help="draw the PSNR curves of a results JSON into a PNG")
    plot.add_argument("--input", type=Path, required=True)
    plot.add_argument("--output", type=Path, required=True)
    plot.add_argument("--overwrite", action="store_true")
    run = sub.add_parser("run", help="train every run and write the JSON")
    run.add_argument("--scenes", type=Path, help=".npz from `prepare` (--quick renders a small Duck when absent)")
    run.add_argument("--output", type=Path, required=True, help="results JSON (a .log beside it)")
    run.add_argument("--quick", action="store_true", help="tiny field, one seed, 60 iterations: the CI check")
    run.add_argument("--device", help="cuda or cpu (default: cuda when available, cpu with --quick)")
    run.add_argument("--workers", type=int, default=0, help="processes sharing the device (0: in this process)")
    run.add_argument("--budget-seconds", type=float, default=3600.0, help="wall time for everything; runs stop at it")
    run.add_argument("--safety", type=float, default=0.8, help="fraction of the remaining budget the planned caps may fill")
    run.add_argument("--samples", type=int, help="override the recipe's samples per ray")
    run.add_argument("--recipe", choices=("vanilla", "quick"), default="vanilla", help="the field's size (--quick implies quick)")
    run.add_argument("--ranks", type=int, nargs="+", help="override the ranks (default 1 2 5)")
    run.add_argument("--seeds", type=int, nargs="+", help="override the seeds (default 0 1 2)")
    run.add_argument("--omegas", type=float, nargs="+", help="override the swept omegas (default 30 100 300 1000)")
    run.add_argument("--sweep-ranks", type=int, nargs="+", help="override the swept ranks (default 1 5)")
    run.add_argument("--cap", type=int, help="a fixed iteration cap instead of one planned from the timing")
    run.add_argument("--rule", choices=RULES, default="last-quarter",
                     help="how a run's last-quarter gain is read: two points, or smoothed over the last half (noisy curves)")
    run.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs" / "nerf", help="where --quick renders its scenes")
    run.add_argument("--resume", action="store_true",
                     help="--output exists: keep its complete runs and train the rest, with its cap and settings (repeat until done)")
    run.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "workers", 0) < 0:
        parser.error("--workers must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "plot":
            return command_plot(args)
        return command_prepare(args) if args.command == "prepare" else command_run(args)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
