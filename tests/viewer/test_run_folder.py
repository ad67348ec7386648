"""Run folders the viewer refuses: each gives a one-line error, from the library and from the command."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sine_fields.errors import UserError
from sine_fields.viewer.run_folder import load_run, load_runs


def copy_run(run, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


def test_a_finished_run_loads_in_the_normalised_frame(fitted_run):
    run = load_run(fitted_run)
    metrics = json.loads((fitted_run / "metrics.json").read_text())
    assert run.name == fitted_run.name and run.num_parameters == metrics["num_parameters"]
    mesh = run.mesh("normalised")
    assert len(mesh.faces) > 0
    # The capsule's longest side is 1 in the normalised frame, centred at the origin.
    assert mesh.bounds[1].max() < 0.56 and mesh.bounds[0].min() > -0.56 and mesh.extents.max() > 0.8
    # The original frame is the capsule's own: radius 0.3, height 0.5 + 2 * 0.3 along z.
    truth = run.ground_truth_mesh("original")
    assert np.allclose(truth.extents, [0.6, 0.6, 1.1], atol=1e-6)
    assert np.allclose(run.normalisation.apply(run.mesh("original").vertices), mesh.vertices)


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        load_run(tmp_path / "nope")


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_run(tmp_path)


def test_older_version(fitted_run, tmp_path):
    folder = copy_run(fitted_run, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["format_version"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="format_version"):
        load_run(folder)


@pytest.mark.parametrize("removed", ["mesh.ply", "metrics.json", "ground_truth.ply", "checkpoint.pt"])
def test_incomplete_run(fitted_run, tmp_path, removed):
    folder = copy_run(fitted_run, tmp_path)
    (folder / removed).unlink()
    with pytest.raises(UserError, match=removed.replace(".", r"\.")):
        load_run(folder)


def test_truncated_metrics(fitted_run, tmp_path):
    folder = copy_run(fitted_run, tmp_path)
    (folder / "metrics.json").write_text('{"iou": 0.9')
    with pytest.raises(UserError, match="not valid JSON"):
        load_run(folder)


def test_runs_of_different_meshes_or_same_names(fitted_run, tmp_path):
    other = copy_run(fitted_run, tmp_path, "other")
    config = json.loads((other / "config.json").read_text())
    config["mesh"] = "bunny"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="different meshes"):
        load_runs([fitted_run, other])
    twin = copy_run(fitted_run, tmp_path / "elsewhere", fitted_run.name)
    with pytest.raises(UserError, match="both named"):
        load_runs([fitted_run, twin])


def test_command_prints_one_line_and_exits_2(fitted_run, tmp_path):
    folder = copy_run(fitted_run, tmp_path)
    (folder / "mesh.ply").unlink()
    done = subprocess.run([sys.executable, "-m", "sine_fields.cli", "view", str(folder), "--port", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "mesh.ply" in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("option,expected", [({"host": "nosuch.invalid"}, "--host"), ({"device": "tpu"}, "--device")])
def test_bad_host_or_device_is_a_user_error(fitted_run, option, expected):
    # In-process (the command's one-line printing of a UserError is covered just above).
    from sine_fields.viewer.app import main

    with pytest.raises(UserError, match=f"^{expected}") as caught:
        main((fitted_run,), **option)
    assert "\n" not in str(caught.value)
