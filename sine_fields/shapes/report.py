"""Comparing runs: a markdown table, a quality-vs-parameters plot and rendered pictures.

Pictures are ray cast on the CPU with open3d (no display or OpenGL needed): an orthographic camera
that frames the ground truth, Lambert shading of the hit triangle's normal.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import trimesh

from sine_fields.errors import UserError
from sine_fields.io import atomic_write_bytes, atomic_write_text
from sine_fields.shapes.run import ShapeRun

__all__ = ["comparison_table", "load_runs", "plot_quality", "render_mesh", "render_runs", "write_report"]


def load_runs(roots) -> list[ShapeRun]:
    """Open each finished run folder; one without metrics.json is a ``UserError``."""
    if not roots:
        raise UserError("give at least one run folder")
    runs = [ShapeRun.open(root) for root in roots]
    for run in runs:
        run.metrics  # checked now: a table half-written when the third folder fails helps nobody
    return runs


def _describe(run: ShapeRun) -> str:
    s = run.summary
    if s["linear"] == "dense":
        return "dense"
    return f"{s['linear']} k={s['rank']}" + (f" ω={s['omega']:g}" if s["linear"] == "sine" else "")


def comparison_table(runs: list[ShapeRun]) -> str:
    """Markdown table, one row per run, in the order given."""
    header = ("| run | mesh | layers | params | IoU | IoU near | Chamfer-L1 | Chamfer-L2 | normal cons. | F-score | "
              "field queries | fit s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for run in runs:
        m = run.metrics
        lines.append(
            f"| {run.name} | {run.mesh_source} | {_describe(run)} | {m['num_parameters']:,} | {m['iou']:.4f} | "
            f"{m['iou_near_surface']:.4f} | {m['chamfer_l1']:.5f} | {m['chamfer_l2']:.2e} | "
            f"{m['normal_consistency']:.4f} | {m['fscore']:.4f} | {m['field_queries']:,} | "
            f"{m.get('timings', {}).get('fit_seconds', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def _save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure to ``path`` as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_quality(runs: list[ShapeRun], path: Path) -> Path:
    """IoU and Chamfer-L1 against parameter count (log scale): one line per layer kind, points
    labelled by rank; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"dense": ("k", "s"), "lowrank": ("tab:orange", "o"), "sine": ("tab:blue", "^")}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, (color, marker) in styles.items():
        group = sorted(((r, r.metrics) for r in runs if r.summary["linear"] == kind), key=lambda rm: rm[1]["num_parameters"])
        if not group:
            continue
        params = [m["num_parameters"] for _, m in group]
        for ax, key in zip(axes, ("iou", "chamfer_l1")):
            ax.plot(params, [m[key] for _, m in group], marker=marker, color=color, label=kind)
            for (run, m), x in zip(group, params):
                if kind != "dense":
                    ax.annotate(f"k={run.summary['rank']}", (x, m[key]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points", color=color)
    for ax, label in zip(axes, ("IoU (higher is better)", "Chamfer-L1 (lower is better)")):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save_figure(fig, path)


def render_mesh(mesh: trimesh.Trimesh, frame: trimesh.Trimesh, size: int = 320,
                direction=(0.35, 0.5, 1.0)) -> np.ndarray:
    """``(size, size, 3) uint8`` orthographic picture of ``mesh``, framed on ``frame``'s bounding sphere.

    ``direction`` points from the object towards the camera; the light sits at the camera.
    """
    import open3d as o3d

    image = np.full((size, size, 3), 255, dtype=np.uint8)
    if len(mesh.faces) == 0:
        return image
    view = np.asarray(direction, dtype=np.float64)
    view /= np.linalg.norm(view)
    up = np.array([0.0, 1.0, 0.0])
    right = np.cross(up, view)
    right /= np.linalg.norm(right)
    up = np.cross(view, right)
    center = frame.bounds.mean(axis=0)
    radius = float(np.linalg.norm(frame.extents)) / 2 * 1.05
    s = np.linspace(radius, -radius, size)
    rows, cols = np.meshgrid(s, -s, indexing="ij")  # rows go down the image, columns to the right
    origins = center + 2 * radius * view + rows[..., None] * up + cols[..., None] * right
    rays = np.concatenate([origins, np.broadcast_to(-view, origins.shape)], axis=-1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy()
    normals = hit["primitive_normals"].numpy()
    mask = np.isfinite(t)
    # Two-sided Lambert plus ambient: a flipped triangle still shows up rather than going black.
    shade = 0.25 + 0.75 * np.abs((normals * view).sum(-1))
    color = np.array([0.62, 0.72, 0.88])
    image[mask] = (255 * np.clip(shade[mask, None] * color, 0, 1)).astype(np.uint8)
    return image


def render_runs(runs: list[ShapeRun], path: Path, size: int = 320) -> Path:
    """Ground truth then each run's mesh, side by side with titles; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = runs[0].ground_truth_mesh("original")
    meshes = [("ground truth", truth)]
    for run in runs:
        metrics = run.metrics
        meshes.append((f"{_describe(run)}\nIoU {metrics['iou']:.3f}, {metrics['num_parameters']:,} params",
                       run.mesh("original")))
    fig, axes = plt.subplots(1, len(meshes), figsize=(3 * len(meshes), 3.4))
    for ax, (title, mesh) in zip(np.atleast_1d(axes), meshes):
        ax.imshow(render_mesh(mesh, truth, size))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return _save_figure(fig, path)


def write_report(runs: list[ShapeRun], folder: Path, title: str = "sine-fields shape report", command: str = "") -> Path:
    """``folder/report.md`` with the table, ``quality.png`` and ``renders.png``."""
    folder = Path(folder)
    plot_quality(runs, folder / "quality.png")
    render_runs(runs, folder / "renders.png")
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Reproduce: `{command}`", ""]
    lines += [comparison_table(runs), "", "![quality against parameters](quality.png)", "",
              "![ground truth and fitted meshes](renders.png)", ""]
    report = folder / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report
