"""Render a coloured or textured mesh into a posed multi-view dataset, in two layouts at once.

``sine-fields data scene duck --output DIR --views N --resolution R`` writes::

    DIR/transforms.json          nerfstudio format: OpenGL camera-to-world poses, pinhole intrinsics,
                                 train_filenames / val_filenames / test_filenames (the split)
    DIR/transforms_train.json    the Blender-synthetic layout of the same split (camera_angle_x, frames
    DIR/transforms_val.json      whose file_path has no extension), so that nerfstudio's stock
    DIR/transforms_test.json     ``blender-data`` parser reads the folder with no flags
    DIR/images/frame_#####.png   RGBA, alpha = pixel coverage (supersampled), straight (not premultiplied)
    DIR/mesh.ply                 the ground-truth mesh in the same world frame as the cameras
    DIR/scene.json               how it was made: source, sha256, options, frame, timings

World frame (Blender-synthetic-like, so that nerfstudio's vanilla-nerf defaults fit): z is up, the
object is centred with the longest side of its bounding box = 2 (it lies in [-1, 1]^3, nerfstudio's
default scene box), cameras look at the origin from ``radius`` (default 4: every surface point lies
between depth 2 and 6, vanilla-nerf's near/far planes). Both parsers keep this frame: ``blender-data``
always does; ``nerfstudio-data`` does with ``--orientation-method none --center-method none
--auto-scale-poses False`` (our methods' defaults).

Named scenes (``SCENES``, fetched once from Debian's ``assimp-testmodels``): ``duck`` (a smooth
textured body, one 512 px texture) and ``spider`` (thin legs, four tiled textures): different
characters for a radiance field. Any mesh file trimesh reads works too.

Shading is view-independent on purpose (Lambert under two fixed world lights, no specular), so the
scene is a well-posed radiance field. Rays are cast with open3d's ``RaycastingScene`` (Embree).
Imports numpy, trimesh, open3d, Pillow, the standard library and ``data/``; the CLI function ``main``
alone also imports the CLI's ``UserError`` (and reads tyro's ``Positional`` marker if present).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import trimesh
from PIL import Image
from trimesh.resolvers import FilePathResolver

from sine_fields.data.debian import cached_members, debian_members, debian_package
from sine_fields.data.recipes import DataError, sha256_of

try:  # only the CLI reads this marker; the library functions never need tyro
    from tyro.conf import Positional
except ImportError:  # pragma: no cover

    class Positional:  # type: ignore[no-redef]
        def __class_getitem__(cls, item):
            return item


__all__ = [
    "SCENES",
    "NamedScene",
    "RenderOptions",
    "camera_positions",
    "describe_scenes",
    "duck_is_cached",
    "fetch_scene",
    "look_at",
    "load_scene_mesh",
    "load_scene_parts",
    "render_scene",
    "render_view",
    "scene_is_cached",
]

# The named scenes are sample models shipped in Debian's assimp-testmodels (assimp's test suite).
ASSIMP_TESTMODELS = debian_package(
    "assimp-testmodels", "5.2.5~ds0-1", "526f326186000cd6f631ea806128548a7d3d391abd8149fddc5c4c8513e80b8a"
)
_MODELS = "usr/share/assimp/models/"


@dataclass(frozen=True)
class NamedScene:
    """A scene name's source: package members unpacked side by side (a model file first, then the
    textures it names by relative path)."""

    description: str
    members: tuple[str, ...]


SCENES: dict[str, NamedScene] = {
    "duck": NamedScene(
        "textured Duck: one smooth closed body, 2,108 vertices, one 512 px texture (Debian assimp-testmodels, "
        "models/Collada/duck.dae)",
        (_MODELS + "Collada/duck.dae", _MODELS + "Collada/duckCM.tga"),
    ),
    "spider": NamedScene(
        "textured spider: eight thin legs and tiled wood, stone and eye textures, 1,368 faces in four parts "
        "(Debian assimp-testmodels, models/OBJ/spider.obj)",
        tuple(
            _MODELS + "OBJ/" + name
            for name in (
                "spider.obj",
                "spider.mtl",
                "wal67ar_small.jpg",
                "wal69ar_small.jpg",
                "SpiderTex.jpg",
                "drkwood2.jpg",
                "engineflare1.jpg",
            )
        ),
    ),
}

# Object size in the world frame: longest bounding-box side 2, i.e. inside [-1, 1]^3.
OBJECT_SIZE = 2.0
# Two fixed world lights (key from above, weak fill from below) plus ambient: every visible surface
# is lit, and the colour of a point does not depend on the view.
KEY_LIGHT = np.array([0.4, 0.3, 1.0]) / np.linalg.norm([0.4, 0.3, 1.0])
AMBIENT, KEY, FILL = 0.35, 0.55, 0.15
DEFAULT_GREY = 0.7
# Field-of-view margin around the object's bounding sphere.
FOV_MARGIN = 1.08


class SceneError(ValueError):
    """A mistake in the scene request (bad option, unreadable mesh, output that exists)."""


@dataclass
class RenderOptions:
    """How a scene is rendered; saved in ``scene.json``."""

    views: int = 100
    """Number of cameras (train and eval together)."""
    resolution: int = 128
    """Image width and height in pixels."""
    cameras: Literal["sphere", "hemisphere"] = "sphere"
    """Cameras on the whole sphere (every side seen) or the upper hemisphere (Blender-synthetic style)."""
    radius: float = 4.0
    """Camera distance from the object's centre (object longest side = 2)."""
    eval_every: int = 8
    """Every eval_every-th view (offset eval_every // 2) is held out for evaluation."""
    supersample: int = 2
    """Rays per pixel along each axis (antialiasing; alpha is the covered fraction)."""
    up: Literal["x", "y", "z"] = "y"
    """The mesh file's up axis (COLLADA's Duck is Y_UP); it becomes the world's z."""

    def check(self) -> None:
        if self.views < 2:
            raise SceneError(f"views must be >= 2 (at least one train and one eval view), got {self.views}")
        if self.resolution < 4:
            raise SceneError(f"resolution must be >= 4 pixels, got {self.resolution}")
        if not 2 <= self.eval_every <= self.views:
            raise SceneError(f"eval_every must be between 2 and views={self.views}, got {self.eval_every}")
        if self.supersample < 1:
            raise SceneError(f"supersample must be >= 1, got {self.supersample}")
        if self.cameras not in ("sphere", "hemisphere"):
            raise SceneError(f"cameras must be sphere or hemisphere, got {self.cameras!r}")
        if self.up not in ("x", "y", "z"):
            raise SceneError(f"up must be x, y or z, got {self.up!r}")
        if not math.isfinite(self.radius) or self.radius <= 0:
            raise SceneError(f"radius must be a positive number, got {self.radius}")


def scene_is_cached(name: str) -> bool:
    """True when a named scene's files are already unpacked in the cache (nothing is fetched)."""
    return cached_members(ASSIMP_TESTMODELS, list(SCENES[name].members)) is not None


def duck_is_cached() -> bool:
    """True when the Duck's files are already unpacked in the cache (nothing is fetched)."""
    return scene_is_cached("duck")


def fetch_scene(name: str) -> Path:
    """The model file of a named scene, fetched and unpacked into the cache once (``DataError`` when
    the package cannot be fetched, ``SceneError`` for an unknown name)."""
    if name not in SCENES:
        raise SceneError(f"unknown scene {name!r}; named scenes: {', '.join(SCENES)}")
    return debian_members(ASSIMP_TESTMODELS, list(SCENES[name].members))[0]


def describe_scenes() -> list[tuple[str, str]]:
    """``(name, description)`` rows for ``sine-fields data list`` (fetches nothing)."""
    return [
        (name, f"{scene.description}; cached: {scene_is_cached(name)}; render with `sine-fields data scene {name}`")
        for name, scene in SCENES.items()
    ]


def resolve_source(source: str) -> tuple[Path, str]:
    """``(mesh file, description)`` for a scene name (fetched into the cache once) or a mesh path."""
    if source in SCENES:
        return fetch_scene(source), SCENES[source].description
    path = Path(source).expanduser()
    if not path.is_file():
        raise SceneError(f"scene {source!r} is neither a known name ({', '.join(SCENES)}) nor a mesh file")
    return path, f"mesh file {path}"


class _PortableResolver(FilePathResolver):
    """Finds files a model names with Windows separators (the spider's ``map_Kd .\\drkwood2.jpg``)."""

    def get(self, name: str) -> bytes:
        return super().get(name.replace("\\", "/"))


def load_scene_parts(path: Path) -> list[trimesh.Trimesh]:
    """The triangle meshes of a file, each with its own colours (texture, vertex or face colours).

    A file with several materials (the spider) loads as several parts: they are kept apart, not
    merged, so that each keeps its own texture and its uv coordinates may repeat outside [0, 1].
    The scene graph's transforms are applied.
    """
    try:
        loaded = trimesh.load(path, process=False, resolver=_PortableResolver(str(path)))
    except Exception as error:  # trimesh raises many types for a corrupt file; report it on one line
        raise SceneError(f"{path}: cannot read mesh ({type(error).__name__}: {str(error).splitlines()[:1]})") from None
    if isinstance(loaded, trimesh.Scene):
        parts = []
        for node in loaded.graph.nodes_geometry:
            transform, geometry_name = loaded.graph[node]
            geometry = loaded.geometry[geometry_name]
            if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
                parts.append(geometry.copy().apply_transform(transform))
    else:
        parts = [loaded] if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) else []
    if not parts:
        raise SceneError(f"{path}: holds no triangles")
    vertices = np.concatenate([part.vertices for part in parts])
    if not np.all(np.isfinite(vertices)) or float(np.ptp(vertices, axis=0).max()) <= 0:
        raise SceneError(f"{path}: vertices are not finite or span no volume")
    return parts


def load_scene_mesh(path: Path) -> trimesh.Trimesh:
    """All parts of a file as one triangle mesh (geometry only; colours stay with ``load_scene_parts``)."""
    parts = load_scene_parts(path)
    return _geometry(parts)


def _geometry(parts: Sequence[trimesh.Trimesh]) -> trimesh.Trimesh:
    """The parts' triangles in one mesh, faces in part order (no colours, nothing merged or removed)."""
    offsets = np.cumsum([0] + [len(part.vertices) for part in parts])
    vertices = np.concatenate([part.vertices for part in parts])
    faces = np.concatenate([part.faces + offset for part, offset in zip(parts, offsets)])
    return trimesh.Trimesh(vertices, faces, process=False)


def to_world_frame(mesh: trimesh.Trimesh, up: str) -> np.ndarray:
    """The ``(4, 4)`` transform taking file coordinates to the world frame (z up, centred, longest side 2).

    ``mesh`` is any mesh holding the file's vertices (only they are read)."""
    # Rotations taking the file's up axis to +z, right-handed.
    rotations = {
        "z": np.eye(3),
        "y": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
        "x": np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    }
    rotate = rotations[up]
    points = mesh.vertices @ rotate.T
    low, high = points.min(axis=0), points.max(axis=0)
    scale = OBJECT_SIZE / float((high - low).max())
    transform = np.eye(4)
    transform[:3, :3] = scale * rotate
    transform[:3, 3] = -scale * (low + high) / 2
    return transform


def camera_positions(views: int, radius: float, cameras: str) -> np.ndarray:
    """``(views, 3)`` camera centres spread evenly (Fibonacci lattice) on a sphere or upper hemisphere.

    No camera sits exactly on the z axis, where the look-at frame (world z up) is undefined.
    """
    i = np.arange(views) + 0.5
    if cameras == "sphere":
        z = 1 - 2 * i / views
    else:
        # Elevation from about 5 degrees up to near the pole: every camera sees the object from above.
        z = 0.08 + 0.9 * i / views
    azimuth = i * math.pi * (3 - math.sqrt(5))  # golden angle
    ring = np.sqrt(1 - z**2)
    return radius * np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)


def look_at(position: np.ndarray) -> np.ndarray:
    """``(4, 4)`` camera-to-world matrix (OpenGL: camera looks along -z, y up) looking at the origin."""
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, -forward, position
    return pose


def _texture_lookup(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, repeating lookup of ``(H, W, 3)`` float texture at ``(n, 2)`` uv (v up) -> ``(n, 3)``."""
    height, width = image.shape[:2]
    x = (uv[:, 0] % 1.0) * width - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * height - 0.5  # image rows run downwards, v runs upwards
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1, y0, y1 = x0 % width, (x0 + 1) % width, y0 % height, (y0 + 1) % height
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _material_texture(mesh: trimesh.Trimesh) -> tuple[np.ndarray | None, np.ndarray]:
    """``(texture (H, W, 3) float or None, colour factor (3,))`` of a textured mesh."""
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    factor = getattr(material, "baseColorFactor", None)
    if factor is None:
        factor = getattr(material, "diffuse", None)
    factor = np.ones(3) if factor is None else np.asarray(factor, dtype=np.float64)[:3] / 255.0
    if image is None:
        return None, factor
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels[:, :, :3], factor


def surface_albedo(mesh: trimesh.Trimesh, faces: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
    """Base colour ``(n, 3)`` in [0, 1] at points given by face index ``(n,)`` and barycentrics ``(n, 3)``."""
    visual = mesh.visual
    if visual.kind == "texture" and getattr(visual, "uv", None) is not None:
        texture, factor = _material_texture(mesh)
        if texture is None:
            return np.broadcast_to(factor, (len(faces), 3)).copy()
        uv = np.einsum("nk,nkc->nc", barycentric, visual.uv[mesh.faces[faces]])
        return _texture_lookup(texture, uv) * factor
    if visual.kind == "vertex":
        colours = visual.vertex_colors[:, :3].astype(np.float64) / 255.0
        return np.einsum("nk,nkc->nc", barycentric, colours[mesh.faces[faces]])
    if visual.kind == "face":
        return visual.face_colors[faces, :3].astype(np.float64) / 255.0
    return np.full((len(faces), 3), DEFAULT_GREY)


class SceneGeometry:
    """Parts of a scene in the world frame, with one open3d ``RaycastingScene`` over all of their
    triangles (built once, cast for every view). Face ``i`` of ``geometry`` belongs to part
    ``part_of_face[i]`` and is face ``i - face_offsets[part]`` of that part."""

    def __init__(self, parts: trimesh.Trimesh | Sequence[trimesh.Trimesh]) -> None:
        import open3d as o3d  # heavy import, needed only to render

        self.parts = [parts] if isinstance(parts, trimesh.Trimesh) else list(parts)
        self.geometry = _geometry(self.parts)
        self.face_offsets = np.cumsum([0] + [len(part.faces) for part in self.parts])
        self.vertex_normals = np.asarray(self.geometry.vertex_normals)
        self.raycaster = o3d.t.geometry.RaycastingScene()
        self.raycaster.add_triangles(
            o3d.core.Tensor(self.geometry.vertices.astype(np.float32)),
            o3d.core.Tensor(self.geometry.faces.astype(np.uint32)),
        )

    def first_hits(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rays (m,), faces (m,), barycentric (m, 3))`` of the rays ``(n, 3)`` that hit, at their first hit."""
        import open3d as o3d

        rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
        result = self.raycaster.cast_rays(o3d.core.Tensor(rays))
        distance = result["t_hit"].numpy()
        hit = np.flatnonzero(np.isfinite(distance))
        faces = result["primitive_ids"].numpy()[hit].astype(np.int64)
        # open3d's (u, v) weigh the triangle's second and third vertex: p = (1 - u - v) a + u b + v c.
        uv = result["primitive_uvs"].numpy()[hit].astype(np.float64)
        barycentric = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        return hit, faces, barycentric

    def albedo(self, faces: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        """Base colour ``(m, 3)`` at hits given by face of ``geometry`` ``(m,)`` and barycentrics ``(m, 3)``."""
        colours = np.empty((len(faces), 3))
        part_of_face = np.searchsorted(self.face_offsets, faces, side="right") - 1
        for index, part in enumerate(self.parts):
            mine = part_of_face == index
            if mine.any():
                colours[mine] = surface_albedo(part, faces[mine] - self.face_offsets[index], barycentric[mine])
        return colours


def render_view(
    scene: trimesh.Trimesh | Sequence[trimesh.Trimesh] | SceneGeometry,
    pose: np.ndarray,
    focal: float,
    resolution: int,
    supersample: int,
) -> np.ndarray:
    """Render one ``(resolution, resolution, 4)`` float RGBA image in [0, 1] (straight alpha).

    Args:
        scene: the mesh, its parts, or a ``SceneGeometry`` built once for many views, in the world frame.
        pose: ``(4, 4)`` OpenGL camera-to-world matrix.
        focal: focal length in pixels (principal point at the image centre).
        resolution: width = height in pixels.
        supersample: rays per pixel along each axis.
    """
    if not isinstance(scene, SceneGeometry):
        scene = SceneGeometry(scene)
    n = resolution * supersample
    # Sub-pixel ray positions; their mean is the pixel centre (nerfstudio casts through +0.5).
    coords = (np.arange(n) + 0.5) / supersample
    cols, rows = np.meshgrid(coords, coords)
    centre = resolution / 2
    directions_cam = np.stack([(cols - centre) / focal, -(rows - centre) / focal, -np.ones_like(cols)], axis=-1)
    directions = directions_cam.reshape(-1, 3) @ pose[:3, :3].T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origins = np.broadcast_to(pose[:3, 3], directions.shape)
    rays, faces, barycentric = scene.first_hits(origins, directions)
    rgb = np.zeros((n * n, 3))
    hit = np.zeros(n * n)
    if len(rays):
        triangles = scene.geometry.faces[faces]
        normals = np.einsum("nk,nkc->nc", barycentric, scene.vertex_normals[triangles])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        # Light the side facing the camera (open meshes and flipped faces are seen from both sides).
        normals[np.einsum("nc,nc->n", normals, directions[rays]) > 0] *= -1
        cosine = normals @ KEY_LIGHT
        shade = AMBIENT + KEY * np.maximum(cosine, 0) + FILL * np.maximum(-cosine, 0)
        rgb[rays] = scene.albedo(faces, barycentric) * shade[:, None]
        hit[rays] = 1.0
    # Average the sub-pixel rays: coverage -> alpha, mean colour of the covered ones -> rgb.
    rgb = rgb.reshape(resolution, supersample, resolution, supersample, 3).sum(axis=(1, 3))
    coverage = hit.reshape(resolution, supersample, resolution, supersample).sum(axis=(1, 3))
    alpha = coverage / supersample**2
    rgb = np.where(coverage[..., None] > 0, rgb / np.maximum(coverage[..., None], 1), 0.0)
    return np.concatenate([np.clip(rgb, 0, 1), alpha[..., None]], axis=-1)


def save_png(path: Path, rgba: np.ndarray) -> None:
    """Write ``(H, W, 4)`` float RGBA in [0, 1] as an 8-bit RGBA PNG."""
    pixels = np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGBA").save(path)


def blender_transforms(frames: list[dict], names: list[str], focal: float, resolution: int) -> dict:
    """The Blender-synthetic ``transforms_<split>.json`` of the frames named ``names``.

    nerfstudio's ``blender-data`` parser reads ``camera_angle_x`` (horizontal field of view; the
    principal point is the image centre) and each frame's ``file_path`` without its extension (it
    appends ``.png``), and takes the image size from the first image.
    """
    chosen = set(names)
    return {
        "camera_angle_x": 2 * math.atan(resolution / 2 / focal),
        "frames": [
            {"file_path": "./" + frame["file_path"].removesuffix(".png"), "transform_matrix": frame["transform_matrix"]}
            for frame in frames
            if frame["file_path"] in chosen
        ],
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def render_scene(source: str, output: Path, options: RenderOptions, overwrite: bool = False) -> dict:
    """Render ``source`` (a scene name or mesh path) into a dataset folder ``output`` (nerfstudio and
    Blender layouts, see the module docstring).

    The folder is assembled in a temporary sibling and renamed into place, so an interrupted run
    leaves nothing half-written. Returns the contents of ``scene.json``.
    """
    options.check()
    output = Path(output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise SceneError(f"{output} exists and is not empty; pass --overwrite to replace it")
    started = time.perf_counter()
    path, description = resolve_source(source)
    parts = load_scene_parts(path)
    transform = to_world_frame(_geometry(parts), options.up)
    for part in parts:
        part.apply_transform(transform)
    world = SceneGeometry(parts)
    mesh = world.geometry
    bounding_radius = float(np.linalg.norm(mesh.vertices, axis=1).max())
    if options.radius <= bounding_radius * 1.05:
        raise SceneError(
            f"radius {options.radius} puts cameras inside or on the object (bounding radius {bounding_radius:.3f})"
        )
    half_fov = min(math.asin(bounding_radius / options.radius) * FOV_MARGIN, math.radians(80))
    focal = options.resolution / 2 / math.tan(half_fov)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    try:
        (staging / "images").mkdir()
        frames, train, evaluation, coverage = [], [], [], []
        for index, position in enumerate(camera_positions(options.views, options.radius, options.cameras)):
            pose = look_at(position)
            rgba = render_view(world, pose, focal, options.resolution, options.supersample)
            name = f"images/frame_{index:05d}.png"
            save_png(staging / name, rgba)
            frames.append({"file_path": name, "transform_matrix": pose.tolist()})
            (evaluation if index % options.eval_every == options.eval_every // 2 else train).append(name)
            coverage.append(float(rgba[..., 3].mean()))
        transforms = {
            "camera_model": "OPENCV",
            "fl_x": focal,
            "fl_y": focal,
            "cx": options.resolution / 2,
            "cy": options.resolution / 2,
            "w": options.resolution,
            "h": options.resolution,
            "frames": frames,
            "train_filenames": train,
            "val_filenames": evaluation,
            "test_filenames": evaluation,
        }
        _write_json(staging / "transforms.json", transforms)
        for split, names in (("train", train), ("val", evaluation), ("test", evaluation)):
            _write_json(staging / f"transforms_{split}.json", blender_transforms(frames, names, focal, options.resolution))
        mesh.export(staging / "mesh.ply")
        scene = {
            "source": source,
            "description": description,
            "mesh_file": str(path),
            "mesh_sha256": sha256_of(path),
            "options": asdict(options),
            "frame": "z up; object centred, longest bounding-box side 2; OpenGL camera-to-world poses",
            "layouts": ["nerfstudio (transforms.json)", "blender (transforms_train/val/test.json)"],
            "parts": len(parts),
            "file_to_world": transform.tolist(),
            "bounding_radius": bounding_radius,
            "depth_range": [options.radius - bounding_radius, options.radius + bounding_radius],
            "focal_px": focal,
            "train_views": len(train),
            "eval_views": len(evaluation),
            "mean_coverage": float(np.mean(coverage)),
            "vertices": int(len(mesh.vertices)),
            "faces": int(len(mesh.faces)),
            "seconds": round(time.perf_counter() - started, 3),
        }
        _write_json(staging / "scene.json", scene)
        if output.exists():
            # Move the old folder aside first so that the new one appears in one rename.
            old = output.parent / f".{output.name}.old-{os.getpid()}"
            os.replace(output, old)
            os.replace(staging, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return scene


def main(
    source: Positional[str],
    output: Path,
    views: int = 100,
    resolution: int = 128,
    cameras: Literal["sphere", "hemisphere"] = "sphere",
    radius: float = 4.0,
    eval_every: int = 8,
    supersample: int = 2,
    up: Literal["x", "y", "z"] = "y",
    overwrite: bool = False,
) -> int:
    """Render a named scene (duck, spider) or a coloured/textured mesh file into a dataset
    that nerfstudio reads with its nerfstudio-data and blender-data parsers.

    Args:
        source: `duck` or `spider` (Debian assimp-testmodels, fetched into the cache once) or a mesh file path.
        output: dataset folder to write (transforms.json, transforms_{train,val,test}.json, images/, mesh.ply, scene.json).
        views: number of cameras, train and eval together.
        resolution: image width and height in pixels.
        cameras: cameras on the whole sphere or the upper hemisphere.
        radius: camera distance from the centre (the object's longest side is 2).
        eval_every: every eval_every-th view is held out for evaluation.
        supersample: rays per pixel along each axis (antialiasing).
        up: the mesh file's up axis; it becomes the world's z.
        overwrite: replace a non-empty output folder.
    """
    from sine_fields.errors import UserError  # the CLI's error type; library callers get SceneError / DataError

    options = RenderOptions(views, resolution, cameras, radius, eval_every, supersample, up)
    try:
        scene = render_scene(source, output, options, overwrite=overwrite)
    except (SceneError, DataError) as error:
        raise UserError(str(error)) from None
    print(
        f"wrote {output}: {scene['train_views']} train + {scene['eval_views']} eval views at "
        f"{resolution}x{resolution}, mesh.ply ({scene['faces']:,} faces), {scene['seconds']:.1f} s"
    )
    return 0
