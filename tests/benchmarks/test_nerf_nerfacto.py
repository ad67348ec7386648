"""benchmarks/nerf_nerfacto.py: the parameter split of sine-nerfacto and its dense twin, against closed forms."""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("nerfstudio")

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_nerf_nerfacto_under_test", ROOT / "benchmarks" / "nerf_nerfacto.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build(linear):
    from sine_fields.methods.common import model_in_unit_box
    from sine_fields.methods.sine_nerfacto import SineNerfactoModelConfig

    return model_in_unit_box(SineNerfactoModelConfig(linear=linear, rank=4), num_train_data=4)


def linear_params(shapes, rank=None):
    """Weights + biases of layers (in, out): dense, or rank-k U V (k (in + out)) where k fits."""
    total = 0
    for fan_in, fan_out in shapes:
        factorised = rank is not None and rank <= min(fan_in, fan_out)
        total += (rank * (fan_in + fan_out) if factorised else fan_in * fan_out) + fan_out
    return total


def test_parameter_split_closed_form():
    bench = load_benchmark()
    dense, sine = bench.parameter_split(build("dense")), bench.parameter_split(build("sine"))
    # nerfacto's field MLPs: base 32 -> 64 -> 16 (hash features to density + 15 geometry features);
    # head (16 SH direction + 15 geometry + 32 appearance = 63) -> 64 -> 64 -> 3.
    layers = [(32, 64), (64, 16), (63, 64), (64, 64), (64, 3)]
    assert dense["field_mlps"] == linear_params(layers)
    assert sine["field_mlps"] == linear_params(layers, rank=4)  # the 64 -> 3 layer stays dense (k > 3)
    for split in (dense, sine):
        assert split["hash_grids"] + split["field_mlps"] + split["other"] == split["total"]
    assert dense["hash_grids"] == sine["hash_grids"] and dense["other"] == sine["other"]
    # the claim the docs make: the grids hold nearly everything, so factorising the MLPs cannot matter
    assert dense["field_mlps"] < 0.001 * dense["total"]


def test_short_runs_per_seed_store_their_curve_and_a_rerun_keeps_them(tmp_path, capsys):
    """Two seeds of a few iterations on a 16 px Duck: a held-out PSNR at every quarter, the last-quarter gain
    read from it, different seeds giving different runs, the summary per layer kind; the same command again
    trains nothing, and other settings without --overwrite are one line and exit code 2."""
    import json

    from sine_fields.data.scenes import RenderOptions, render_scene

    bench = load_benchmark()
    scene = tmp_path / "duck16"
    render_scene("duck", scene, RenderOptions(views=8, resolution=16))
    output = tmp_path / "nerfacto.json"
    argv = ["--scene", str(scene), "--views", "8", "--resolution", "16", "--iterations", "8", "--rays", "64",
            "--seed", "0", "--seed", "1", "--output", str(output)]
    assert bench.main(argv) == 0
    runs = json.loads(output.read_text())["runs"]
    assert [(r["linear"], r["seed"]) for r in runs] == [("sine", 0), ("dense", 0), ("sine", 1), ("dense", 1)]
    for run in runs:
        assert [step for step, _ in run["psnr_curve"]] == [2, 4, 6, 8]
        assert run["psnr_curve"][-1][1] == run["psnr"]
        assert run["last_quarter_gain_db"] == pytest.approx(run["psnr"] - run["psnr_curve"][2][1])
    assert runs[0]["psnr"] != runs[2]["psnr"]  # the seed reached the run
    summaries = bench.seed_summaries(runs)
    assert [(m["linear"], m["seeds"]) for m in summaries] == [("sine", [0, 1]), ("dense", [0, 1])]
    table = bench.markdown({"runs": runs})
    assert "| duck16 | dense | 0, 1 |" in table
    capsys.readouterr()
    assert bench.main(argv) == 0
    assert json.loads(output.read_text())["runs"] == runs
    assert capsys.readouterr().out.count("already in") == 4
    one_seed = [*argv[:-6], "--seed", "0", "--output", str(output)]  # trains nothing, and the file names this command
    assert bench.main(one_seed) == 0
    rerun = json.loads(output.read_text())
    assert rerun["runs"] == runs and "--seed 1" not in rerun["command"]
    assert bench.main([*argv[:-2], "--iterations", "9", "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "other settings (iterations: 8 there, 9 here)" in error
