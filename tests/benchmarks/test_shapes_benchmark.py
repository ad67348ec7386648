"""benchmarks/shapes.py reuses a cached run only when its configuration and extraction are the ones asked for."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
import trimesh

from sine_fields.shapes.config import ExtractConfig, FitConfig
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.fit import TrainConfig
from sine_fields.shapes.run import ShapeRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("shapes_benchmark", ROOT / "benchmarks" / "shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cached_run_is_reused_only_with_the_same_configuration(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    mesh = tmp_path / "sphere.ply"
    trimesh.creation.icosphere(subdivisions=2).export(mesh)
    config = FitConfig(str(mesh), FieldConfig(linear="sine", rank=2, width=16, omega=30.0),
                       TrainConfig(steps=5, batch_size=256, samples=2000), ExtractConfig(32))
    folder = tmp_path / "run"
    assert bench.reusable_run(folder, config) is None  # nothing there yet
    ShapeRun.fit(folder, config, device="cpu", progress=False)
    assert bench.reusable_run(folder, config).root == folder
    # Another seed, or another extraction resolution: the cached metrics are not this fit's.
    for other in (replace(config, train=replace(config.train, seed=1)), replace(config, extract=ExtractConfig(64))):
        if not folder.exists():
            ShapeRun.fit(folder, config, device="cpu", progress=False)
        assert bench.reusable_run(folder, other) is None
        assert not folder.exists()
