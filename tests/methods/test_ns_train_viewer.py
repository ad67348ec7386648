"""The real ``ns-train`` command with the nerfstudio viewer: it serves on 127.0.0.1 while training
and quits by itself when training ends (our configs' defaults)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import trimesh

from sine_fields.data.scenes import RenderOptions, render_scene

NS_TRAIN = Path(sys.executable).parent / "ns-train"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not NS_TRAIN.exists() and shutil.which("ns-train") is None, reason="ns-train is not installed")
def test_ns_train_sine_nerf_with_viewer_serves_locally_and_quits(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    sphere.visual.vertex_colors = np.tile([220, 120, 40, 255], (len(sphere.vertices), 1))
    sphere.export(tmp_path / "sphere.ply")
    render_scene(str(tmp_path / "sphere.ply"), tmp_path / "data", RenderOptions(views=6, resolution=16, eval_every=3, up="z"))
    port = _free_port()
    command = [
        str(NS_TRAIN if NS_TRAIN.exists() else shutil.which("ns-train")), "sine-nerf",
        "--data", str(tmp_path / "data"), "--output-dir", str(tmp_path / "runs"),
        "--machine.device-type", "cpu", "--vis", "viewer", "--viewer.websocket-port", str(port),
        "--max-num-iterations", "10", "--steps-per-save", "1000", "--steps-per-eval-batch", "1000",
        "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "100000",
        "--pipeline.datamanager.train-num-rays-per-batch", "64",
        "--pipeline.model.num-coarse-samples", "8", "--pipeline.model.num-importance-samples", "8",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = False
    try:
        deadline = time.monotonic() + 400
        while process.poll() is None and time.monotonic() < deadline:
            served = served or _answers("127.0.0.1", port)
            time.sleep(0.3)
        # our configs set quit_on_train_completion: the process ends by itself
        assert process.poll() is not None, "ns-train --vis viewer did not quit after training"
    finally:
        if process.poll() is None:
            process.kill()
        log = process.communicate()[0]
    assert process.returncode == 0, log[-3000:]
    assert served, "the viewer never answered on 127.0.0.1 while training"
    assert "Training Finished" in log
    # it said where it was serving: the loopback address, not 0.0.0.0
    assert "0.0.0.0" not in log
