"""The viewer in a real browser: headless Chromium opens the page served by ``sine-fields view``.

Checks that the meshes are drawn (pixels of the 3D canvas change when the meshes are hidden, so a
blank or static canvas fails), that the metrics panel shows each run's numbers from metrics.json,
that re-extraction runs from the page, and that the server stops with exit code 0 on Ctrl-C.
"""

from __future__ import annotations

import json
import shutil
import socket
import time

import numpy as np
import pytest

from viewer_browser import chromium_missing_reason, chromium_page, free_port, viewer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_missing_reason() is not None, reason=str(chromium_missing_reason()))]

SCREENSHOT_TIMEOUT_MS = 60_000


def canvas_pixels(page) -> np.ndarray:
    """``(h, w, 3)`` uint8 of the 3D canvas left of the control panel (which floats over its right)."""
    import io

    from PIL import Image

    canvas = page.locator("canvas").first.bounding_box()
    panel_left = page.get_by_text("Scene", exact=True).first.bounding_box()["x"] - 20
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    top, left = int(canvas["y"]), int(canvas["x"])
    # Leave out the bottom 90 px: the axes gizmo in the bottom-left corner is always drawn.
    return shot[top : top + int(canvas["height"]) - 90, left : int(panel_left)]


def drawn_fraction(pixels: np.ndarray) -> float:
    """Share of pixels that differ clearly from the background (the top-left pixel's colour)."""
    background = pixels[0, 0].astype(int)
    return float((np.abs(pixels.astype(int) - background).max(axis=-1) > 40).mean())


def test_viewer_in_chromium(fitted_run, tmp_path):
    # A second run folder (a copy under another name) exercises the side-by-side comparison.
    second = tmp_path / "sine-run-copy"
    shutil.copytree(fitted_run, second)
    metrics = json.loads((fitted_run / "metrics.json").read_text())
    port = free_port()
    with viewer([str(fitted_run), str(second), "--port", str(port)]) as proc:
        url = proc.wait_for_url(timeout=120)
        with chromium_page() as page:
            page.goto(url)
            page.wait_for_selector("canvas", timeout=SCREENSHOT_TIMEOUT_MS)
            page.get_by_text(f"Metrics: {second.name}").wait_for(timeout=SCREENSHOT_TIMEOUT_MS)
            time.sleep(3)  # meshes arrive as GLB and are decoded after the panel text
            page.screenshot(path=str(tmp_path / "viewer.png"))
            shown = drawn_fraction(canvas_pixels(page))

            # The metrics panel shows the run's own numbers, formatted as a reader would expect.
            text = page.inner_text("body")
            for expected in (f"{metrics['num_parameters']:,}", f"{metrics['iou']:.4f}",
                             f"{metrics['iou_near_surface']:.4f}", f"{metrics['fscore']:.4f}"):
                assert expected in text, f"{expected!r} not on the page"
            assert text.count(f"{metrics['iou']:.4f}") >= 2  # one panel per run

            # Hide every mesh and the slice plane: what was drawn must go away.
            for label in ("show ground truth", f"show {fitted_run.name}", f"show {second.name}", "show slice"):
                page.get_by_label(label, exact=True).click()
            time.sleep(2)
            hidden = drawn_fraction(canvas_pixels(page))
            assert shown > 0.03, f"only {shown:.3%} of the canvas is drawn (see {tmp_path / 'viewer.png'})"
            assert hidden < shown / 5, f"hiding the meshes left {hidden:.3%} of {shown:.3%} drawn"

            # Move the slice to the edge of the box with the keyboard: the field is evaluated again
            # on the new plane (all outside there), and the legend reports the new value range.
            legend = page.get_by_text("range on the plane").inner_text()
            page.get_by_role("slider").first.focus()
            page.keyboard.press("End")
            page.wait_for_function(
                "old => !document.body.innerText.includes(old) && document.body.innerText.includes('range on the plane')",
                arg=legend, timeout=SCREENSHOT_TIMEOUT_MS,
            )

            # Re-extract from the page: the progress path runs and the panel says what is shown.
            page.get_by_label(f"show {fitted_run.name}", exact=True).click()
            page.get_by_role("button", name="re-extract").click()
            page.get_by_text("done in").wait_for(timeout=SCREENSHOT_TIMEOUT_MS)
            assert "re-extracted at 128³" in page.inner_text("body")
        assert proc.interrupt(timeout=30) == 0, proc.output
        assert "stopping the viewer" in proc.output and "Traceback" not in proc.output
        with pytest.raises(OSError):  # the port is closed once the command has returned
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
