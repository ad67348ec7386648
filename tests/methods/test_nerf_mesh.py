"""``sine-fields nerf-mesh``: closed-form density balls through the real extraction path, the auto level's
closed form, the frame round trip, bad input as one line and exit code 2, and a real few-iteration run."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.fields.base_field import Field
from torch import nn

from sine_fields import cli
from sine_fields.data.scenes import RenderOptions, look_at, render_scene
from sine_fields.errors import UserError
from sine_fields.methods import nerf_mesh
from sine_fields.methods.nerf_density import (
    DEFAULT_AUTO_OPACITY,
    DEFAULT_SMOOTHED_AUTO_OPACITY,
    SceneFrame,
    auto_level,
    crossing_densities,
    density_function,
)
from sine_fields.methods.nerf_mesh import NerfMeshOptions, mesh_pipeline
from sine_fields.shapes.metrics import surface_metrics

ROOT = Path(__file__).resolve().parents[2]


class RampBall(Field):
    """Density ``slope * max(0, radius - |x - centre|)`` (model frame): zero outside the ball, rising
    linearly inwards, so every level has a closed-form sphere: radius - level / slope."""

    def __init__(self, radius: float, slope: float, centre=(0.0, 0.0, 0.0)) -> None:
        super().__init__()
        self.radius, self.slope = radius, slope
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32))

    def get_density(self, ray_samples):
        distance = (ray_samples.frustums.get_positions() - self.centre).norm(dim=-1, keepdim=True)
        return self.slope * torch.clamp(self.radius - distance, min=0.0), None

    def get_outputs(self, ray_samples, density_embedding=None):
        return {}


def _pixel_cameras(centre: np.ndarray, count: int = 8) -> Cameras:
    """One-pixel cameras on a sphere of radius 3 around ``centre`` (model frame): each one's only ray
    passes through the centre."""
    poses = []
    for i in range(count):
        z = 1 - 2 * (i + 0.5) / count
        azimuth = i * math.pi * (3 - math.sqrt(5))
        position = 3 * np.array([math.sqrt(1 - z * z) * math.cos(azimuth), math.sqrt(1 - z * z) * math.sin(azimuth), z])
        pose = look_at(position)
        pose[:3, 3] += centre
        poses.append(pose[:3])
    return Cameras(camera_to_worlds=torch.tensor(np.array(poses), dtype=torch.float32), fx=1.0, fy=1.0, cx=0.5, cy=0.5,
                   width=1, height=1, camera_type=CameraType.PERSPECTIVE)


def _pipeline(field: nn.Module | None, frame: SceneFrame, centre=np.zeros(3), cameras: Cameras | None = None):
    model = nn.Module()
    if field is not None:
        model.field = field
    cameras = cameras if cameras is not None else _pixel_cameras(np.asarray(centre))
    outputs = DataparserOutputs(
        image_filenames=[Path("unused.png")] * len(cameras),
        cameras=cameras,
        scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
        dataparser_transform=torch.tensor(frame.transform, dtype=torch.float32),
        dataparser_scale=frame.scale,
    )
    return SimpleNamespace(model=model, datamanager=SimpleNamespace(train_dataparser_outputs=outputs))


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# A dataparser that rotates, shifts and scales (as nerfstudio's orientation/centering/auto-scale do).
FRAME = SceneFrame(np.concatenate([_rotation(0.7), [[0.1], [-0.2], [0.05]]], axis=1), 0.8)
IDENTITY = SceneFrame(np.eye(4)[:3], 1.0)


def _radii(mesh_path: Path, centre: np.ndarray) -> np.ndarray:
    mesh = trimesh.load(mesh_path, force="mesh", process=False)
    return np.linalg.norm(mesh.vertices - centre, axis=1)


@pytest.mark.parametrize("method", ["coarse-to-fine", "dense"])
def test_fixed_level_gives_the_sphere_of_closed_form_radius_in_the_dataset_frame(tmp_path, method):
    radius, slope, level = 0.6, 50.0, 10.0  # density 10 at distance 0.6 - 10/50 = 0.4 from the centre
    pipeline = _pipeline(RampBall(radius, slope), FRAME)
    info = mesh_pipeline(pipeline, tmp_path, NerfMeshOptions(resolution=64, method=method, level=level))
    # The model-frame origin, in the dataset frame; model lengths are dataset lengths times the scale.
    centre = FRAME.to_dataset(np.zeros((1, 3)))[0]
    radii = _radii(tmp_path / "mesh.ply", centre)
    expected = (radius - level / slope) / FRAME.scale
    cell = 2.2 / 64 / FRAME.scale  # grid cell in dataset units (the box of side 2 is 1/1.1 of the grid)
    assert abs(radii.mean() - expected) < 0.01 * expected
    assert np.abs(radii - expected).max() < cell / 4
    assert info["level"] == level and info["level_method"] == "fixed" and info["auto_level"] is None
    saved = json.loads((tmp_path / "extraction.json").read_text())
    assert saved["method"] == method and saved["resolution"] == 64 and saved["field_queries"] > 0
    assert not (tmp_path / "metrics.json").exists()  # no dataset folder, so no ground truth


class HollowRampBall(RampBall):
    """``RampBall`` with no density within ``core`` of the centre: a void no outside ray can reach, which
    marching cubes meshes as a second, inner sphere of radius ``core`` unless it is filled."""

    def __init__(self, radius: float, slope: float, core: float) -> None:
        super().__init__(radius, slope)
        self.core = core

    def get_density(self, ray_samples):
        density, _ = super().get_density(ray_samples)
        distance = (ray_samples.frustums.get_positions() - self.centre).norm(dim=-1, keepdim=True)
        return torch.where(distance > self.core, density, torch.zeros_like(density)), None


@pytest.mark.parametrize("method", ["coarse-to-fine", "dense"])
def test_interior_fill_removes_the_inner_sphere_of_a_hollow_ball(tmp_path, method):
    radius, slope, level, core = 0.6, 50.0, 10.0, 0.2  # outer surface at 0.4; the void's wall at 0.2
    cell = 2.2 / 64
    radii = {}
    for fill in (False, True):
        folder = tmp_path / f"fill-{fill}"
        info = mesh_pipeline(_pipeline(HollowRampBall(radius, slope, core), FRAME), folder,
                             NerfMeshOptions(resolution=64, method=method, level=level, fill_interior=fill))
        radii[fill] = _radii(folder / "mesh.ply", FRAME.to_dataset(np.zeros((1, 3)))[0]) * FRAME.scale
        saved = json.loads((folder / "extraction.json").read_text())
        assert saved["fill_interior"] is fill
    inner = radii[False] < 0.3
    assert 0.1 < inner.mean() < 0.5  # both spheres are meshed without the fill (vertices ~ area: 1/4 inner)
    assert np.abs(radii[False][inner] - core).max() < cell and np.abs(radii[False][~inner] - 0.4).max() < cell / 4
    assert np.abs(radii[True] - 0.4).max() < cell / 4  # only the outer sphere, where it was
    assert len(radii[True]) == int((~inner).sum())
    assert info["interior_fill"]["filled_regions"] == 1 and info["interior_fill"]["regions_kept_for_cameras"] == 0


def test_interior_fill_keeps_a_void_that_holds_the_cameras(tmp_path):
    """Cameras inside the void (as in an indoor capture) see its wall: it is meshed."""
    poses = torch.eye(4)[:3].repeat(2, 1, 1)
    poses[:, :3, 3] = torch.tensor([[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0]])  # model frame, inside the 0.2 void
    cameras = Cameras(camera_to_worlds=poses, fx=1.0, fy=1.0, cx=0.5, cy=0.5, width=1, height=1,
                      camera_type=CameraType.PERSPECTIVE)
    info = mesh_pipeline(_pipeline(HollowRampBall(0.6, 50.0, 0.2), IDENTITY, cameras=cameras), tmp_path,
                         NerfMeshOptions(resolution=64, method="dense", level=10.0))
    radii = _radii(tmp_path / "mesh.ply", np.zeros(3))
    assert (radii < 0.3).any() and info["interior_fill"] == {"filled_regions": 0, "filled_points": 0,
                                                             "regions_kept_for_cameras": 1}


class NoisyRampBall(RampBall):
    """``RampBall`` plus ``amplitude * sin(k x) sin(k y) sin(k z)``: noise about four grid cells across at
    resolution 64, which marching cubes turns into bumps on the sphere."""

    def __init__(self, radius: float, slope: float, amplitude: float, wavenumber: float) -> None:
        super().__init__(radius, slope)
        self.amplitude, self.wavenumber = amplitude, wavenumber

    def get_density(self, ray_samples):
        density, _ = super().get_density(ray_samples)
        x = ray_samples.frustums.get_positions() * self.wavenumber
        noise = self.amplitude * torch.sin(x[..., :1]) * torch.sin(x[..., 1:2]) * torch.sin(x[..., 2:])
        return density + noise, None


def test_smoothing_removes_noise_and_keeps_the_sphere(tmp_path):
    # A Gaussian of standard deviation sigma damps sin(k x) by exp(-sigma^2 k^2 / 2) per axis: with
    # sigma = 0.03 (0.015 of the box side 2) and k = 45.7, by 0.39 per axis, 0.06 for the product. On the
    # linear ramp the filter moves the level set by only slope sigma^2 / r in density, 0.002 in radius.
    radius, slope, level, amplitude, k = 0.6, 50.0, 10.0, 5.0, 2 * math.pi / (4 * 2.2 / 64)
    expected = radius - level / slope
    spreads = {}
    for smooth in (0.0, 0.015):
        folder = tmp_path / f"smooth-{smooth}"
        pipeline = _pipeline(NoisyRampBall(radius, slope, amplitude, k), IDENTITY)
        info = mesh_pipeline(pipeline, folder, NerfMeshOptions(resolution=64, method="dense", level=level, smooth=smooth))
        radii = _radii(folder / "mesh.ply", np.zeros(3))
        spreads[smooth] = radii.std()
        assert info["smooth"] == smooth
    assert abs(radii.mean() - expected) < 0.01  # the smoothed sphere (the raw one is bumps up to 0.1 high)
    assert info["smooth_sigma_cells"] == [pytest.approx(0.03 / (2.2 / 64), abs=1e-3)] * 3
    assert spreads[0.015] < spreads[0.0] / 3, spreads
    assert spreads[0.015] < 2.2 / 64 / 4  # a quarter of a cell


def test_smoothed_auto_level_reads_the_filtered_density(tmp_path):
    """Without noise the filter barely changes a ramp, so the auto level keeps its closed form."""
    radius, slope = 0.6, 50.0
    depth = math.sqrt(2 * math.log(2) / slope)
    pipeline = _pipeline(RampBall(radius, slope), IDENTITY)
    options = NerfMeshOptions(resolution=128, method="dense", auto_rays=16, smooth=0.005, auto_opacity=0.5)
    info = mesh_pipeline(pipeline, tmp_path, options)
    assert abs(info["level"] - slope * depth) <= slope * info["auto_level"]["step"] + slope * 0.01**2 / (radius - depth)


def test_auto_level_is_the_density_where_opacity_reaches_one_half(tmp_path):
    # Along a ray through the centre the optical depth at depth s inside the ball is slope s^2 / 2,
    # so opacity 0.5 (depth ln 2) is reached at s* = sqrt(2 ln 2 / slope), where the density is slope s*.
    radius, slope = 0.6, 50.0
    depth = math.sqrt(2 * math.log(2) / slope)
    pipeline = _pipeline(RampBall(radius, slope), IDENTITY)
    info = mesh_pipeline(pipeline, tmp_path, NerfMeshOptions(resolution=128, auto_rays=16, auto_opacity=0.5))
    auto = info["auto_level"]
    assert info["level_method"] == "auto" and auto["crossing_rays"] == auto["rays"] == 16
    # The marching step holds one density, so the crossing density is exact to one step's change.
    assert abs(info["level"] - slope * depth) <= slope * auto["step"]
    radii = _radii(tmp_path / "mesh.ply", np.zeros(3))
    assert abs(radii.mean() - (radius - depth)) <= auto["step"] + 1e-3


def test_the_default_auto_opacity_is_the_measured_one_for_each_smoothing():
    assert NerfMeshOptions().opacity == DEFAULT_AUTO_OPACITY == 0.1
    assert NerfMeshOptions(smooth=0.01).opacity == DEFAULT_SMOOTHED_AUTO_OPACITY == 0.2
    assert NerfMeshOptions(smooth=0.01, auto_opacity=0.3).opacity == NerfMeshOptions(auto_opacity=0.3).opacity == 0.3


@pytest.mark.parametrize("opacity", [0.1, 0.3, 0.9])
def test_auto_level_at_another_opacity_follows_the_same_closed_form(tmp_path, opacity):
    # opacity p is reached at optical depth tau = -ln(1 - p): s* = sqrt(2 tau / slope), density slope s*
    radius, slope = 0.6, 50.0
    depth = math.sqrt(2 * -math.log(1 - opacity) / slope)
    pipeline = _pipeline(RampBall(radius, slope), IDENTITY)
    info = mesh_pipeline(pipeline, tmp_path, NerfMeshOptions(resolution=128, auto_rays=16, auto_opacity=opacity))
    auto = info["auto_level"]
    assert auto["opacity"] == opacity
    assert abs(info["level"] - slope * depth) <= slope * auto["step"]
    radii = _radii(tmp_path / "mesh.ply", np.zeros(3))
    assert abs(radii.mean() - (radius - depth)) <= auto["step"] + 1e-3


def test_crossing_densities_closed_form_and_rays_that_never_cross():
    step = 0.1
    density = torch.tensor([[0.0, 1.0, 10.0, 10.0], [0.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    # Row 0: depths 0, 0.1, 1.1 -> crosses ln 2 = 0.693 in the third step, density 10.
    # Row 1: depths reach 0.3 < ln 2 -> never.
    values = crossing_densities(density, step, opacity=0.5)
    assert values[0] == 10.0 and torch.isnan(values[1])
    # opacity 0.05 (depth 0.0513): row 0 crosses in its second step (depth 0.1), row 1 too
    assert crossing_densities(density, step, opacity=0.05).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="opacity must lie strictly between 0 and 1"):
        crossing_densities(density, step, opacity=1.0)


def test_auto_level_on_an_empty_scene_is_an_error():
    empty = density_function(RampBall(0.0, 1.0))
    with pytest.raises(ValueError, match="reaches opacity 0.1 inside the scene box"):
        auto_level(empty, _pixel_cameras(np.zeros(3)), np.array([[-1.0] * 3, [1.0] * 3]), step=0.05, rays=4)


def test_frame_round_trip():
    points = np.random.default_rng(0).normal(size=(20, 3))
    assert np.allclose(FRAME.to_dataset(FRAME.to_model(points)), points)


def test_metrics_against_the_ground_truth_sphere_in_the_normalised_frame(tmp_path):
    radius, slope, level = 0.6, 50.0, 10.0
    dataset = tmp_path / "data"
    dataset.mkdir()
    centre = FRAME.to_dataset(np.zeros((1, 3)))[0]
    truth = trimesh.creation.icosphere(subdivisions=5, radius=(radius - level / slope) / FRAME.scale)
    truth.apply_translation(centre)
    truth.export(dataset / "mesh.ply")
    pipeline = _pipeline(RampBall(radius, slope), FRAME)
    info = mesh_pipeline(pipeline, tmp_path / "out", NerfMeshOptions(resolution=64, level=level), dataset)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics == info["metrics"]
    # Same sphere: Chamfer-L1 is then the floor that random surface samples give even for a mesh
    # against itself (about 0.5 / sqrt(samples per unit area)), which the ground truth shows directly.
    normalised = trimesh.Trimesh((truth.vertices - centre) / truth.extents.max(), truth.faces)
    floor = surface_metrics(normalised, normalised, seed=1)["chamfer_l1"]
    assert metrics["chamfer_l1"] < 1.2 * floor
    assert metrics["fscore"] > 0.99 and metrics["normal_consistency"] > 0.99
    assert metrics["normalisation"]["scale"] == pytest.approx(1 / truth.extents.max(), rel=1e-6)

    # A level that puts the surface elsewhere scores worse: the metrics compare, not just count.
    worse = mesh_pipeline(pipeline, tmp_path / "off", NerfMeshOptions(resolution=64, level=11.0), dataset)["metrics"]
    # Concentric spheres: every point is the radius difference from the other surface (normalised units).
    shift = (11.0 - level) / slope / FRAME.scale / truth.extents.max()
    assert worse["chamfer_l1"] == pytest.approx(shift, rel=0.1)


# --- bad input: one line on stderr, exit code 2 ------------------------------------------------------


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(["nerf-mesh", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.yml"], "no such file"),
        (["missing.yml", "--resolution", "100"], "coarse-to-fine needs resolution"),
        (["missing.yml", "--level", "-1"], "--level must be 'auto' or a positive density"),
        (["missing.yml", "--level", "surface"], "--level must be 'auto' or a positive density"),
        (["missing.yml", "--auto-rays", "0"], "--auto-rays must be >= 1"),
        (["missing.yml", "--auto-opacity", "0"], "--auto-opacity must lie strictly between 0 and 1"),
        (["missing.yml", "--auto-opacity", "1.5"], "--auto-opacity must lie strictly between 0 and 1"),
        (["missing.yml", "--smooth", "-0.1"], "--smooth must be a fraction of the scene box in [0, 0.5)"),
        (["missing.yml", "--smooth", "2"], "--smooth must be a fraction of the scene box in [0, 0.5)"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = _run_cli([*args, "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_existing_output_needs_overwrite(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mesh.ply").write_text("mine")
    (tmp_path / "config.yml").write_text("x: 1\n")
    code, err = _run_cli([str(tmp_path / "config.yml"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "out" / "mesh.ply").read_text() == "mine"


def test_a_file_that_is_not_a_nerfstudio_config(tmp_path, capsys):
    (tmp_path / "config.yml").write_text("x: 1\n")
    code, err = _run_cli([str(tmp_path / "config.yml"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "not a nerfstudio config.yml" in err and len(err.strip().splitlines()) == 1


def test_a_model_without_a_density_field(tmp_path, capsys, monkeypatch):
    def load(config, data):
        return None, _pipeline(None, IDENTITY), tmp_path / "step.ckpt", None

    monkeypatch.setattr(nerf_mesh, "load_pipeline", load)
    code, err = _run_cli([str(tmp_path / "config.yml"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "has no density field" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UserError, match="no density field"):
        mesh_pipeline(_pipeline(None, IDENTITY), tmp_path / "direct", NerfMeshOptions(resolution=64, level=1.0))


# --- a real few-iteration ns-train run ------------------------------------------------------------


def _train_on_a_sphere(folder: Path, method: str) -> tuple[Path, Path]:
    """``(config.yml, dataset)`` of a 20-iteration CPU run of ``method`` on a rendered sphere (16 px, 6 views)."""
    from nerfstudio.plugins.registry import discover_methods

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    sphere.visual.vertex_colors = np.tile([220, 120, 40, 255], (len(sphere.vertices), 1))
    sphere.export(folder / "sphere.ply")
    data = folder / "data"
    render_scene(str(folder / "sphere.ply"), data, RenderOptions(views=6, resolution=16, eval_every=3, up="z"))
    methods, _ = discover_methods()
    config = copy.deepcopy(methods[method])
    config.pipeline.datamanager.data = data
    config.output_dir = folder / "outputs"
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.max_num_iterations = 20
    config.steps_per_save = 1000
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 1000
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    model = config.pipeline.model
    if hasattr(model, "num_coarse_samples"):
        model.num_coarse_samples = model.num_importance_samples = 8
    else:  # the lite model
        model.num_samples, model.grid_resolution, model.grid_update_every = 8, 16, 5
    config.set_timestamp()
    config.save_config()
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    for step in range(config.max_num_iterations):
        trainer.train_iteration(step)
    trainer.save_checkpoint(config.max_num_iterations - 1)
    return config.get_base_dir() / "config.yml", data


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 20-iteration CPU sine-nerf on a rendered sphere."""
    return _train_on_a_sphere(tmp_path_factory.mktemp("nerf"), "sine-nerf")


def test_nerf_mesh_on_a_lite_run_reads_its_one_field(tmp_path, capsys):
    """sine-nerf-lite renders one field named ``field`` (sampled through a density grid): nerf-mesh finds it,
    and its auto level comes from the run's own rays."""
    config, data = _train_on_a_sphere(tmp_path, "sine-nerf-lite")
    out = tmp_path / "mesh"
    code = cli.main(["nerf-mesh", str(config), "--output", str(out), "--resolution", "32", "--data", str(data)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    extraction = json.loads((out / "extraction.json").read_text())
    assert extraction["model"] == "SineNeRFLiteModel" and extraction["density_field"] == "field"
    assert extraction["level_method"] == "auto" and extraction["level"] > 0
    assert (out / "metrics.json").exists()


def test_nerf_mesh_on_a_real_run_moved_elsewhere(trained_run, tmp_path, capsys, monkeypatch):
    config, data = trained_run
    moved = tmp_path / "moved_run"
    shutil.copytree(config.parent, moved)  # a run folder copied away still loads (checkpoints beside config.yml)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mesh"
    code = cli.main(["nerf-mesh", str(moved / "config.yml"), "--output", str(out), "--resolution", "64",
                     "--level", "0.5", "--data", str(data)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    extraction = json.loads((out / "extraction.json").read_text())
    assert extraction["model"] == "SineNeRFModel" and extraction["density_field"] == "field_fine"
    assert extraction["level"] == 0.5 and extraction["resolution"] == 64
    assert extraction["checkpoint"].endswith("step-000000019.ckpt")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"chamfer_l1", "chamfer_l2", "normal_consistency", "fscore"} <= set(metrics)
    assert all(math.isfinite(metrics[k]) for k in ("chamfer_l1", "chamfer_l2", "normal_consistency", "fscore"))
    assert "chamfer_l1" in captured.out

    # The same folder again: refused without --overwrite, replaced with it.
    again = ["nerf-mesh", str(moved / "config.yml"), "--output", str(out), "--resolution", "64", "--level", "0.5",
             "--data", str(data)]
    assert cli.main(again) == 2
    assert cli.main([*again, "--overwrite"]) == 0


def test_a_run_without_checkpoints(trained_run, tmp_path, capsys):
    config, _ = trained_run
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(config, bare / "config.yml")
    code, err = _run_cli([str(bare / "config.yml"), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and "no checkpoint" in err and len(err.strip().splitlines()) == 1


# --- the viewer shows a nerf-mesh folder beside the ground truth ------------------------------------


def test_viewer_shows_a_nerf_mesh_folder_with_error_colouring(tmp_path):
    import socket

    import viser

    from sine_fields.viewer.app import ShapeViewer, stop_server
    from sine_fields.viewer.run_folder import ground_truth_of, load_runs

    radius, slope, level = 0.6, 50.0, 10.0
    dataset = tmp_path / "data"
    dataset.mkdir()
    truth = trimesh.creation.icosphere(subdivisions=4, radius=radius - level / slope)
    truth.export(dataset / "mesh.ply")
    folder = tmp_path / "duck-mesh"
    mesh_pipeline(_pipeline(RampBall(radius, slope), IDENTITY), folder, NerfMeshOptions(resolution=64, level=level), dataset)
    # A second one at another level: the viewer's colouring must tell them apart.
    mesh_pipeline(_pipeline(RampBall(radius, slope), IDENTITY), tmp_path / "off", NerfMeshOptions(resolution=64, level=12.5), dataset)
    runs = load_runs([folder, tmp_path / "off"])
    assert [run.field_config for run in runs] == [None, None]
    truth_view = ground_truth_of(runs[0])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    viewer = ShapeViewer(server, runs, truth_view, "cpu")
    try:
        viewer.build()
        names = [entry.name for entry in viewer.scene.entries]
        assert names == ["ground truth", "duck-mesh", "off"]
        # Per-vertex distance to the ground truth in the normalised frame (diameter 1): the mesh at the
        # ground truth's level lies on it, the other one (0.05 model units inside, radius 0.35 -> 0.4 wide
        # in the normalised frame: 0.05 / 0.8) is off by a closed-form amount.
        on, off = viewer.scene.entries[1].distances, viewer.scene.entries[2].distances
        assert on.mean() < 2e-3
        assert off.mean() == pytest.approx(0.05 / 0.8, rel=0.1)
        assert "chamfer_l1" in viewer.metric_panels[0].content and not hasattr(viewer, "slice_run")
    finally:
        viewer.close()
        stop_server(server)


@pytest.fixture(scope="module")
def bench():
    """benchmarks/nerf_mesh.py, imported from its file (benchmarks/ is not a package), with its folder on
    sys.path as a benchmark script has it (it imports ``experiments.common``, as tests/benchmarks/conftest.py
    arranges for the tests there)."""
    import importlib.util
    import sys

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("nerf_mesh_benchmark_under_test", ROOT / "benchmarks" / "nerf_mesh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_mesh_benchmark_gives_one_auto_row_per_opacity(bench, trained_run, tmp_path):
    """benchmarks/nerf_mesh.py on a real run: an auto row per asked opacity, each recording it, then the
    fixed levels; its table names the opacity of each auto row."""
    config, _ = trained_run
    run, rows, _ = bench.mesh_levels(config, tmp_path, [None, 1.0], 32, opacities=[0.1, 0.5])
    assert [(r["level_method"], (r["auto_level"] or {}).get("opacity")) for r in rows] == [
        ("auto", 0.1), ("auto", 0.5), ("fixed", None)]
    assert rows[2]["level"] == 1.0 and all(r["level"] > 0 for r in rows)
    _, default_rows, _ = bench.mesh_levels(config, tmp_path / "default", [None], 32, smooths=[0.0, 0.02])
    assert [r["auto_level"]["opacity"] for r in default_rows] == [DEFAULT_AUTO_OPACITY, DEFAULT_SMOOTHED_AUTO_OPACITY]
    table = bench.markdown({"rows": rows, "run": run})
    assert "| nerf-mesh, 32^3 | auto (opacity 0.1) = " in table and "| nerf-mesh, 32^3 | 1 |" in table
    assert all(r["fill_interior"] for r in rows)


def test_the_mesh_benchmark_runs_every_level_with_and_without_the_interior_fill(bench, trained_run, tmp_path):
    config, _ = trained_run
    run, rows, _ = bench.mesh_levels(config, tmp_path, [None, 1.0], 32, fills=[True, False])
    assert [(r["fill_interior"], r["level_method"]) for r in rows] == [
        (True, "auto"), (True, "fixed"), (False, "auto"), (False, "fixed")]
    assert rows[0]["interior_fill"] is not None and rows[2]["interior_fill"] is None
    table = bench.markdown({"rows": rows, "run": run}).splitlines()
    assert [line.startswith("| nerf-mesh, 32^3, --no-fill-interior |") for line in table[2:6]] == [False, False, True, True]


def test_the_mesh_benchmark_keeps_an_existing_output_and_names_a_missing_config(bench, tmp_path, capsys):
    output = tmp_path / "mesh.json"
    output.write_text("{}")
    assert bench.main([str(tmp_path / "config.yml"), "--output", str(output)]) == 2
    assert output.read_text() == "{}" and "--overwrite" in capsys.readouterr().err
    assert bench.main([str(tmp_path / "config.yml"), "--output", str(output), "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "config.yml: no such file" in error


def test_the_mesh_benchmark_names_a_bad_option_in_one_line(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main([str(tmp_path / "config.yml"), "--output", str(tmp_path / "m.json"), "--poisson-crop", "bogus"])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.count("\n") == 1 and "--poisson-crop: invalid choice: 'bogus'" in error


def test_the_poisson_crop_is_nerfstudios_oriented_box_over_the_scene_box(bench, tmp_path):
    """--poisson-crop box passes the scene box as ns-export's --obb-* flags: parsed by ns-export's own
    Poisson exporter, they give an oriented box that holds the box's corners and centre and nothing just
    outside a face; without a crop no --obb flag is passed (ns-export's default: no crop)."""
    import tyro
    from nerfstudio.data.scene_box import OrientedBox
    from nerfstudio.scripts.exporter import ExportPoissonMesh

    box = np.array([[-1.0, -0.5, 0.0], [1.0, 1.5, 3.0]])
    command = bench.poisson_command(tmp_path / "config.yml", tmp_path / "out", 1000, box)
    exporter = tyro.cli(ExportPoissonMesh, args=command[2:])
    assert exporter.num_points == 1000 and exporter.load_config == tmp_path / "config.yml"
    obb = OrientedBox.from_params(exporter.obb_center, exporter.obb_rotation, exporter.obb_scale)
    corners = torch.tensor([[x, y, z] for x in box[:, 0] for y in box[:, 1] for z in box[:, 2]], dtype=torch.float32)
    inside = torch.cat([corners * 0.999 + torch.tensor(box.mean(0), dtype=torch.float32) * 0.001,
                        torch.tensor(box.mean(0), dtype=torch.float32)[None]])
    outside = torch.tensor(box.mean(0), dtype=torch.float32).repeat(6, 1)
    for axis in range(3):
        outside[2 * axis, axis], outside[2 * axis + 1, axis] = box[0, axis] - 0.01, box[1, axis] + 0.01
    assert obb.within(inside).all() and not obb.within(outside).any()
    plain = bench.poisson_command(tmp_path / "config.yml", tmp_path / "out", 1000)
    assert not any(flag.startswith("--obb") for flag in plain)
    assert tyro.cli(ExportPoissonMesh, args=plain[2:]).obb_center is None


def test_the_mesh_table_names_a_cropped_poisson_row(bench):
    row = {"mesh": "ns-export poisson", "num_points": 50000, "chamfer_l1": 0.02, "chamfer_l2": 0.001,
           "normal_consistency": 0.8, "fscore": 0.5, "faces": 1000}
    run = {"method": "sine-nerf-lite", "model_parameters": 12916, "checkpoint": "step-000002299.ckpt"}
    table = bench.markdown({"rows": [row, {**row, "crop": "scene box"}], "run": run}).splitlines()
    assert table[2].startswith("| ns-export poisson (50,000 points) | n/a | 0.0200 |")
    assert table[3].startswith("| ns-export poisson (50,000 points, cropped to the scene box) | n/a | 0.0200 |")
