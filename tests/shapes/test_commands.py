"""The shape CLI end to end on a generated sphere file: outputs, resume, and the user-error contract."""

import json

import pytest
import trimesh

from sine_fields import cli
from sine_fields.shapes import run as run_module
from sine_fields.shapes.metrics import METRIC_KEYS

# A tiny budget: the point is the files and the contract, not the quality.
TINY = ["--width", "32", "--steps", "100", "--batch-size", "1024", "--samples", "10000", "--resolution", "32",
        "--linear", "sine", "--rank", "2", "--omega", "30", "--lr", "3e-3", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def small_scoring():
    # Scoring with 100k points per set is the metrics' job (tested in test_metrics.py); here 5k keep
    # the CLI tests fast while exercising the same code.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "IOU_POINTS", 5000)
        patch.setattr(run_module, "SCORE_SURFACE_SAMPLES", 5000)
        yield


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_scoring):
    from .conftest import sphere_mesh

    root = tmp_path_factory.mktemp("cli")
    mesh = root / "sphere.ply"
    mesh.write_bytes(sphere_mesh(3).export(file_type="ply"))
    run = root / "run"
    assert cli.main(["fit", "--mesh", str(mesh), "--output", str(run), *TINY]) == 0
    return mesh, run


def test_fit_writes_the_run_folder(finished_run):
    mesh, run = finished_run
    for name in ("config.json", "checkpoint.pt", "ground_truth.ply", "mesh.ply", "extraction.json", "metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert tuple(k for k in metrics if k in METRIC_KEYS) == METRIC_KEYS
    config = json.loads((run / "config.json").read_text())
    assert config["num_parameters"] == metrics["num_parameters"] and config["field"]["mlp"]["linear"] == "sine"
    # The mesh is written back in the input's own coordinates (sphere of radius 2 around (1, 2, 3)).
    fitted = trimesh.load(run / "mesh.ply")
    assert abs(fitted.bounds.mean(axis=0) - [1, 2, 3]).max() < 0.3 and abs(fitted.extents - 4).max() < 0.5
    assert metrics["iou"] > 0.8


def test_eval_of_the_saved_mesh_matches_the_fit_scores(finished_run, tmp_path):
    # The fit scores its mesh as extracted (normalised frame, float64); eval reads mesh.ply back
    # (original frame, float32 on disk). The field's IoUs are identical; the surface metrics move
    # only as far as float32 face areas move a few of the 5,000 seeded samples to other faces.
    import shutil

    from sine_fields.shapes.run import ShapeRun

    _, run = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    fitted = json.loads((run / "metrics.json").read_text())
    scored = ShapeRun.open(copy).score("cpu")
    for key in METRIC_KEYS:
        surface = key in ("chamfer_l1", "chamfer_l2", "normal_consistency", "fscore")
        assert scored[key] == (pytest.approx(fitted[key], rel=2e-3) if surface else fitted[key]), key
    assert scored["timings"] == fitted["timings"]


def test_same_command_resumes_and_other_options_are_refused(finished_run, capsys):
    mesh, run = finished_run
    before = (run / "config.json").read_text()
    assert cli.main(["fit", "--mesh", str(mesh), "--output", str(run), *TINY]) == 0
    assert cli.main(["fit", "--mesh", str(mesh), "--output", str(run), *TINY, "--seed", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "holds another run" in err and len(err.splitlines()) == 1
    assert (run / "config.json").read_text() == before


def test_extract_eval_and_compare(finished_run, capsys, tmp_path):
    _, run = finished_run
    assert cli.main(["extract", str(run), "--resolution", "32", "--method", "dense", "--device", "cpu"]) == 0
    dense = json.loads((run / "extraction.json").read_text())
    assert cli.main(["extract", str(run), "--resolution", "32", "--device", "cpu", "--mesh", str(tmp_path / "m.obj")]) == 0
    fine = json.loads((run / "extraction.json").read_text())
    assert dense["method"] == "dense" and dense["field_queries"] == 33**3 and dense["level"] == 0.5
    assert fine["method"] == "coarse-to-fine" and fine["field_queries"] <= dense["field_queries"]
    assert (tmp_path / "m.obj").is_file()
    assert cli.main(["eval", str(run), "--device", "cpu"]) == 0
    assert json.loads((run / "metrics.json").read_text())["field_queries"] == fine["field_queries"]
    capsys.readouterr()
    assert cli.main(["compare", str(run), str(run), "--output", str(tmp_path / "t.md")]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| run | mesh |") and table.count("sine k=2 ω=30") == 2
    assert len(table.strip().splitlines()) == 4  # header, rule, two rows
    assert (tmp_path / "t.md").read_text().strip() == table.strip()


def test_extract_and_compare_never_write_over_run_files_or_existing_files(finished_run, tmp_path, capsys):
    _, run = finished_run
    truth = (run / "ground_truth.ply").read_bytes()
    metrics = (run / "metrics.json").read_text()
    # A run's own files are refused even with --overwrite: eval would then score the mesh against itself.
    for name, args in (("ground_truth.ply", ["extract", str(run), "--mesh", str(run / "ground_truth.ply"), "--overwrite"]),
                       ("metrics.json", ["compare", str(run), "--output", str(run / "metrics.json"), "--overwrite"])):
        assert cli.main([*args, "--resolution", "32", "--device", "cpu"] if args[0] == "extract" else args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and f"run file {name}" in err and len(err.splitlines()) == 1, err
    assert (run / "ground_truth.ply").read_bytes() == truth and (run / "metrics.json").read_text() == metrics
    # Any other existing file needs --overwrite.
    for option, path, args in (("--mesh", tmp_path / "mine.ply", ["extract", str(run), "--resolution", "32", "--device", "cpu"]),
                               ("--output", tmp_path / "mine.md", ["compare", str(run)])):
        path.write_bytes(b"mine")
        assert cli.main([*args, option, str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert f"{option} {path} exists; pass --overwrite" in err and len(err.splitlines()) == 1, err
        assert path.read_bytes() == b"mine"
        assert cli.main([*args, option, str(path), "--overwrite"]) == 0
        assert path.read_bytes() != b"mine"
    # Re-extracting into the run's own mesh.ply is what `extract` is for.
    assert cli.main(["extract", str(run), "--resolution", "32", "--device", "cpu", "--mesh", str(run / "mesh.ply")]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--mesh", "no/such/file.ply", "--output", "{tmp}/a"], "neither a file nor a known source"),
        (["fit", "--mesh", "{tmp}/notes.txt", "--output", "{tmp}/a"], "unsupported mesh format '.txt'"),
        (["fit", "--mesh", "{tmp}/empty.ply", "--output", "{tmp}/a"], "empty.ply"),
        (["fit", "--mesh", "{mesh}", "--output", "{tmp}/a", "--linear", "sine", "--rank", "300"], "rank must be <="),
        (["fit", "--mesh", "{mesh}", "--output", "{tmp}/full"], "not empty and holds no sine-fields run"),
        (["extract", "{tmp}"], "holds no config.json"),
        (["extract", "{run}", "--resolution", "48"], "32 * 2^m"),
        (["fit", "--mesh", "{mesh}", "--output", "{tmp}/a", "--resolution", "100"], "--resolution: coarse-to-fine needs"),
        (["extract", "{run}", "--mesh", "{tmp}/m.xyz"], "unsupported format '.xyz'"),
        (["level-check"], None),
    ],
)
def test_user_mistakes_are_one_line_errors(finished_run, tmp_path, capsys, args, message):
    if message is None:  # --level outside (0, 1) for an occupancy run
        args, message = ["extract", "{run}", "--level", "1.5"], "probability in (0, 1)"
    mesh, run = finished_run
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.ply").write_bytes(b"")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious.txt").write_text("mine")
    args = [a.format(tmp=tmp_path, mesh=mesh, run=run) for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "full" / "precious.txt").read_text() == "mine"
    assert not (tmp_path / "a").exists()


def test_help_lists_the_same_short_flags_as_the_config_tree(capsys):
    from sine_fields.shapes.field import FieldConfig
    from sine_fields.shapes.fit import TrainConfig

    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = capsys.readouterr().out
    for config in (FieldConfig, TrainConfig):
        for name in config.__dataclass_fields__:
            assert f"--{name.replace('_', '-')} " in out, name
    assert "--field." not in out and "--train." not in out and "--resolution" in out


def test_report_from_run_folders(finished_run, tmp_path):
    from sine_fields.shapes.report import load_runs, write_report

    _, run = finished_run
    report = write_report(load_runs([run]), tmp_path / "report", title="sphere", command="sine-fields fit ...")
    text = report.read_text()
    assert "| run | mesh |" in text and "sine k=2 ω=30" in text and "`sine-fields fit ...`" in text
    for name in ("quality.png", "renders.png"):
        assert (tmp_path / "report" / name).read_bytes().startswith(b"\x89PNG")
