"""The compression benchmark: BD-rate and Pareto fronts on closed-form curves, and the --quick run end to end
on three meshes generated here (Draco rows included)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import trimesh

from sine_fields.shapes.metrics import worst_surface_metrics

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_compression", ROOT / "benchmarks" / "compression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compression = _benchmark()


def test_pareto_keeps_only_points_no_other_beats():
    points = [(100, 0.05), (200, 0.06), (300, 0.02), (50, 0.1), (400, 0.02)]
    assert compression.pareto(points) == [(50, 0.1), (100, 0.05), (300, 0.02)]


def test_bd_rate_of_a_curve_at_half_the_bytes_is_minus_50_percent():
    theirs = [(1000 * 2**i, 0.01 / 1.5**i) for i in range(5)]
    ours = [(size / 2, error) for size, error in theirs]
    assert compression.bd_rate(ours, theirs)["bd_rate_percent"] == pytest.approx(-50.0, abs=1e-9)
    assert compression.bd_rate(theirs, ours)["bd_rate_percent"] == pytest.approx(100.0, abs=1e-9)
    # No overlap in Chamfer-L1: no number, a reason.
    far = [(size, error / 100) for size, error in theirs]
    assert compression.bd_rate(far, theirs)["bd_rate_percent"] is None


def test_crossover_reports_draco_bytes_at_the_same_chamfer():
    draco = [(2000, 0.02), (8000, 0.005)]
    ours = [(3000, 0.01), (20_000, 0.001)]  # the second is above 8 KiB: not reported
    (point,) = compression.crossover(ours, draco)
    # Log-linear between Draco's two points: Chamfer 0.01 is halfway in log, so bytes are sqrt(2000 * 8000).
    assert point["draco_bytes_same_chamfer"] == pytest.approx(math.sqrt(2000 * 8000))
    assert point["ours_smaller"] is True


def test_same_parameter_count_rows_keep_each_files_bytes():
    medians = {"sine-k8 8-bit": {"method": "sine", "bytes": 13009, "chamfer_l1": 0.004},
               "lowrank-k8 8-bit": {"method": "lowrank", "bytes": 10929, "chamfer_l1": 0.008},
               "sine-k1 16-bit": {"method": "sine", "bytes": 6378, "chamfer_l1": 0.01}}
    (row,) = compression.equal_bytes(medians, "sine", "lowrank")  # sine-k1 16-bit has no low-rank twin here
    assert row["setting"] == "sine-k8 8-bit" and row["bytes"] == 13009 and row["lowrank_bytes"] == 10929
    assert row["ratio"] == pytest.approx(2.0)


def test_mesh_rule_skips_variants_by_name():
    assert all(marker not in name for name in ("anchor", "camel") for marker in compression.VARIANT_MARKERS)
    assert any(marker in "blobby-shuffled" for marker in compression.VARIANT_MARKERS)


def test_draco_rows_are_measured_once_per_mesh_and_settings(tmp_path):
    pytest.importorskip("DracoPy", reason="Draco is the optional `scale` extra: pip install -e '.[scale]'")
    measured = []

    def measure():
        measured.append(1)
        return [{"label": "draco full q8", "bytes": len(measured)}]

    cache = tmp_path / "draco" / "bunny.json"
    first = compression._cached_draco(cache, "bunny", 1000, measure)
    assert compression._cached_draco(cache, "bunny", 1000, measure) == first and len(measured) == 1
    # Another sample count is another measurement (and replaces the stored one).
    assert compression._cached_draco(cache, "bunny", 2000, measure)[0]["bytes"] == 2 and len(measured) == 2


@pytest.mark.slow
def test_quick_run_writes_json_table_and_plot(tmp_path):
    pytest.importorskip("DracoPy", reason="Draco is the optional `scale` extra: pip install -e '.[scale]'")
    pytest.importorskip("fast_simplification", reason="the `scale` extra: pip install -e '.[scale]'")
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=2.0)  # 5,120 faces: every decimated row applies
    box = trimesh.creation.box(extents=[1.0, 2.0, 0.5])
    torus = trimesh.creation.torus(1.0, 0.3)
    meshes = [tmp_path / "sphere.ply", tmp_path / "box.off", tmp_path / "torus.ply"]
    for mesh, path in zip((sphere, box, torus), meshes):
        mesh.export(path)
    out = tmp_path / "out"
    assert compression.main(["--quick", "--output", str(out), "--meshes", *map(str, meshes), "--executor", "local"]) == 0
    result = json.loads((out / "compression.json").read_text())
    assert result["quick"] and result["meshes"] == [str(m) for m in meshes]
    rows = result["rows"]
    for mesh in result["meshes"]:
        draco = [r for r in rows if r["mesh"] == mesh and r["method"] == "draco"]
        assert {r["quantization_bits"] for r in draco if r["version"] == "full"} == set(compression.DRACO_BITS)
        ours = {(r["method"], r["bits"]) for r in rows if r["mesh"] == mesh and r["method"] != "draco"}
        assert ours == {(m, b) for m in ("sine", "lowrank", "dense") for b in (16, 8)}
        # A field that is still empty after the tiny budget gets the metrics' worst value, not an error.
        worst = worst_surface_metrics()["chamfer_l1"]
        for row in rows:
            assert row["status"] == "ok" and row["bytes"] > 0 and 0 <= row["chamfer_l1"] <= worst
        assert all(r["chamfer_l1"] < 0.1 for r in draco)
    # The sphere has more than 250 .. 5000 faces: every decimation level is there, each smaller than the full mesh.
    decimated = [r for r in rows if r["mesh"] == str(meshes[0]) and r["method"] == "draco" and r["version"] != "full"]
    assert {r["version"] for r in decimated} == {f"{f} faces" for f in compression.DECIMATE_FACES}
    # A packed 8-bit field is smaller than its 16-bit file.
    for mesh in result["meshes"]:
        sizes = {r["bits"]: r["bytes"] for r in rows if r["mesh"] == mesh and r["method"] == "sine"}
        assert sizes[8] < sizes[16]
    summary = result["summary"]
    assert {m["method"] for m in summary["median"].values()} == {"sine", "lowrank", "dense", "draco"}
    assert "bd_rate_percent" in summary["bd_rate_sine_vs_draco"]
    table = (out / "compression.md").read_text()
    assert table.startswith("| method | setting | median bytes |") and "BD-rate sine vs Draco" in table
    assert (out / "compression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
