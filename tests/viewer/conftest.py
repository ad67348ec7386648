"""A real shape fit for the viewer's tests, made once per session with ``sine-fields fit``.

The shape is a capsule built here (no download), fitted for a few dozen steps by a small sine
low-rank field: enough for a non-empty mesh with measurable error, a few seconds of compute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

# pytest runs with --import-mode=importlib, which does not put test folders on sys.path; the
# browser helpers (viewer_browser.py) are shared by the test and the README screenshot script.
sys.path.insert(0, str(Path(__file__).parent))

# Small on purpose (2 shared CPU cores): a 64-wide network, 60 steps at lr 1e-2 (at the default
# 1e-3 sixty steps leave an empty mesh), a 64^3 extraction.
FIT_ARGS = [
    "--linear", "sine", "--rank", "4", "--omega", "30", "--width", "64", "--activation", "ReLU",
    "--fourier-frequencies", "2", "--steps", "60", "--lr", "1e-2", "--batch-size", "4096",
    "--samples", "20000", "--resolution", "64", "--device", "cpu",
]


@pytest.fixture(scope="session")
def fitted_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewer-fit")
    mesh = root / "capsule.ply"
    trimesh.creation.capsule(height=0.5, radius=0.3).export(mesh)
    output = root / "sine-run"
    done = subprocess.run(
        [sys.executable, "-m", "sine_fields.cli", "fit", "--mesh", str(mesh), "--output", str(output), *FIT_ARGS],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"sine-fields fit failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    metrics = json.loads((output / "metrics.json").read_text())
    # The browser test needs a mesh to look at: an empty one would make it pass on labels alone.
    assert metrics["iou"] > 0.5, f"the test fit did not converge: {metrics}"
    return output
