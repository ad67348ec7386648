"""``sine-fields view DIR [DIR ...]``: serve a viser page that shows shape fits beside their ground truth.

The page holds the ground truth and each run's mesh (side by side or overlaid, each toggled on and
off), per-vertex error colouring with a colour bar, each run's metrics and exact parameter count, a
slice plane through a field's values that a slider moves, and a re-extraction control with a
progress bar. It binds 127.0.0.1 unless told otherwise and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from sine_fields.errors import UserError
from sine_fields.shapes.ground_truth import BOX_HALF
from sine_fields.viewer.colours import colour_bar_image, field_colours
from sine_fields.viewer.extraction import Cancelled, re_extract
from sine_fields.viewer.panels import format_value, metrics_markdown
from sine_fields.viewer.scene import LAYOUTS, SPACING, MeshEntry, ShapeScene
from sine_fields.viewer.slicing import AXES, slice_points

__all__ = ["ShapeViewer", "main"]

# Coarse-to-fine refines from 32^3 by doubling (sine_fields.shapes.extract), so powers of two.
RESOLUTIONS = ("64", "128", "256")
SLICE_PIXELS = 128
# Half-range of the slice colours: occupancy probabilities span 0.5 either side of 0.5; SDF
# colours saturate at the default truncation of the SDF loss (sine_fields.shapes.fit.TrainConfig).
SLICE_HALF_RANGE = {"occupancy": 0.5, "sdf": 0.1}
SLICE_ALPHA = 170


class ShapeViewer:
    """Builds the scene and the panels on a running ``viser.ViserServer`` and answers the controls."""

    def __init__(self, server, runs, ground_truth, device) -> None:
        self.server, self.runs, self.ground_truth, self.device = server, runs, ground_truth, device
        self.cancel = threading.Event()  # set on shutdown: a running extraction stops before its next chunk
        self._fields: dict[int, object] = {}
        self._field_lock = threading.Lock()
        self._slice_lock = threading.Lock()
        self._extract_lock = threading.Lock()
        self._notes = ["" for _ in runs]
        entries = [MeshEntry("ground truth", ground_truth.mesh, None)]
        meshes = [run.mesh("normalised") for run in runs]
        entries += [MeshEntry(run.name, mesh, self._distances(mesh)) for run, mesh in zip(runs, meshes)]
        self.scene = ShapeScene(server, entries)
        # Markdown images are read from files (viser inlines them): the colour bar lives here.
        self._image_root = Path(tempfile.mkdtemp(prefix="sine-fields-view-"))

    def close(self) -> None:
        """Stop a running extraction and remove the temporary files."""
        self.cancel.set()
        shutil.rmtree(self._image_root, ignore_errors=True)

    # ----- data -------------------------------------------------------------------------------
    def _distances(self, mesh) -> np.ndarray:
        if len(mesh.vertices) == 0:
            return np.zeros(0, dtype=np.float32)
        # Copy out of open3d's buffer: the array outlives the query and open3d reports (and exits 1
        # on) buffers still held at interpreter exit.
        return np.array(self.ground_truth.unsigned_distance(np.asarray(mesh.vertices, dtype=np.float32)), copy=True)

    def field(self, run_index: int):
        """The run's field, loaded on first use (a checkpoint read and a move to the device)."""
        with self._field_lock:
            if run_index not in self._fields:
                self._fields[run_index] = self.runs[run_index].load_field(self.device)
            return self._fields[run_index]

    def _run_index(self, name: str) -> int:
        return [run.name for run in self.runs].index(name)

    # ----- panels -----------------------------------------------------------------------------
    def build(self) -> None:
        gui = self.server.gui
        self.scene.draw_all()
        with gui.add_folder("Scene"):
            layout = gui.add_dropdown("layout", LAYOUTS, initial_value=self.scene.layout)
            layout.on_update(lambda _: self.scene.set_layout(layout.value))
            for index, entry in enumerate(self.scene.entries):
                box = gui.add_checkbox(f"show {entry.name}", True)
                box.on_update(lambda _, i=index, b=box: self.scene.set_visible(i, b.value))
            colour = gui.add_checkbox("colour by error", True, hint="per-vertex distance to the ground truth")
            colour.on_update(lambda _: self._set_colouring(colour.value, None))
            vmax = gui.add_number("colour bar max", float(f"{self.scene.error_max:.3g}"), min=1e-6, step=1e-4)
            vmax.on_update(lambda _: self._set_colouring(None, float(vmax.value)) if vmax.value > 0 else None)
            self.colour_bar = gui.add_markdown(self._colour_bar_text(), image_root=self._image_root)
        self.metric_panels = []
        for index, run in enumerate(self.runs):
            with gui.add_folder(f"Metrics: {run.name}"):
                self.metric_panels.append(gui.add_markdown(self._metrics_text(index)))
        if self._field_runs():  # nerf-mesh folders hold a mesh but no field to slice or re-extract
            self._build_slice_panel()
            self._build_extract_panel()

    def _field_runs(self) -> list[str]:
        return [run.name for run in self.runs if run.field_config is not None]

    def _metrics_text(self, index: int) -> str:
        run = self.runs[index]
        metrics = {key: value for key, value in run.metrics.items() if key != "num_parameters"}  # shown first
        return metrics_markdown(run.name, run.num_parameters, run.summary, metrics, self._notes[index])

    def _colour_bar_text(self) -> str:
        import imageio.v3 as iio  # viser's own dependency

        iio.imwrite(self._image_root / "colour_bar.png", colour_bar_image())
        return (
            "![error colour bar](colour_bar.png)\n\n"
            f"0 → {format_value(self.scene.error_max)}: distance to the ground truth, "
            "in the normalised frame where the shape's longest side is 1"
        )

    def _set_colouring(self, on: bool | None, vmax: float | None) -> None:
        if on is not None:
            self.scene.colour_by_error = on
        if vmax is not None:
            self.scene.error_max = vmax
            self.colour_bar.content = self._colour_bar_text()
        self.scene.draw_all()

    # ----- slice plane ------------------------------------------------------------------------
    def _build_slice_panel(self) -> None:
        gui = self.server.gui
        with gui.add_folder("Slice plane"):
            self.slice_show = gui.add_checkbox("show slice", True)
            self.slice_run = gui.add_dropdown("field of", self._field_runs())
            self.slice_axis = gui.add_dropdown("normal axis", AXES, initial_value="z")
            self.slice_offset = gui.add_slider("offset", -BOX_HALF, BOX_HALF, 0.01, 0.0)
            self.slice_legend = gui.add_markdown("")
        for control in (self.slice_show, self.slice_run, self.slice_axis, self.slice_offset):
            control.on_update(lambda _: self.update_slice())
        self.update_slice()

    def update_slice(self) -> None:
        """Evaluate the chosen field on the plane (128^2 points, well under a second) and show it."""
        with self._slice_lock:
            index = self._run_index(self.slice_run.value)
            axis, offset = self.slice_axis.value, float(self.slice_offset.value)
            target, config = self.runs[index].target, self.runs[index].field_config
            points = slice_points(axis, offset, SLICE_PIXELS)
            raw = self.field(index).values(points.reshape(-1, 3)).reshape(SLICE_PIXELS, SLICE_PIXELS)
            values, level = config.to_user_units(raw), config.surface_level
            image = field_colours(values, target, level, SLICE_HALF_RANGE[target])
            # Mark the surface: pixels whose right or lower neighbour is on the other side of the level.
            inside = config.inside_sign * (values - level) > 0
            edge = np.zeros_like(inside)
            edge[:, :-1] |= inside[:, :-1] != inside[:, 1:]
            edge[:-1, :] |= inside[:-1, :] != inside[1:, :]
            # Semi-transparent (viser draws images with alpha) so the meshes stay visible through it;
            # the surface line stays opaque.
            alpha = np.where(edge, 255, SLICE_ALPHA).astype(np.uint8)
            image[edge] = 0
            image = np.dstack([image, alpha])
            self.scene.draw_slice(index + 1, image, axis, offset, self.slice_show.value)
            unit = "occupancy probability" if target == "occupancy" else "signed distance, negative inside"
            self.slice_legend.content = (
                f"{unit}: blue inside, red outside, black line at the surface ({level}); "
                f"range on the plane {values.min():.3g} to {values.max():.3g}"
            )

    # ----- re-extraction ----------------------------------------------------------------------
    def _build_extract_panel(self) -> None:
        gui = self.server.gui
        with gui.add_folder("Re-extract"):
            self.extract_run = gui.add_dropdown("run", self._field_runs())
            self.extract_resolution = gui.add_dropdown("resolution", RESOLUTIONS, initial_value="128")
            self.extract_method = gui.add_dropdown("method", ("coarse-to-fine", "dense"))
            self.extract_level = gui.add_number(
                "level", self.runs[self._run_index(self._field_runs()[0])].field_config.surface_level, step=0.01,
                hint="occupancy: a probability in (0, 1), 0.5 is the surface; SDF: a distance, 0 is the surface",
            )
            self.extract_button = gui.add_button("re-extract")
            self.extract_progress = gui.add_progress_bar(0.0, visible=False, animated=True)
            self.extract_status = gui.add_markdown("")
        self.extract_run.on_update(lambda _: setattr(self.extract_level, "value", self.runs[self._run_index(self.extract_run.value)].field_config.surface_level))
        self.extract_button.on_click(lambda _: self.re_extract())

    def re_extract(self) -> None:
        """Mesh the chosen field at the chosen resolution and level; show progress while it runs."""
        if not self._extract_lock.acquire(blocking=False):
            return  # one extraction at a time: two would halve each other's speed on a small machine
        try:
            index = self._run_index(self.extract_run.value)
            run, resolution = self.runs[index], int(self.extract_resolution.value)
            method, level = self.extract_method.value, float(self.extract_level.value)
            if run.target == "occupancy" and not 0.0 < level < 1.0:
                self.extract_status.content = f"not extracted: the level of an occupancy run is a probability in (0, 1), got {level:g}"
                return
            self.extract_button.disabled = True
            self.extract_progress.value, self.extract_progress.visible = 0.0, True
            self.extract_status.content = f"evaluating {run.name} at {resolution}³ ({method})…"
            start = time.perf_counter()

            def progress(update) -> None:
                self.extract_progress.value = min(100.0, max(0.0, round(100 * update.fraction, 1)))

            try:
                mesh, queries = re_extract(self.field(index), resolution, method, level, progress, self.cancel)
            except Cancelled:
                return
            except (UserError, ValueError) as error:  # a level outside (0, 1), a resolution C2F cannot reach
                self.extract_status.content = f"not extracted: {error}"
                return
            distances = self._distances(mesh)
            self.scene.replace_mesh(index + 1, mesh, distances)
            seconds = time.perf_counter() - start
            mean = f"{float(distances.mean()):.3e}" if len(distances) else "n/a (empty mesh)"
            self._notes[index] = (
                f"Shown: re-extracted at {resolution}³ ({method}), level {level:g}, {len(mesh.vertices):,} vertices, "
                f"{queries:,} field queries, mean vertex distance to the ground truth {mean}. "
                "The metrics above are for the run's saved mesh.ply."
            )
            self.metric_panels[index].content = self._metrics_text(index)
            self.extract_status.content = f"{run.name}: done in {seconds:.1f} s"
        finally:
            self.extract_progress.visible = False
            self.extract_button.disabled = False
            self._extract_lock.release()

    # ----- camera -----------------------------------------------------------------------------
    def frame_camera(self, client) -> None:
        """Look at the whole row of meshes from the front (+z), slightly above."""
        width = len(self.scene.entries) * SPACING
        # The panel floats over the right of the canvas: aim a little right of the row's centre so
        # the meshes sit in the free part. Position first: viser's position setter moves look_at too.
        aim = (0.12 * width, 0.0, 0.0)
        client.camera.position = (aim[0], 0.3 * width, 0.6 * width + 0.9)
        client.camera.look_at = aim


def main(
    runs: tyro.conf.Positional[tuple[Path, ...]],
    port: int = 8080,
    host: str = "127.0.0.1",
    device: str = "auto",
    up: Literal["+x", "+y", "+z", "-x", "-y", "-z"] = "+y",
) -> int:
    """Serve a web page that shows shape fits next to their ground truth.

    Args:
        runs: run folders written by `sine-fields fit` (all of the same mesh).
        port: port to serve on; when it is taken, the next free one is used and printed.
        host: address to bind; 127.0.0.1 keeps the page on this machine, 0.0.0.0 exposes it to the network.
        device: where fields are evaluated (slice plane, re-extraction): auto, cpu or cuda.
        up: the scene's up direction (the npm bunny is +y up).
    """
    from sine_fields.viewer.run_folder import ground_truth_of, load_runs

    torch_device = _device(device)
    _check_host(host)
    loaded = load_runs(list(runs))
    ground_truth = ground_truth_of(loaded[0])

    import viser

    try:
        server = viser.ViserServer(host=host, port=port, label="sine-fields", verbose=False)
    except (OSError, RuntimeError) as error:  # viser raises RuntimeError when no port from `port` up binds
        raise UserError(f"cannot serve on {host}:{port}: {error}") from None
    viewer = ShapeViewer(server, loaded, ground_truth, torch_device)
    try:
        server.scene.set_up_direction(up)
        server.on_client_connect(viewer.frame_camera)
        viewer.build()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        print(f"viewer: http://{shown}:{server.get_port()}  (Ctrl-C stops it)", flush=True)
        if host in ("0.0.0.0", ""):
            print("warning: bound to every network interface; anyone who can reach this machine can open the page", flush=True)
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the viewer", flush=True)
    finally:
        viewer.close()
        stop_server(server)
    return 0


def _check_host(host: str) -> None:
    """A host this machine can bind, checked once: viser retries the next port on any bind error,
    up to 1000 times, so a wrong address would otherwise be slow to fail and say little."""
    try:
        with socket.create_server((host, 0)):
            pass
    except OSError as error:
        raise UserError(f"--host {host!r}: cannot listen there ({error.strerror or error}); use 127.0.0.1 or an address of this machine") from None


def _device(name: str):
    """``--device`` as a torch device, checked before the server starts (a bad one would otherwise
    fail later inside a GUI callback, where the user sees nothing)."""
    from sine_fields.device import torch_device

    return torch_device(name)


def stop_server(server) -> None:
    """Close the websocket server on its own event loop, then let viser shut its thread pool down.

    viser 0.2.7's ``stop()`` schedules the close from the calling thread on a loop that runs on
    viser's background thread, so the close never runs and the socket stays open until exit. This
    runs it on that loop and waits for it; ``stop()`` then finds it closed (``close`` is idempotent).
    """
    import asyncio

    inner = getattr(getattr(server, "_websock_server", None), "_ws_server", None)
    if inner is not None:
        loop = inner.get_loop()

        async def close() -> None:
            inner.close()
            await inner.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
    server.stop()

