"""What the 3D scene holds: the ground truth, each run's mesh (error-coloured or plain), labels,
the slice plane, and where each sits (side by side or overlaid).

``ShapeScene`` owns every scene node, so the GUI code only says what to show, never how.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import trimesh

from sine_fields.shapes.ground_truth import BOX_HALF
from sine_fields.viewer.colours import error_colours
from sine_fields.viewer.slicing import slice_pose

__all__ = ["LAYOUTS", "SPACING", "MeshEntry", "ShapeScene", "layout_offsets"]

LAYOUTS = ("side by side", "overlay")
# Distance between neighbouring meshes side by side: the shapes span at most 1 (normalised frame).
SPACING = 1.25
GROUND_TRUTH_COLOUR = (200, 200, 200)
RUN_COLOUR = (90, 160, 255)


def layout_offsets(count: int, layout: str) -> np.ndarray:
    """``(count, 3)`` positions: a row along x centred on the origin, or all at the origin."""
    offsets = np.zeros((count, 3))
    if layout == "side by side":
        offsets[:, 0] = (np.arange(count) - (count - 1) / 2) * SPACING
    return offsets


@dataclass
class MeshEntry:
    """One mesh in the scene. ``distances`` (per vertex, to the ground truth) is None for the ground truth."""

    name: str
    mesh: trimesh.Trimesh
    distances: np.ndarray | None
    visible: bool = True


class ShapeScene:
    """The ground truth (entry 0) and the runs' meshes (entries 1..) in a viser scene."""

    def __init__(self, server, entries: list[MeshEntry]) -> None:
        self.server = server
        self.entries = entries
        self.layout = LAYOUTS[0]
        self.colour_by_error = True
        self.error_max = default_error_max(entries)
        # Callbacks run on viser's thread pool: one lock keeps node updates from interleaving.
        self.lock = threading.RLock()

    def offset(self, index: int) -> np.ndarray:
        return layout_offsets(len(self.entries), self.layout)[index]

    def draw_all(self) -> None:
        with self.lock:
            for index in range(len(self.entries)):
                self.draw(index)

    def draw(self, index: int) -> None:
        """(Re)send one mesh and its label at its current place, colouring and visibility."""
        entry = self.entries[index]
        position = tuple(self.offset(index))
        with self.lock:
            node = f"/meshes/{index}"
            if len(entry.mesh.faces) == 0:
                self.server.scene.add_label(node, f"{entry.name}: empty mesh", position=position, visible=entry.visible)
            elif entry.distances is not None and self.colour_by_error:
                coloured = trimesh.Trimesh(entry.mesh.vertices, entry.mesh.faces, process=False)
                rgb = error_colours(entry.distances, self.error_max)
                coloured.visual = trimesh.visual.ColorVisuals(coloured, vertex_colors=np.c_[rgb, np.full(len(rgb), 255, np.uint8)])
                self.server.scene.add_mesh_trimesh(node, coloured, position=position, visible=entry.visible)
            else:
                colour = GROUND_TRUTH_COLOUR if entry.distances is None else RUN_COLOUR
                # In the overlay the ground truth is see-through so the fits inside it stay visible.
                opacity = 0.35 if entry.distances is None and self.layout == "overlay" else None
                self.server.scene.add_mesh_simple(
                    node, entry.mesh.vertices, entry.mesh.faces, color=colour, opacity=opacity, position=position, visible=entry.visible
                )
            label_position = (position[0], position[1] + BOX_HALF + 0.05, position[2])
            self.server.scene.add_label(f"/labels/{index}", entry.name, position=label_position, visible=entry.visible and self.layout == "side by side")

    def set_visible(self, index: int, visible: bool) -> None:
        self.entries[index].visible = visible
        self.draw(index)

    def set_layout(self, layout: str) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        self.layout = layout
        self.draw_all()

    def replace_mesh(self, index: int, mesh: trimesh.Trimesh, distances: np.ndarray) -> None:
        self.entries[index].mesh, self.entries[index].distances = mesh, distances
        self.draw(index)

    def draw_slice(self, index: int, image: np.ndarray, axis: str, offset: float, visible: bool) -> None:
        """Place a slice image through entry ``index``'s field, moving with that mesh."""
        wxyz, position = slice_pose(axis, offset)
        position = tuple(np.asarray(position) + self.offset(index))
        with self.lock:
            self.server.scene.add_image(
                "/slice", image, render_width=2 * BOX_HALF, render_height=2 * BOX_HALF, format="png",
                wxyz=wxyz, position=position, visible=visible,
            )


def default_error_max(entries: list[MeshEntry]) -> float:
    """Top of the colour bar: the 95th percentile of all runs' vertex errors, so a few outliers
    do not wash out the rest; a tiny positive value when every vertex lies on the ground truth."""
    distances = [e.distances for e in entries if e.distances is not None and len(e.distances)]
    if not distances:
        return 1e-3
    return max(float(np.percentile(np.concatenate(distances), 95)), 1e-6)
