"""benchmarks/nerf.py: closed-form checks of the rays, box and compositing; exact parameter counts; the
convergence rule; and a --quick run end to end on a small analytic scene (a shaded ball, no download)."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "nerf.py"


@pytest.fixture(scope="module")
def nerf():
    spec = importlib.util.spec_from_file_location("benchmark_nerf_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def look_at(position):
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pose = np.eye(4, dtype=np.float32)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, -forward, position
    return pose


def ball_scene(views=10, size=16, radius=0.6):
    """A ball of ``radius`` at the origin, colour 0.5 + 0.5 * normal, seen from ``views`` cameras at distance 4."""
    focal = size / 2 / math.tan(math.asin(1.0 / 4.0))
    angles = np.arange(views) * 2 * math.pi / views
    images, poses = [], []
    for i, a in enumerate(angles):
        position = 4.0 * np.array([math.cos(a), math.sin(a), 0.3 * (-1) ** i])
        pose = look_at(position)
        c = np.arange(size) + 0.5
        cols, rows = np.meshgrid(c, c)
        d = np.stack([(cols - size / 2) / focal, -(rows - size / 2) / focal, -np.ones_like(cols)], -1) @ pose[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        b = (d * position).sum(-1)
        disc = b**2 - (position @ position - radius**2)
        hit = disc > 0
        t = -b - np.sqrt(np.maximum(disc, 0))
        normal = (position + t[..., None] * d) / radius
        rgba = np.zeros((size, size, 4))
        rgba[..., :3] = np.where(hit[..., None], 0.5 + 0.5 * normal, 0)
        rgba[..., 3] = hit
        images.append(np.round(rgba * 255).astype(np.uint8))
        poses.append(pose)
    return {
        "images": np.stack(images),
        "poses": np.stack(poses),
        "intrinsics": np.array([focal, focal, size / 2, size / 2], dtype=np.float32),
        "train": np.array([i for i in range(views) if i % 5 != 2]),
        "test": np.array([i for i in range(views) if i % 5 == 2]),
    }


def test_box_interval_closed_form(nerf):
    origins = torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = nerf.box_interval(origins, directions, 1.0)
    assert near[0] == pytest.approx(3.0) and far[0] == pytest.approx(5.0)
    assert near[1] == far[1]  # misses the box: an empty interval
    assert near[2] == pytest.approx(0.0) and far[2] == pytest.approx(1.0)  # starts inside


def test_view_rays_centre_pixel_and_white_background(nerf):
    scene = {
        "images": np.zeros((1, 3, 3, 4), np.uint8),  # fully transparent: white after compositing
        "poses": np.eye(4, dtype=np.float32)[None].copy(),
        "intrinsics": np.array([2.0, 2.0, 1.5, 1.5], np.float32),
    }
    scene["poses"][0, 2, 3] = 4.0
    rays = nerf.view_rays(scene, np.array([0]), 1.0, torch.device("cpu"))
    centre = 4  # row 1, column 1
    assert torch.allclose(rays.directions[centre], torch.tensor([0.0, 0.0, -1.0]))
    assert rays.near[centre] == pytest.approx(3.0)
    assert torch.all(rays.rgb == 1.0)
    # the top-left pixel looks up and to the left (OpenGL camera: x right, y up)
    assert rays.directions[0, 0] < 0 and rays.directions[0, 1] > 0


def test_composite_closed_form(nerf):
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    delta = torch.ones(1, 2)
    # opaque first sample: its colour
    assert torch.allclose(nerf.composite(torch.tensor([[1e4, 0.0]]), rgb, delta), torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-5)
    # empty: white
    assert torch.allclose(nerf.composite(torch.zeros(1, 2), rgb, delta), torch.ones(1, 3))
    # density ln 2 on both: alphas 1/2 and 1/2, weights 1/2 and 1/4, white 1/4
    expected = 0.5 * rgb[0, 0] + 0.25 * rgb[0, 1] + 0.25
    assert torch.allclose(nerf.composite(torch.full((1, 2), math.log(2.0)), rgb, delta), expected[None], atol=1e-6)


def test_parameter_counts_are_exact(nerf):
    recipe = nerf.Recipe()
    dense = nerf.build_field(recipe, "dense", 0, 0.0)
    # vanilla NeRF: 63 -> 256, 3 x (256 -> 256), (256 + 63) -> 256, 3 x (256 -> 256); 256 -> 1;
    # (256 + 27) -> 128 -> 128; 128 -> 3. Each layer in x out weights + out biases.
    layers = [(63, 256)] + [(256, 256)] * 3 + [(319, 256)] + [(256, 256)] * 3 + [(256, 1), (283, 128), (128, 128), (128, 3)]
    assert sum(p.numel() for p in dense.parameters()) == sum(i * o + o for i, o in layers)
    for k in (1, 5):
        factored = [layer for layer in layers if layer[1] != 1 and layer[1] != 3]
        heads = [(256, 1), (128, 3)]
        expected = sum(k * (i + o) + o for i, o in factored) + sum(i * o + o for i, o in heads)
        low = nerf.build_field(recipe, "lowrank", k, 0.0)
        sine = nerf.build_field(recipe, "sine", k, 100.0)
        assert sum(p.numel() for p in low.parameters()) == expected
        assert sum(p.numel() for p in sine.parameters()) == expected
    # the paper's budget: k = 5 on every MLP layer keeps about 5 % of the dense field
    ratio = sum(p.numel() for p in nerf.build_field(recipe, "lowrank", 5, 0.0).parameters()) / sum(i * o + o for i, o in layers)
    assert 0.04 < ratio < 0.055


def test_convergence_rule(nerf):
    rising = [(i, 10 + 0.01 * i) for i in range(10, 410, 10)]  # +1 dB over the last quarter
    assert not nerf.converged(rising, 0.3, 100)
    flat = [(i, 20 + 2 * (1 - math.exp(-i / 20))) for i in range(10, 410, 10)]
    assert nerf.converged(flat, 0.3, 100)
    assert not nerf.converged(flat[:5], 0.3, 100)  # before min_iterations nothing has converged
    # a run still rising 1 dB per quarter whose last evaluation dips 1.2 dB: the two-point rule stops it, the
    # smoothed one (a quadratic through the 21 points of the last half) does not; both stop the flat run
    dipped = rising[:-1] + [(400, rising[-1][1] - 1.2)]
    assert nerf.converged(dipped, 0.3, 100) and not nerf.converged(dipped, 0.3, 100, rule="smoothed")
    assert nerf.converged(flat, 0.3, 100, rule="smoothed")
    assert not nerf.converged(flat[:5], 0.3, 100, rule="smoothed")


def test_omega_choice(nerf):
    plan = nerf.Plan(ranks=(1, 2, 5), omegas=(30.0, 100.0, 300.0), sweep_ranks=(1, 5))
    psnr = {(1, 30.0): 20, (1, 100.0): 23, (1, 300.0): 22, (5, 30.0): 24, (5, 100.0): 25, (5, 300.0): 25.5}
    sweep = [{"rank": k, "omega": w, "psnr": v} for (k, w), v in psnr.items()]
    chosen = nerf.choose_omegas(sweep, plan)["by_rank"]
    assert chosen["1"] == 100.0 and chosen["5"] == 300.0
    assert chosen["2"] == 100.0  # mean over k = 1, 5: 100 -> 24.0, 300 -> 23.75


def test_quick_run_end_to_end(nerf, tmp_path):
    scenes = tmp_path / "scenes.npz"
    nerf.save_scenes(scenes, {"ball": ball_scene()})
    out = tmp_path / "nerf.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "run", "--quick", "--scenes", str(scenes), "--output", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    runs = data["runs"]
    variants = {r["variant"] for r in runs.values()}
    assert variants == {"dense", "lowrank-k1", "sine-k1-w30", "sine-k1-w300"}
    assert data["omega_choice"]["by_rank"]["1"] in (30.0, 300.0)
    for run in runs.values():
        assert run["status"] in ("converged", "cap")
        assert run["iterations"] <= data["plan"]["cap"]
        assert run["curve"][-1][0] == run["iterations"]
        assert math.isfinite(run["psnr"])
        assert len(run["load_average_end"]) == 3
    # training does something: every field beats the all-white image it starts near
    white = white_psnr(ball_scene())
    assert all(r["psnr"] > white + 1.0 for r in runs.values())
    kinds = {row["kind"] for row in data["summary"] if row["phase"] == "main"}
    assert kinds == {"dense", "lowrank", "sine"}
    assert data["parameters"]["sine-k1"] == data["parameters"]["lowrank-k1"] < data["parameters"]["dense"]
    assert "| ball | sine | 1 |" in nerf.markdown(data)
    # the sweep's seed-0 run at the chosen omega stands for seed 0 in the main table
    sine_row = next(row for row in data["summary"] if row["phase"] == "main" and row["kind"] == "sine")
    assert sine_row["seeds"] == [0] and sine_row["omega"] == data["omega_choice"]["by_rank"]["1"]
    assert nerf.markdown_sweep(data).count("\n") == 2  # header, rule, one rank
    assert "| ball | 1 |" in nerf.markdown_verdict(data)
    figure = tmp_path / "curves.png"
    nerf.plot_curves(data, figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data["calls"]) == 1 and data["calls"][0]["runs_trained"] == len(runs)

    # --resume: a run the deadline cut short and a run never written are trained; the complete ones are kept
    dense_key, lowrank_key = "ball/dense/seed0", "ball/lowrank-k1/seed0"
    every_key = set(runs)
    data["runs"][dense_key]["status"] = "deadline"
    del data["runs"][lowrank_key]
    out.write_text(json.dumps(data))
    kept = {k: r for k, r in data["runs"].items() if k != dense_key}
    again = subprocess.run([sys.executable, str(SCRIPT), "run", "--quick", "--scenes", str(scenes), "--output", str(out), "--resume"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(out.read_text())
    assert set(resumed["runs"]) == every_key
    assert all(resumed["runs"][k] == r for k, r in kept.items())  # byte for byte, not retrained
    assert resumed["runs"][dense_key]["status"] in ("converged", "cap")
    assert resumed["runs"][lowrank_key]["status"] in ("converged", "cap")
    assert [c["runs_trained"] for c in resumed["calls"]] == [len(every_key), 2]
    assert resumed["omega_choice"] == data["omega_choice"]
    # other settings cannot be mixed into the file: one line, exit 2, nothing written
    before = out.read_text()
    other = subprocess.run([sys.executable, str(SCRIPT), "run", "--quick", "--scenes", str(scenes), "--output", str(out), "--resume", "--seeds", "0", "1"],
                           capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and other.stderr.strip().count("\n") == 0 and "seeds" in other.stderr
    assert out.read_text() == before


def test_resume_keeps_complete_runs_and_an_omega_choice_only_from_a_complete_sweep(nerf):
    def run(phase, kind, status, seed=0):
        return {"phase": phase, "kind": kind, "status": status, "seed": seed, "also_main": phase == "sweep"}

    runs = {"sweep-a": run("sweep", "sine", "converged"), "sweep-b": run("sweep", "sine", "cap"),
            "dense": run("main", "dense", "diverged"), "lowrank": run("main", "lowrank", "deadline"),
            "sine1": run("main", "sine", "converged", seed=1), "sine2": run("main", "sine", "failed", seed=2)}
    choice = {"by_rank": {"1": 30.0}}
    kept, kept_choice = nerf.runs_to_keep({"runs": runs, "omega_choice": choice})
    assert set(kept) == {"sweep-a", "sweep-b", "dense", "sine1"} and kept_choice == choice
    # a sweep run cut by the deadline: the choice is made again, and sine runs trained at the old one go
    runs["sweep-b"]["status"] = "deadline"
    kept, kept_choice = nerf.runs_to_keep({"runs": runs, "omega_choice": choice})
    assert set(kept) == {"sweep-a", "dense"} and kept_choice is None
    assert "also_main" not in kept["sweep-a"]


def test_resume_reads_a_file_from_before_the_rule_option_as_the_two_point_rule(nerf, tmp_path):
    from dataclasses import asdict, replace

    plan = nerf.Plan(cap=100, eval_every=4)
    saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(plan).items() if k != "rule"}
    assert nerf.resumed_plan({"plan": saved}, tmp_path / "old.json", plan, cap_given=False) == plan
    with pytest.raises(nerf.BenchmarkError, match="rule last-quarter.*--rule"):
        nerf.resumed_plan({"plan": saved}, tmp_path / "old.json", replace(plan, rule="smoothed"), cap_given=False)


def white_psnr(scene):
    values = []
    for i in scene["test"]:
        image = scene["images"][i].astype(np.float64) / 255
        rgb = image[..., :3] * image[..., 3:] + (1 - image[..., 3:])
        values.append(-10 * math.log10(((rgb - 1.0) ** 2).mean()))
    return float(np.mean(values))


def test_bad_input_is_one_line(tmp_path):
    missing = subprocess.run([sys.executable, str(SCRIPT), "run", "--scenes", str(tmp_path / "nope.npz"), "--output", str(tmp_path / "x.json")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "nope.npz" in missing.stderr
    bad_rule = subprocess.run([sys.executable, str(SCRIPT), "run", "--rule", "bogus", "--output", str(tmp_path / "x.json")],
                              capture_output=True, text=True, timeout=120)
    assert bad_rule.returncode == 2 and bad_rule.stderr.strip().count("\n") == 0 and "--rule" in bad_rule.stderr
    existing = tmp_path / "x.json"
    existing.write_text("{}")
    again = subprocess.run([sys.executable, str(SCRIPT), "run", "--quick", "--scenes", str(tmp_path / "nope.npz"), "--output", str(existing)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert existing.read_text() == "{}"
