"""Scene rendering: closed-form silhouettes, texture lookup, dataset layout, errors, the CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import trimesh
from PIL import Image

from sine_fields.cli import main as cli_main
from sine_fields.data import scenes
from sine_fields.data.scenes import RenderOptions, SceneError, look_at, render_scene, render_view


def _coloured_sphere(path):
    """A unit icosphere with a constant vertex colour, saved as PLY (colours survive the file)."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    sphere.visual.vertex_colors = np.tile([200, 100, 50, 255], (len(sphere.vertices), 1))
    sphere.export(path)
    return path


def test_sphere_silhouette_matches_closed_form(tmp_path):
    # A sphere of radius 1 (longest side 2 after normalising) seen from distance 4 covers a disc of
    # angular radius asin(1/4); its area in pixels is pi (f tan(asin(1/4)))^2.
    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    scene = render_scene(str(mesh_file), tmp_path / "out", RenderOptions(views=6, resolution=48, eval_every=3, up="z"))
    focal = scene["focal_px"]
    # the icosphere is inscribed in the unit sphere, so its silhouette is slightly smaller
    expected = math.pi * (focal * math.tan(math.asin(1 / 4))) ** 2 / 48**2
    assert scene["mean_coverage"] == pytest.approx(expected, rel=0.05)
    assert scene["bounding_radius"] == pytest.approx(1.0, abs=1e-6)


def test_dataset_layout_and_split(tmp_path):
    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    out = tmp_path / "out"
    render_scene(str(mesh_file), out, RenderOptions(views=10, resolution=16, eval_every=4, up="z"))
    meta = json.loads((out / "transforms.json").read_text())
    names = [f["file_path"] for f in meta["frames"]]
    assert len(names) == 10
    assert set(meta["train_filenames"]).isdisjoint(meta["val_filenames"])
    assert sorted(meta["train_filenames"] + meta["val_filenames"]) == sorted(names)
    assert meta["val_filenames"] == meta["test_filenames"] == ["images/frame_00002.png", "images/frame_00006.png"]
    for name in names:
        image = np.asarray(Image.open(out / name))
        assert image.shape == (16, 16, 4)
        # the object is centred: the middle pixel is covered, the corners are background
        assert image[8, 8, 3] == 255 and image[0, 0, 3] == 0
    for frame in meta["frames"]:
        pose = np.asarray(frame["transform_matrix"])
        # OpenGL: the camera's -z axis points from its centre to the origin
        forward = -pose[:3, 2]
        assert np.allclose(forward, -pose[:3, 3] / np.linalg.norm(pose[:3, 3]))
    ground_truth = trimesh.load(out / "mesh.ply")
    assert np.ptp(ground_truth.vertices, axis=0).max() == pytest.approx(2.0)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_vertex_colour_and_lambert_shading(tmp_path):
    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    out = tmp_path / "out"
    render_scene(str(mesh_file), out, RenderOptions(views=4, resolution=24, eval_every=2, up="z"))
    image = np.asarray(Image.open(out / "images/frame_00000.png")).astype(float) / 255
    covered = image[..., 3] == 1
    albedo = np.array([200, 100, 50]) / 255
    shade = image[covered][:, :3] / albedo
    # every channel carries the same shade, between ambient only and ambient + key light
    assert np.allclose(shade, shade[:, :1], atol=0.03)
    assert shade.min() >= scenes.AMBIENT - 0.03 and shade.max() <= scenes.AMBIENT + scenes.KEY + 0.03


def test_texture_lookup_on_a_textured_quad():
    # A 2 x 2 quad at z = 0 with a 2 x 2 texture; uv = ((x + 1) / 2, (y + 1) / 2).
    vertices = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = (vertices[:, :2] + 1) / 2
    texels = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(texels), diffuse=[255, 255, 255, 255])
    quad = trimesh.Trimesh(vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False)
    pose = np.eye(4)
    pose[2, 3] = 4.0  # looking down -z at the quad, y up
    # focal 12 at 16 px: pixel centres 6.5 and 9.5 hit x, y = -0.5 and 0.5, the four texel centres
    image = render_view(quad, pose, focal=12.0, resolution=16, supersample=1)
    lit = scenes.AMBIENT + scenes.KEY * scenes.KEY_LIGHT[2]  # one normal (+z) under the key light
    colours = {(6, 6): [1, 0, 0], (6, 9): [0, 1, 0], (9, 6): [0, 0, 1], (9, 9): [1, 1, 1]}
    for (row, col), expected in colours.items():
        assert image[row, col, 3] == 1
        assert np.allclose(image[row, col, :3], np.array(expected) * lit, atol=0.01), (row, col, image[row, col])


def test_look_at_centres_the_origin():
    pose = look_at(np.array([1.0, -2.0, 3.0]))
    assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3))
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
    # the world's z axis projects upwards in the image (camera y component positive)
    assert (pose[:3, :3].T @ [0, 0, 1])[1] > 0


def test_refuses_to_overwrite_and_replaces_when_asked(tmp_path):
    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    out = tmp_path / "out"
    options = RenderOptions(views=4, resolution=8, eval_every=2, up="z")
    render_scene(str(mesh_file), out, options)
    (out / "mine.txt").write_text("user file")
    with pytest.raises(SceneError, match="--overwrite"):
        render_scene(str(mesh_file), out, options)
    assert (out / "mine.txt").exists()
    render_scene(str(mesh_file), out, options, overwrite=True)
    assert not (out / "mine.txt").exists() and (out / "transforms.json").exists()


@pytest.mark.parametrize(
    "changes, message",
    [({"views": 1}, "views"), ({"radius": 1.0}, "radius"), ({"eval_every": 1}, "eval_every"), ({"resolution": 2}, "resolution")],
)
def test_bad_options_are_user_errors(tmp_path, changes, message):
    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    options = RenderOptions(**{"views": 4, "resolution": 8, "eval_every": 2, "up": "z", **changes})
    with pytest.raises(SceneError, match=message):
        render_scene(str(mesh_file), tmp_path / "out", options)


def test_cli_writes_a_dataset_and_reports_mistakes_in_one_line(tmp_path, capsys):
    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    out = tmp_path / "cli"
    assert cli_main(["data", "scene", str(mesh_file), "--output", str(out), "--views", "4", "--resolution", "8",
                     "--eval-every", "2", "--up", "z"]) == 0
    assert (out / "transforms.json").exists()
    assert cli_main(["data", "scene", str(tmp_path / "missing.ply"), "--output", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "missing.ply" in error and "\n" not in error


def test_blender_layout_loads_with_nerfstudios_blender_parser(tmp_path):
    # nerfstudio's stock blender-data parser, with no options but the folder, reads the same cameras
    # and images as the nerfstudio-format transforms.json beside it.
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    mesh_file = _coloured_sphere(tmp_path / "sphere.ply")
    out = tmp_path / "out"
    scene = render_scene(str(mesh_file), out, RenderOptions(views=10, resolution=16, eval_every=4, up="z"))
    meta = json.loads((out / "transforms.json").read_text())
    poses = {f["file_path"]: np.asarray(f["transform_matrix"]) for f in meta["frames"]}
    parser = BlenderDataParserConfig(data=out).setup()
    for split, names in (("train", meta["train_filenames"]), ("val", meta["val_filenames"]), ("test", meta["test_filenames"])):
        outputs = parser.get_dataparser_outputs(split=split)
        assert [str(p.relative_to(out)) for p in outputs.image_filenames] == names
        cameras = outputs.cameras
        assert np.allclose(cameras.fx.numpy(), scene["focal_px"], rtol=1e-5)
        assert float(cameras.cx[0]) == float(cameras.cy[0]) == 8.0
        assert int(cameras.width[0]) == int(cameras.height[0]) == 16
        expected = np.stack([poses[name][:3] for name in names])
        assert np.allclose(cameras.camera_to_worlds.numpy(), expected, atol=1e-6)


def test_render_matches_a_closed_form_ray_sphere_hit(tmp_path):
    # One pixel through the centre of a sphere of radius 1 seen from z = 4 hits at the pole (normal +z):
    # its shade is ambient + key * key_light_z, whatever the ray caster's triangle order.
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    sphere.visual.vertex_colors = np.tile([255, 255, 255, 255], (len(sphere.vertices), 1))
    pose = np.eye(4)
    pose[2, 3] = 4.0
    image = render_view(sphere, pose, focal=20.0, resolution=9, supersample=1)
    assert image[4, 4, 3] == 1 and image[0, 0, 3] == 0
    expected = scenes.AMBIENT + scenes.KEY * scenes.KEY_LIGHT[2]
    assert np.allclose(image[4, 4, :3], expected, atol=0.01)


def test_parts_keep_their_own_textures(tmp_path):
    # Two quads side by side, one red and one blue texture: a file with two materials loads as two
    # parts, and each pixel takes its colour from its own part's texture.
    def quad(x0, colour):
        vertices = np.array([[x0, -1, 0], [x0 + 1, -1, 0], [x0 + 1, 1, 0], [x0, 1, 0]], dtype=float)
        uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
        texels = np.tile(np.array(colour, dtype=np.uint8), (2, 2, 1))
        material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(texels), diffuse=[255, 255, 255, 255])
        visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        return trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], visual=visual, process=False)

    parts = [quad(-1.0, [255, 0, 0]), quad(0.0, [0, 0, 255])]
    pose = np.eye(4)
    pose[2, 3] = 4.0
    image = render_view(parts, pose, focal=12.0, resolution=16, supersample=1)
    lit = scenes.AMBIENT + scenes.KEY * scenes.KEY_LIGHT[2]
    assert np.allclose(image[8, 5, :3], [lit, 0, 0], atol=0.01)
    assert np.allclose(image[8, 10, :3], [0, 0, lit], atol=0.01)


def test_data_list_names_every_scene():
    rows = dict(scenes.describe_scenes())
    assert set(rows) == set(scenes.SCENES) >= {"duck", "spider"}
    assert all("sine-fields data scene" in text for text in rows.values())


@pytest.mark.skipif(
    not scenes.duck_is_cached(),
    reason="the Duck is not in the cache (.ci/setup fetches it; or `sine-fields data scene duck --output DIR`)",
)
def test_duck_renders_textured(tmp_path):
    scene = render_scene("duck", tmp_path / "duck", RenderOptions(views=4, resolution=24, eval_every=2))
    image = np.asarray(Image.open(tmp_path / "duck/images/frame_00001.png")).astype(float)
    covered = image[..., 3] == 255
    # a yellow duck: red and green well above blue wherever it is seen
    assert covered.sum() > 20
    assert np.median(image[covered][:, 0] - image[covered][:, 2]) > 60
    assert scene["mesh_sha256"] and os.path.exists(scene["mesh_file"])


@pytest.mark.skipif(
    not scenes.scene_is_cached("spider"),
    reason="the spider is not in the cache (.ci/setup fetches it; or `sine-fields data scene spider --output DIR`)",
)
def test_spider_renders_its_textured_parts(tmp_path):
    scene = render_scene("spider", tmp_path / "spider", RenderOptions(views=4, resolution=48, eval_every=2))
    assert scene["parts"] == 4 and scene["faces"] == 1368
    image = np.asarray(Image.open(tmp_path / "spider/images/frame_00001.png")).astype(float)
    covered = image[..., 3] > 0
    # thin legs: the spider covers little of the image for its size, and its textures are dark and varied
    assert 0.02 < covered.mean() < 0.3
    assert np.median(image[covered][:, :3]) < 120 and image[covered][:, :3].std() > 10
    ground_truth = trimesh.load(tmp_path / "spider/mesh.ply")
    assert len(ground_truth.faces) == 1368
