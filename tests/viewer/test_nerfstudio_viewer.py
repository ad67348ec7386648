"""nerfstudio's own viewer serves our NeRF method: ``ns-train sine-nerf ... --vis viewer``.

A tiny scene is rendered here from a coloured sphere (``sine-fields data scene``), then ``ns-train
sine-nerf`` trains a few iterations on the CPU with the viewer on. The test checks that the viewer
answers HTTP on 127.0.0.1 while training runs, that it is not reachable on the machine's other
addresses, and that the process exits on its own (exit 0) when training completes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import trimesh

from viewer_browser import free_port

NS_TRAIN = Path(sys.executable).with_name("ns-train")
# Enough iterations that training outlasts the first HTTP probe on this kind of machine (measured:
# ~0.3 s per iteration at 256 rays; here 64 rays and 8+8 samples, about 1-2 s on 2 busy cores).
ITERATIONS = 6
# nerfstudio's CPU settings (device cpu, tensorboard instead of wandb), and no evaluation or checkpoint inside so few iterations.
CPU_ARGS = [
    "--machine.device-type", "cpu",
    "--pipeline.datamanager.train-num-rays-per-batch", "64", "--pipeline.datamanager.eval-num-rays-per-batch", "64",
    "--pipeline.model.num-coarse-samples", "8", "--pipeline.model.num-importance-samples", "8",
    "--steps-per-eval-batch", "100000", "--steps-per-eval-image", "100000", "--steps-per-eval-all-images", "100000",
    "--steps-per-save", "100000",
]


def _sine_nerf_missing() -> str | None:
    if not NS_TRAIN.exists():
        return f"no ns-train next to {sys.executable} (nerfstudio is not installed)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_sine_nerf_missing() is not None, reason=str(_sine_nerf_missing()))]


def _other_address() -> str | None:
    """A non-loopback IPv4 address of this machine, or None when it has none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: picks the outgoing interface, sends nothing
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _render_scene(root: Path) -> Path:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    colours = ((sphere.vertices * 0.5 + 0.5) * 255).astype(np.uint8)
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=np.c_[colours, np.full(len(colours), 255, np.uint8)])
    sphere.export(root / "ball.ply")
    data = root / "scene"
    done = subprocess.run(
        [sys.executable, "-m", "sine_fields.cli", "data", "scene", str(root / "ball.ply"), "--output", str(data),
         "--views", "8", "--resolution", "24", "--supersample", "1", "--up", "z"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return data


def test_ns_train_sine_nerf_serves_the_viewer_and_quits(tmp_path):
    # ns-train finds methods through this entry-point group (`ns-train --help` costs ~7 s to ask).
    if "sine-nerf" not in {entry.name for entry in entry_points(group="nerfstudio.method_configs")}:
        pytest.skip("sine-nerf is not registered with nerfstudio: the project is not installed (pip install -e .)")
    data = _render_scene(tmp_path)
    port = free_port()
    command = [
        str(NS_TRAIN), "sine-nerf", "--data", str(data), "--output-dir", str(tmp_path / "outputs"),
        "--max-num-iterations", str(ITERATIONS), "--vis", "viewer", "--viewer.websocket-host", "127.0.0.1",
        "--viewer.websocket-port", str(port), "--viewer.quit-on-train-completion", "True", *CPU_ARGS,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        page, reachable_elsewhere, other = None, None, _other_address()
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = (response.status, response.read().decode("utf-8", "replace"))
                break
            except OSError:
                time.sleep(0.1)
        if page is not None and other is not None:
            try:
                socket.create_connection((other, port), timeout=2).close()
                reachable_elsewhere = True
            except OSError:
                reachable_elsewhere = False
        still_training = process.poll() is None
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert page is not None, f"the viewer never answered on 127.0.0.1:{port}:\n{output[-3000:]}"
    status, html = page
    assert status == 200 and "<html" in html.lower() and "<script" in html.lower(), html[:500]
    assert still_training, f"training had already finished when the viewer answered; raise ITERATIONS ({ITERATIONS})"
    assert reachable_elsewhere is not True, f"the viewer is reachable on {other}:{port}, not only on 127.0.0.1"
    assert process.returncode == 0, output[-3000:]
    assert "Training Finished" in output, output[-3000:]
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)  # checkpoints and event files are not needed
