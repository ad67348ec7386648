"""``--omega auto``: the probe picks the best held-back score, records itself in the run folder, hands
its state to the fit (which ends where the fixed-omega fit would), and a resumed run does not probe again."""

import json
from dataclasses import replace

import pytest
import torch

from sine_fields import cli
from sine_fields.errors import UserError
from sine_fields.shapes import omega as omega_module
from sine_fields.shapes import run as run_module
from sine_fields.shapes.config import ExtractConfig, FitConfig
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.fit import TrainConfig, load_field
from sine_fields.shapes.ground_truth import GroundTruth
from sine_fields.shapes.omega import holdout_points, holdout_score, probe_omega, probe_steps
from sine_fields.shapes.run import ShapeRun

from .conftest import sphere_mesh

# omega 1e-3 makes sin(omega U V) / gain about 1e-4 of a weight: the hidden layers pass on their biases only,
# so the field is one constant and cannot separate the sphere from the box around it. omega 30 fits it.
HOPELESS, GOOD = 1e-3, 30.0
SMALL_FIELD = FieldConfig(width=32, rank=2, omega="auto")
TRAIN = TrainConfig(steps=100, batch_size=512, samples=5000, lr=3e-3)


@pytest.fixture(autouse=True)
def one_thread_and_small_scoring(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(run_module, "IOU_POINTS", 3000)
    monkeypatch.setattr(run_module, "SCORE_SURFACE_SAMPLES", 3000)
    monkeypatch.setattr(omega_module, "HOLDOUT_POINTS", 4000)
    monkeypatch.setattr(omega_module, "PROBE_SHARE", 0.3)  # 30 probe steps: enough for omega 30 to find the sphere


@pytest.fixture(scope="module")
def gt():
    return GroundTruth(sphere_mesh(3))


@pytest.mark.parametrize("target", ["occupancy", "sdf"])
@pytest.mark.parametrize("candidates", [(HOPELESS, GOOD), (GOOD, HOPELESS)])
def test_probe_picks_the_candidate_with_the_best_held_back_score(gt, tmp_path, target, candidates):
    config = FitConfig("sphere", replace(SMALL_FIELD, target=target), TRAIN)
    probe = probe_omega(gt, config, tmp_path, candidates=candidates)
    assert probe.chosen == GOOD
    assert probe.probe_steps == probe_steps(TRAIN) == 30 and probe.extra_steps == 30
    assert probe.metric == ("iou" if target == "occupancy" else "l1")
    # The scores are the held-back scores of the candidates' probe states, and the chosen one is the best.
    held_back = holdout_points(gt, TRAIN, 4000)
    for omega, score in zip(probe.candidates, probe.scores):
        state = torch.load(probe.checkpoints[omega], weights_only=True)
        assert state["step"] == 30
        field = load_field(replace(config.field, omega=omega), probe.checkpoints[omega], torch.device("cpu"))
        assert holdout_score(field, held_back, TRAIN) == pytest.approx(score)
    good, hopeless = probe.scores[probe.candidates.index(GOOD)], probe.scores[probe.candidates.index(HOPELESS)]
    if target == "occupancy":
        # A constant field puts every point outside (IoU 0) or inside (IoU = the inside share).
        assert hopeless == 0.0 or hopeless == pytest.approx(held_back.occupancy.mean(), abs=0.01)
        assert good > hopeless + 0.3
    else:
        assert good < hopeless / 2


def test_held_back_points_are_not_the_training_pool(gt):
    from sine_fields.shapes.sampling import training_points

    pool = training_points(gt, 4000, seed=TRAIN.seed)
    held_back = holdout_points(gt, TRAIN, 4000)
    assert held_back.points.shape == pool.points.shape
    assert not (held_back.points[:, None, :] == pool.points[None, :100, :]).all(-1).any()


def test_auto_run_records_the_probe_and_ends_where_the_fixed_omega_run_does(sphere_file, tmp_path, monkeypatch):
    monkeypatch.setattr(omega_module, "CANDIDATES", (HOPELESS, GOOD))
    extract = ExtractConfig(resolution=32, method="dense")
    auto = ShapeRun.fit(tmp_path / "auto", FitConfig(str(sphere_file), SMALL_FIELD, TRAIN, extract), device="cpu",
                        progress=False)
    record = json.loads((tmp_path / "auto" / "omega.json").read_text())
    assert record["chosen"] == GOOD and record["candidates"] == [HOPELESS, GOOD] and len(record["scores"]) == 2
    assert record["metric"] == "iou" and record["probe_steps"] == 30 and record["seconds"] > 0
    # The run's config holds the chosen number, so extract / pack / unpack read it like any other run.
    assert auto.field_config.omega == GOOD
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["field"]["mlp"]["omega"] == GOOD
    assert auto.metrics["timings"]["omega_probe_seconds"] == record["seconds"]
    assert auto.fit_config.field.omega == "auto"  # as it was asked: fit-many's skip test compares this

    fixed = ShapeRun.fit(tmp_path / "fixed", FitConfig(str(sphere_file), replace(SMALL_FIELD, omega=GOOD), TRAIN, extract),
                         device="cpu", progress=False)
    a = torch.load(auto.paths.checkpoint, weights_only=True)
    b = torch.load(fixed.paths.checkpoint, weights_only=True)
    assert a["step"] == b["step"] == TRAIN.steps
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert auto.metrics["iou"] == fixed.metrics["iou"]


def test_resumed_auto_run_does_not_probe_again(sphere_file, tmp_path, monkeypatch):
    monkeypatch.setattr(omega_module, "CANDIDATES", (HOPELESS, GOOD))
    config = FitConfig(str(sphere_file), SMALL_FIELD, replace(TRAIN, checkpoint_every=50),
                       ExtractConfig(resolution=32, method="dense"))
    root = tmp_path / "run"
    ShapeRun.fit(root, config, device="cpu", progress=False)
    record = (root / "omega.json").read_text()
    (root / "metrics.json").unlink()  # an interrupted run: the checkpoint of step 100 stays

    def no_probe(*args, **kwargs):
        raise AssertionError("a resumed run must not probe again")

    monkeypatch.setattr(omega_module, "probe_omega", no_probe)
    run = ShapeRun.fit(root, config, device="cpu", progress=False)
    assert run.metrics["timings"]["resumed_from_step"] == TRAIN.steps
    assert (root / "omega.json").read_text() == record and run.field_config.omega == GOOD
    assert run.fit_config.same_fit(config)  # what fit-many checks before skipping a finished run


def test_auto_into_a_folder_with_a_fixed_omega_run_says_how_to_resume_it(sphere_file, tmp_path):
    config = FitConfig(str(sphere_file), replace(SMALL_FIELD, omega=GOOD), replace(TRAIN, steps=10),
                       ExtractConfig(resolution=32, method="dense"))
    ShapeRun.fit(tmp_path / "run", config, device="cpu", progress=False)
    with pytest.raises(UserError, match="fitted with omega 30.0 .*--omega 30.0"):
        ShapeRun.fit(tmp_path / "run", replace(config, field=SMALL_FIELD), device="cpu", progress=False)


@pytest.mark.parametrize("linear", ["dense", "lowrank"])
def test_auto_without_sine_layers_is_a_one_line_error(sphere_file, tmp_path, capsys, linear):
    code = cli.main(["fit", "--mesh", str(sphere_file), "--output", str(tmp_path / "run"), "--linear", linear,
                     "--omega", "auto", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--omega auto" in err and f"--linear {linear}" in err
    assert not (tmp_path / "run").exists()


def test_cli_reads_auto_and_numbers(capsys):
    import tyro

    from sine_fields.shapes.commands import Fit

    for flag, expected in ((["--omega", "auto"], "auto"), (["--omega", "300"], 300.0), ([], None)):
        assert tyro.cli(Fit, args=["--mesh", "bunny", "--output", "x", *flag]).field.omega == expected
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    assert "auto" in capsys.readouterr().out


def test_fit_many_skips_a_finished_auto_run(sphere_file, tmp_path, monkeypatch):
    from sine_fields.shapes.many import fit_one

    monkeypatch.setattr(omega_module, "CANDIDATES", (HOPELESS, GOOD))
    config = FitConfig(str(sphere_file), SMALL_FIELD, replace(TRAIN, steps=40), ExtractConfig(resolution=32, method="dense"))
    shared = {k: v for k, v in config.to_dict().items() if k != "mesh"}
    assert shared["field"]["mlp"]["omega"] == "auto"  # fit-many hands "auto" to every task
    arguments = (str(sphere_file), str(tmp_path / "run"), shared, config.extract.to_dict(), (16,), 0, "cpu", 1)
    first = fit_one(*arguments)
    assert first["status"] == "ok", first["reason"]
    assert json.loads((tmp_path / "run" / "omega.json").read_text())["chosen"] == GOOD
    assert fit_one(*arguments)["status"] == "skipped (finished before)"
