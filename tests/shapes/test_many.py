"""fit-many on three tiny meshes, one of them broken: summary, packing, skip of finished runs, resume of
an interrupted one (in-process executor), the same fits as Ray tasks on a local cluster, and the message
without Ray."""

import csv
import json
import sys

import pytest
import trimesh

from sine_fields import cli
from sine_fields.shapes.many import mesh_folders, read_mesh_list

# A tiny budget: the point is the orchestration, not the quality.
TINY = ["--width", "32", "--steps", "60", "--batch-size", "1024", "--samples", "10000", "--resolution", "32",
        "--rank", "2", "--omega", "30", "--lr", "3e-3", "--checkpoint-every", "20"]


def test_mesh_list_and_folder_names(tmp_path):
    listing = tmp_path / "meshes.txt"
    listing.write_text("# shapes\nbunny\n\ncgal:camel  # a comment\n/data/a/part.ply\n/data/b/part.ply\n")
    meshes = read_mesh_list(listing)
    assert meshes == ["bunny", "cgal:camel", "/data/a/part.ply", "/data/b/part.ply"]
    assert mesh_folders(meshes) == {"bunny": "bunny", "cgal:camel": "cgal-camel", "/data/a/part.ply": "part",
                                    "/data/b/part.ply": "part-2"}
    with pytest.raises(Exception, match="more than once"):
        mesh_folders(["bunny", "bunny"])
    with pytest.raises(Exception, match="does not exist"):
        read_mesh_list(tmp_path / "missing.txt")


def test_without_ray_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    (tmp_path / "s.ply").write_bytes(trimesh.creation.icosphere(2).export(file_type="ply"))
    assert cli.main(["fit-many", str(tmp_path / "s.ply"), "--output", str(tmp_path / "out"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[scale]'" in err


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is the optional `scale` extra: pip install -e '.[scale]'")
    # One local cluster for the module (Ray's start-up is the slow part); fit_many joins it.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    sphere.apply_translation([1.0, 2.0, 3.0])
    box = trimesh.creation.box(extents=[1.0, 2.0, 0.5])
    paths = [root / "sphere.ply", root / "box.off", root / "broken.ply"]
    paths[0].write_bytes(sphere.export(file_type="ply"))
    paths[1].write_text(box.export(file_type="off"))
    paths[2].write_text("ply\nthis is not a mesh\n")
    return root, [str(p) for p in paths]


def _summary(out):
    with open(out / "summary.csv") as handle:
        return {row["mesh"]: row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_fit_many_fits_packs_summarises_and_reports_the_broken_mesh(meshes, capsys):
    root, paths = meshes
    out = root / "out"
    assert cli.main(["fit-many", *paths, "--output", str(out), "--bits", "16", "8", "--finetune-steps", "5", *TINY,
                     "--executor", "local"]) == 1
    printed = capsys.readouterr().out
    rows = _summary(out)
    assert list(rows) == paths  # the input order
    for mesh, name in ((paths[0], "sphere"), (paths[1], "box")):
        row = rows[mesh]
        assert row["status"] == "ok" and row["reason"] == "", row
        assert 0 <= float(row["iou"]) <= 1
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert float(row["chamfer_l1"]) == pytest.approx(metrics["chamfer_l1"], rel=1e-3)
        for bits in (16, 8):
            assert int(row[f"bytes_{bits}"]) == (out / name / f"shape-{bits}bit.sfz").stat().st_size
        assert int(row["bytes_8"]) < int(row["bytes_16"])
    assert float(rows[paths[0]]["iou"]) > 0.5  # the sphere is an easy shape even at this budget
    broken = rows[paths[2]]
    assert broken["status"] == "failed" and broken["reason"] and "\n" not in broken["reason"]
    assert f"failed: {paths[2]}: " in printed
    markdown = (out / "summary.md").read_text().strip().splitlines()
    assert markdown[0].startswith("| mesh | run | status |") and len(markdown) == 2 + 3


@pytest.mark.slow
def test_fit_many_skips_finished_runs_and_resumes_an_interrupted_one(meshes):
    root, paths = meshes
    out = root / "out"
    if not (out / "summary.csv").exists():
        pytest.fail("runs after test_fit_many_fits_packs_summarises_and_reports_the_broken_mesh (same module)")
    before = json.loads((out / "sphere" / "metrics.json").read_text())
    # Interrupt the box's run after training: its checkpoint is complete, everything after it is gone.
    for name in ("metrics.json", "mesh.ply", "extraction.json", "shape-16bit.sfz"):
        (out / "box" / name).unlink()
    assert cli.main(["fit-many", *paths[:2], "--output", str(out), *TINY, "--executor", "local"]) == 0
    rows = _summary(out)
    assert rows[paths[0]]["status"] == "skipped (finished before)"
    assert json.loads((out / "sphere" / "metrics.json").read_text()) == before
    assert rows[paths[1]]["status"] == "ok"
    box = json.loads((out / "box" / "metrics.json").read_text())
    assert box["timings"]["resumed_from_step"] == 60  # resumed at the end of training, not refitted
    assert (out / "box" / "shape-16bit.sfz").is_file()
    # Other options for the same folders: refused per mesh, with the reason in the summary.
    assert cli.main(["fit-many", paths[0], "--output", str(out), *TINY, "--seed", "3", "--executor", "local"]) == 1
    assert "holds another run" in _summary(out)[paths[0]]["reason"]


@pytest.mark.slow
def test_ray_tasks_give_the_same_runs_as_the_in_process_executor(cluster, meshes):
    root, paths = meshes
    local, on_ray = root / "local-twin", root / "ray"
    assert cli.main(["fit-many", *paths, "--output", str(local), *TINY, "--executor", "local"]) == 1
    assert cli.main(["fit-many", *paths, "--output", str(on_ray), *TINY]) == 1  # the broken mesh fails on Ray too
    expected, got = _summary(local), _summary(on_ray)
    assert [row["status"] for row in got.values()] == ["ok", "ok", "failed"]
    for mesh in paths[:2]:
        # Seeded fits on one thread each: the same field wherever it runs.
        assert got[mesh]["bytes_16"] == expected[mesh]["bytes_16"]
        assert float(got[mesh]["iou"]) == pytest.approx(float(expected[mesh]["iou"]), abs=1e-3)
    assert got[paths[2]]["reason"] == expected[paths[2]]["reason"]
