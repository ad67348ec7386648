"""benchmarks/nerf_lite.py: the CPU shares, the seed summaries and tables, and a --quick run of the real ns-train and
ns-eval commands end to end (16 px Duck, 20 iterations)."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "nerf_lite.py"


@pytest.fixture(scope="module")
def lite():
    spec = importlib.util.spec_from_file_location("benchmark_nerf_lite_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cpu_shares_split_the_counters_into_busy_idle_and_stolen(lite):
    # /proc/stat order: user nice system idle iowait irq softirq steal (guest columns after)
    before = [100, 0, 50, 1000, 0, 0, 0, 0, 0, 0]
    after = [400, 0, 150, 1400, 100, 0, 0, 200, 0, 0]  # +300 user +100 system +400 idle +100 iowait +200 steal
    assert lite._cpu_shares(before, after) == {"busy": 0.364, "idle": 0.455, "steal": 0.182}
    assert lite._cpu_shares(None, after) is None


def _run(linear, seed, psnr, wall):
    return {"linear": linear, "seed": seed, "rank": 5, "omega": 100.0 if linear == "sine" else None,
            "results": {"psnr": psnr}, "ns_train_wall_seconds": wall}


def test_seed_summaries_give_mean_sample_std_and_range_per_layer_kind(lite):
    runs = [_run("sine", 42, 26.0, 500.0), _run("dense", 42, 30.0, 400.0), _run("sine", 1, 27.0, 520.0),
            _run("sine", 2, 28.0, 510.0)]
    (sine,) = lite.seed_summaries(runs)  # dense ran one seed: no summary
    assert sine["seeds"] == [42, 1, 2] and sine["kind"] == "sine k = 5, omega 100"
    assert sine["psnr_mean"] == pytest.approx(27.0) and sine["psnr_std"] == pytest.approx(1.0)  # sample std
    assert (sine["psnr_min"], sine["psnr_max"], sine["wall_max"]) == (26.0, 28.0, 520.0)
    for run in runs:
        run["parameters"] = {"model": 12_916 if run["linear"] == "sine" else 241_540, "dense_twin": 241_540}
    headline = lite.headline_markdown({"runs": runs}).splitlines()
    assert len(headline) == 3  # header, rule, and the one layer kind run with several seeds
    assert headline[2] == "| sine k = 5, omega 100 | 12,916 (5.3 %) | 27.00 ± 1.00 (3 seeds) | 26.00 | 520 |"


def test_quick_run_end_to_end(tmp_path):
    output = tmp_path / "lite.json"
    # half the recipe's rates: the flags reach ns-train, which records the rates it used in the run's config
    command = [sys.executable, str(SCRIPT), "--quick", "--seed", "3", "--seed", "4", "--lr-scale", "0.5", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(output.read_text())
    first, second = data["runs"]
    assert (first["seed"], second["seed"]) == (3, 4) and "--machine.seed 4" in second["command"]
    assert first["results"]["psnr"] != second["results"]["psnr"]  # the seed reached ns-train
    assert "| sine k = 5, omega 100 | 3, 4 |" in done.stdout  # the summary over the seeds
    run = first
    assert run["linear"] == "sine" and run["iterations"] == 20
    # the dense twin is the same config with dense layers: the sine field is a small fraction of it
    assert 0.04 <= run["parameters"]["model"] / run["parameters"]["dense_twin"] <= 0.065
    assert 5.0 < run["results"]["psnr"] < 60.0
    steps = [step for step, _ in run["psnr_curve"]]
    assert steps == sorted(steps) and steps[-1] == 20 and len(steps) >= 2  # logged during training + ns-eval's
    assert run["last_quarter_gain_db"] is not None
    assert run["ns_train_wall_seconds"] > 0 and len(run["load_average_1min_before_and_after"]) == 2
    shares = run["cpu_time_shares_during_training"]
    assert shares["busy"] > 0 and sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert run["precision"] == "auto" and data["machine"]["bfloat16_units"] in ("AMX tiles", "AVX512-BF16", None)
    assert data["lr_scale"] == 0.5
    from sine_fields.methods.sine_nerf_lite import FACTORS_U_LR_SCALE, FIELD_LR, FIELD_LR_FINAL

    assert run["learning_rates"]["fields"] == pytest.approx([FIELD_LR / 2, FIELD_LR_FINAL / 2])
    assert run["learning_rates"]["factors_u"] == pytest.approx([FIELD_LR * FACTORS_U_LR_SCALE / 2, FIELD_LR_FINAL * FACTORS_U_LR_SCALE / 2])
    assert "| sine-nerf-lite | sine k = 5, omega 100 | 3 |" in done.stdout
    # the same command again: the finished run is kept, not redone
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 0 and "already in" in again.stdout
    # other settings into the same file: refused in one line, exit 2
    other = subprocess.run([sys.executable, str(SCRIPT), "--output", str(output), "--views", "9"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "--overwrite" in other.stderr
    assert "views: 8 there, 9 here" in other.stderr  # names what differs (--quick renders 8 views)


def test_iterations_pass_the_run_length_and_refuse_what_cannot_run(lite):
    assert lite.ns_train_flags(False, None) == []  # the recipe as a user runs it
    assert lite.ns_train_flags(False, 4600) == ["--max-num-iterations", "4600"]
    assert lite.ns_train_flags(True, None)[:2] == ["--max-num-iterations", "20"]
    for quick, iterations in ((True, 100), (False, 3)):
        with pytest.raises(lite.BenchmarkError, match="--iterations"):
            lite.ns_train_flags(quick, iterations)


def test_lr_scale_multiplies_every_optimisers_start_and_final_rate(lite):
    from sine_fields.methods.sine_nerf_lite import FACTORS_U_LR_SCALE, FIELD_LR, FIELD_LR_FINAL

    assert lite.lr_scale_flags(1.0) == []  # the recipe as a user runs it
    flags = lite.lr_scale_flags(2.0)
    pairs = dict(zip(flags[::2], (float(v) for v in flags[1::2])))
    assert pairs == pytest.approx({
        "--optimizers.fields.optimizer.lr": 2 * FIELD_LR, "--optimizers.fields.scheduler.lr-final": 2 * FIELD_LR_FINAL,
        "--optimizers.factors-u.optimizer.lr": 2 * FIELD_LR * FACTORS_U_LR_SCALE,
        "--optimizers.factors-u.scheduler.lr-final": 2 * FIELD_LR_FINAL * FACTORS_U_LR_SCALE})
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(lite.BenchmarkError, match="--lr-scale"):
            lite.lr_scale_flags(bad)
    # a file written before the scale was recorded ran the recipe's rates
    settings = {"scene": "duck", "views": 60, "resolution": 64, "quick": False, "iterations": None}
    assert lite.same_settings(settings, {**settings, "lr_scale": 1.0})
    assert not lite.same_settings(settings, {**settings, "lr_scale": 2.0})


def test_schedule_table_compares_each_kind_at_equal_steps_under_its_own_best_schedule(lite):
    def run(linear, seed, at_100, at_200, **extra):
        r = _run(linear, seed, at_200, 0.0)
        r.update(iterations=200, psnr_curve=[[100, at_100], [150, 0.0], [200, at_200]], **extra)
        return r

    # A: rates decay over the whole run (a file from before runs recorded decay_steps); B: over the first 100
    # steps, then held (recorded by the file in one case, by the run in the other)
    whole = {"machine": {"bfloat16_tiles": True}, "runs": [run("sine", 1, 10.0, 20.0), run("sine", 2, 12.0, 22.0), run("lowrank", 1, 14.0, 18.0),
                      run("lowrank", 2, 14.0, 19.0), run("dense", 1, 30.0, 31.0)]}
    held = {"decay_steps": 100, "machine": {"bfloat16_tiles": False}, "runs": [run("sine", 1, 15.0, 21.0), run("sine", 2, 16.0, 20.0),
                                         run("sine", 3, 16.0, 30.0, decay_steps=100),  # a lucky seed B alone ran
                                         run("lowrank", 1, 13.0, 19.5), run("lowrank", 2, 13.0, 20.5)]}
    lines = lite.schedules_at_steps_markdown([whole, held], steps=(100, 200)).splitlines()
    assert lines[0] == ("| layers | learning-rate schedule (steps) | run length | field products | PSNR at step 100 (dB) "
                        "| PSNR at step 200 (dB) |")
    assert lines[2:6] == [  # no dense row; step 150 is not asked for
        "| sine | decay over 100, held to 200 | 200 | float32 | 15.67 ± 0.58 (3) | 23.67 ± 5.51 (3) |",
        "| sine | decay over 200 | 200 | bfloat16 | 11.00 ± 1.41 (2) | 21.00 ± 1.41 (2) |",
        "| lowrank | decay over 100, held to 200 | 200 | float32 | 13.00 ± 0.00 (2) | 20.00 ± 0.71 (2) |",
        "| lowrank | decay over 200 | 200 | bfloat16 | 14.00 ± 0.00 (2) | 18.50 ± 0.71 (2) |"]
    # at step 100 sine is best under B, plain low-rank under A: gaps 15 - 14 and 16 - 14, t = 1.5 / 0.5 = 3;
    # at 200 sine's best is A on the seeds both its schedules ran (21 against 20.5), not B for its seed 3, and
    # plain low-rank's is B: gaps 20 - 19.5 and 22 - 20.5, t = 1 / 0.5 = 2 (1 d.o.f.: p = 1 - 2 atan(t) / pi)
    assert lines[-2] == ("| 100 | decay over 100, held to 200 (float32) | decay over 200 (bfloat16) | 1, 2 | **+1.50 ± 0.71**; paired t 3.00 "
                         f"(1 d.o.f.), two-sided p {1 - 2 * math.atan(3) / math.pi:.3f} |")
    assert lines[-1] == ("| 200 | decay over 200 (bfloat16) | decay over 100, held to 200 (float32) | 1, 2 | **+1.00 ± 0.71**; paired t 2.00 "
                         f"(1 d.o.f.), two-sided p {1 - 2 * math.atan(2) / math.pi:.3f} |")
    # a run's own precision wins over its machine; a file without a machine says so
    assert lite.run_arithmetic({"precision": "float32"}, whole) == "float32"
    assert lite.run_arithmetic({"precision": "auto"}, {"runs": []}) == "unknown"


def test_lr_sweep_table_compares_each_kind_at_its_own_best_rates(lite):
    def run(linear, seed, psnr):
        r = _run(linear, seed, psnr, 0.0)
        r.update(iterations=2300, last_quarter_gain_db=1.0, learning_rates={"fields": [0.005, 0.0002]})
        return r

    recipe = {"runs": [run("sine", 42, 27.0), run("sine", 1, 28.0), run("lowrank", 42, 24.0), run("lowrank", 1, 26.0),
                       run("dense", 42, 31.0)]}  # dense: a reference row, not in the comparison
    doubled = {"lr_scale": 2.0, "runs": [run("sine", 42, 26.0), run("lowrank", 42, 27.0)]}
    for r in doubled["runs"]:
        r["learning_rates"] = {"fields": [0.01, 0.0004]}
    lines = lite.lr_sweep_markdown([doubled, recipe]).splitlines()
    assert [line.split(" | ")[:3] for line in lines[2:7]] == [
        ["| sine", "x1", "0.005 → 0.0002"], ["| sine", "x2", "0.01 → 0.0004"],
        ["| lowrank", "x1", "0.005 → 0.0002"], ["| lowrank", "x2", "0.01 → 0.0004"], ["| dense", "x1", "0.005 → 0.0002"]]
    assert "| 42: 27.00, 1: 28.00 | 27.50 ± 0.71 (2) | +1.00 |" in lines[2]
    assert "| 26.00 (1) |" in lines[3]
    # sine is best at x1 (seed 42: 27 against 26); plain low-rank x2 ran seed 42 only, so its best is judged on
    # that seed, where x2 has 27 against 24 (x1's better mean over two seeds does not count)
    assert lines[-4] == "| plain low-rank rates (sine at its best, x1) | seeds | sine - plain low-rank, seed for seed (dB) |"
    # gaps 27 - 24 and 28 - 26: mean 2.5, sample std sqrt(0.5), t = 2.5 / (sqrt(0.5) / sqrt(2)) = 5 on 1 d.o.f.
    assert lines[-2] == f"| x1 | 42, 1 | **+2.50 ± 0.71**; paired t 5.00 (1 d.o.f.), two-sided p {1 - 2 * math.atan(5) / math.pi:.3f} |"
    assert lines[-1] == "| x2 (its best) | 42 | +0.00 (one seed) |"
    # with seed 1 at x2 as well, on a seed where x1 is better, x2 still wins on the mean of both seeds (26 against 25)
    doubled["runs"].append(run("lowrank", 1, 25.0))
    doubled["runs"][-1]["learning_rates"] = {"fields": [0.01, 0.0004]}
    lines = lite.lr_sweep_markdown([doubled, recipe]).splitlines()
    # gaps 27 - 27 and 28 - 25: mean 1.5, sample std 2.12, t = 1.5 / (2.12 / sqrt(2)) = 1 on 1 d.o.f.: p 0.5
    assert lines[-1] == "| x2 (its best) | 42, 1 | **+1.50 ± 2.12**; paired t 1.00 (1 d.o.f.), two-sided p 0.500 |"
    # a run written before the rates were recorded says so
    del recipe["runs"][0]["learning_rates"]
    assert "| sine | x1 | the recipe's |" in lite.lr_sweep_markdown([recipe])
    with pytest.raises(ValueError, match="one length"):
        lite.lr_sweep_markdown([recipe, {"runs": [{**run("sine", 3, 20.0), "iterations": 4600}]}])


def test_runs_other_processes_wrote_meanwhile_are_kept_once(lite, tmp_path):
    settings = {"scene": "duck", "views": 60, "resolution": 64, "quick": False, "iterations": 4600, "lr_scale": 1.0}
    output = tmp_path / "long.json"
    mine = {**settings, "runs": [{"linear": "sine", "seed": 42}]}
    assert lite.runs_written_meanwhile(output, mine) == [{"linear": "sine", "seed": 42}]  # no file yet
    # another process (plain low-rank) wrote its run, and the file still holds this one's
    output.write_text(json.dumps({**settings, "runs": [{"linear": "sine", "seed": 42}, {"linear": "lowrank", "seed": 42}]}))
    assert lite.runs_written_meanwhile(output, mine) == [{"linear": "sine", "seed": 42}, {"linear": "lowrank", "seed": 42}]
    # a file of other settings (the recipe's own length, written before `iterations` was recorded) is not mixed in
    output.write_text(json.dumps({**{k: v for k, v in settings.items() if k != "iterations"}, "runs": [{"linear": "dense", "seed": 1}]}))
    assert lite.runs_written_meanwhile(output, mine) == [{"linear": "sine", "seed": 42}]
    assert lite.same_settings({**settings, "iterations": None}, {**settings, "iterations": None})


def test_plot_only_draws_the_curves_of_a_json_and_keeps_an_existing_png(lite, tmp_path):
    runs = [{**_run(linear, seed, 25.0, 500.0), "psnr_curve": [[575, 20.0 + seed], [1150, 24.0 + seed]]}
            for linear in ("sine", "lowrank", "dense") for seed in (1, 2)]
    results = tmp_path / "lite.json"
    results.write_text(json.dumps({"scene": "/somewhere/duck64", "resolution": 64, "runs": runs}))
    png = tmp_path / "curves.png"
    assert lite.main(["--plot-only", str(png), "--output", str(results)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = png.read_bytes()
    assert lite.main(["--plot-only", str(png), "--output", str(results)]) == 2  # exists, no --overwrite
    assert png.read_bytes() == before
    assert lite.main(["--plot-only", str(tmp_path / "other.png"), "--output", str(tmp_path / "missing.json")]) == 2


def test_tables_group_runs_by_layer_kind_whatever_order_they_finished_in(lite):
    runs = [_run("lowrank", 42, 24.0, 600.0), _run("sine", 42, 27.0, 500.0), _run("dense", 42, 31.0, 450.0),
            _run("lowrank", 1, 23.0, 600.0), _run("sine", 1, 27.5, 500.0)]
    for run in runs:
        run.update(parameters={"model": 10, "dense_twin": 100}, iterations=4600, last_quarter_gain_db=0.1,
                   load_average_1min_before_and_after=[1.0, 1.0])
        run["results"].update(psnr_std=0.5, ssim=0.9)
    assert [(r["linear"], r["seed"]) for r in lite.in_table_order(runs)] == [
        ("sine", 42), ("sine", 1), ("lowrank", 42), ("lowrank", 1), ("dense", 42)]
    rows = [line.split(" | ")[1:3] for line in lite.markdown({"runs": runs}).splitlines()[2:7]]
    assert rows == [["sine k = 5, omega 100", "42"], ["sine k = 5, omega 100", "1"], ["lowrank k = 5", "42"],
                    ["lowrank k = 5", "1"], ["dense", "42"]]
    assert "smoothed" not in lite.markdown({"runs": runs})  # no curves: no smoothed column
    # one run logged its last half, an exact line 0.1 dB per 575 steps (0.2 dB per quarter of 4,600): its
    # smoothed gain, with no error, is under the rule; the runs without a curve read "-"
    runs[1]["psnr_curve"] = [[step, 27.0 - 0.1 * (4600 - step) / 575] for step in range(575, 4601, 575)]
    lines = lite.markdown({"runs": runs}).splitlines()
    assert lines[0].split(" | ")[9] == "smoothed gain over the last quarter (dB)"
    assert [line.split(" | ")[9] for line in lines[2:4]] == ["+0.20 ± 0.00, converged", "-"]


def test_the_table_says_what_arithmetic_and_threads_its_runs_used(lite):
    """The wall times mean little without the arithmetic: a line under the table says it, from the machine the
    file recorded and the runs' precision; a file that recorded no machine gets no line."""
    runs = [{**_run("sine", 42, 27.0, 500.0), "precision": "auto", "parameters": {"model": 10, "dense_twin": 100},
             "iterations": 2300, "last_quarter_gain_db": 0.1, "load_average_1min_before_and_after": [1.0, 1.0]}]
    runs[0]["results"].update(psnr_std=0.5, ssim=0.9)
    machine = {"cpu_count": 2, "omp_num_threads": None, "bfloat16_tiles": True}
    assert lite.markdown({"runs": runs, "machine": machine}).splitlines()[-1] == (
        "Field products: bfloat16 (`precision auto` on a CPU with AMX tiles); threads per run: all 2 cores.")
    untiled = {**machine, "bfloat16_tiles": False, "omp_num_threads": "1"}
    assert lite.arithmetic_note({"runs": runs, "machine": untiled}) == (
        "Field products: float32 (`precision auto` on a CPU without AMX tiles); threads per run: 1.")
    # files written since AVX512-BF16 counts name the units (or none); older ones recorded only AMX tiles
    zen = {**untiled, "bfloat16_units": "AVX512-BF16"}
    assert lite.arithmetic_note({"runs": runs, "machine": zen}) == (
        "Field products: bfloat16 (`precision auto` on a CPU with AVX512-BF16); threads per run: 1.")
    assert lite.run_arithmetic(runs[0], {"machine": zen}) == "bfloat16"
    bare = {**untiled, "bfloat16_units": None}
    assert lite.arithmetic_note({"runs": runs, "machine": bare}) == (
        "Field products: float32 (`precision auto` on a CPU without bfloat16 units); threads per run: 1.")
    named = {**untiled, "cpu": "AMD EPYC"}
    assert lite.arithmetic_note({"runs": runs, "machine": named}).endswith("threads per run: 1; CPU: AMD EPYC.")
    forced = [{**runs[0], "precision": "float32"}]
    assert lite.arithmetic_note({"runs": forced, "machine": machine}).startswith("Field products: per run: float32;")
    # a file mixing forced float32 runs with auto ones on a bfloat16 CPU names what each ran
    mixed = {"runs": runs + forced, "machine": zen}
    assert lite.arithmetic_note(mixed).startswith("Field products: per run: bfloat16, float32;")
    # --precision: the recipe's auto adds no flag (a run as users start it); the others set the model's
    assert lite.precision_flags("auto") == []
    assert lite.precision_flags("float32") == ["--pipeline.model.precision", "float32"]
    assert lite.arithmetic_note({"runs": runs}) == "" and "Field products" not in lite.markdown({"runs": runs})


def test_paired_table_takes_the_gap_per_seed_and_its_spread(lite):
    runs = [_run("lowrank", 42, 24.0, 0.0), _run("sine", 42, 27.0, 0.0), _run("dense", 42, 31.0, 0.0),
            _run("lowrank", 1, 26.0, 0.0), _run("sine", 1, 27.0, 0.0), _run("sine", 2, 28.0, 0.0)]
    lines = lite.paired_markdown({"runs": runs}).splitlines()
    assert lines[2] == "| 42 | 27.00 | 24.00 | 31.00 | +3.00 |"
    assert lines[3] == "| 1 | 27.00 | 26.00 | - | +1.00 |"  # no dense run with seed 1; seed 2 has no pair
    # sample std of (3, 1) is sqrt(2); t = 2 / (sqrt(2) / sqrt(2)) = 2 on 1 d.o.f.: p = 1 - 2 atan(2) / pi
    assert lines[4] == f"| mean over 2 seeds |  |  |  | **+2.00 ± 1.41**; paired t 2.00 (1 d.o.f.), two-sided p {1 - 2 * math.atan(2) / math.pi:.3f} |"
    assert len(lines) == 5


def test_by_length_table_has_a_row_per_run_length_with_the_paired_gap_and_converged_count(lite):
    def run(linear, seed, psnr, iterations, gain, per_quarter=None):
        r = _run(linear, seed, psnr, 0.0)
        # a curve every 575 steps: at 2,300 steps its last half holds three points, too few to smooth; at
        # 4,600 an exact line rising per_quarter dB per 1,150 steps to the final PSNR
        curve = [[step, psnr - (per_quarter or 0.0) * (iterations - step) / (iterations / 4)] for step in range(575, iterations + 1, 575)]
        r.update(iterations=iterations, last_quarter_gain_db=gain, psnr_curve=curve if per_quarter is not None or iterations < 4600 else [])
        return r

    short = {"runs": [run("sine", 42, 27.0, 2300, 1.0), run("lowrank", 42, 24.0, 2300, 0.5), run("sine", 1, 27.0, 2300, 1.0),
                      run("lowrank", 1, 26.0, 2300, 0.2)]}
    long = {"runs": [run("sine", 42, 28.0, 4600, 0.29, per_quarter=0.2), run("lowrank", 42, 27.0, 4600, 0.3, per_quarter=0.5),
                     run("dense", 42, 32.0, 4600, None)]}
    lines = lite.by_length_markdown([long, short]).splitlines()  # rows sorted by length whatever the reports' order
    assert len(lines) == 4
    p = 1 - 2 * math.atan(2) / math.pi  # the gaps (3, 1) as in the paired table's test
    assert lines[2] == f"| 2,300 | 27.00 ± 0.00 (2) | 25.00 ± 1.41 (2) | - | **+2.00 ± 1.41**; paired t 2.00 (1 d.o.f.), two-sided p {p:.3f} | 1 of 4 | - |"  # too short to smooth
    # one seed: no spread to give; a gain of exactly 0.3 dB is not under the rule, no curve is not converged.
    # The smoothed gains over the last halves (2,300 to 4,600, exact lines): 0.2 dB per quarter (converged)
    # and 0.5 dB (rising); the dense run has no curve to read and counts as neither
    assert lines[3] == "| 4,600 | 28.00 (1) | 27.00 (1) | 32.00 (1) | +1.00 (one seed) | 1 of 3 | 1 / 0 / 1 |"


def test_held_rates_table_stops_a_run_by_the_smoothed_rule_where_its_last_half_is_flat(lite):
    # curves every 100 steps to 1,000, rates decayed to step 200. Sine rises 1 dB per 100 steps to 25 at step
    # 500, then stays flat: the smoothed rule first holds at 900, where the last half (500 to 900) is flat
    # (at 800 it holds 24 and four 25s: within noise). Plain low-rank rises 0.2 dB per 100 steps throughout,
    # 0.5 dB per quarter of 1,000 steps with no error: rising, never met
    def run(linear, curve):
        r = _run(linear, 1, curve[-1][1], 0.0)
        r.update(decay_steps=200, iterations=1000, psnr_curve=curve, last_quarter_gain_db=curve[-1][1] - curve[-3][1])
        return r

    sine = run("sine", [[step, 20.0 + min(step, 500) / 100] for step in range(100, 1001, 100)])
    lowrank = run("lowrank", [[step, 20.0 + 0.002 * step] for step in range(100, 1001, 100)])
    lines = lite.held_rates_markdown({"runs": [lowrank, sine]}).splitlines()
    assert lines[2].split(" | ")[4:6] == ["25.00 (step 900)", "25.00 (step 1,000)"]
    assert lines[2].endswith("| +0.00 ± 0.00, converged |")
    assert lines[3].split(" | ")[4] == "not met" and lines[3].endswith("| +0.50 ± 0.00, rising |")
    assert lines[-2] == "| where both runs first meet the smoothed rule | - | - |"


def test_decay_steps_decay_every_rate_over_the_first_steps_then_hold_it(lite):
    assert lite.decay_steps_flags(None, 6900) == []  # the recipe: the rates decay over the whole run
    assert lite.decay_steps_flags(2300, 6900) == [
        "--schedules-follow-iterations", "False", "--optimizers.fields.scheduler.max-steps", "2300",
        "--optimizers.factors-u.scheduler.max-steps", "2300"]
    for decay, iterations in ((2300, None), (0, 6900), (7000, 6900)):
        with pytest.raises(lite.BenchmarkError, match="--decay-steps"):
            lite.decay_steps_flags(decay, iterations)
    settings = {"scene": "duck", "views": 60, "resolution": 64, "quick": False, "iterations": 6900, "lr_scale": 1.0}
    assert lite.same_settings(settings, {**settings, "decay_steps": None})  # files written before the option
    assert not lite.same_settings(settings, {**settings, "decay_steps": 2300})
    assert lite.settings_differences(settings, {**settings, "decay_steps": 2300, "views": 9}) == [
        "views: 60 there, 9 here", "decay_steps: None there, 2300 here"]


def test_held_rates_table_reads_each_run_at_the_decay_end_the_rule_and_the_end(lite):
    def run(linear, seed, curve):
        r = _run(linear, seed, curve[-1][1], 0.0)
        r.update(decay_steps=200, iterations=curve[-1][0], psnr_curve=curve, last_quarter_gain_db=curve[-1][1] - curve[-3][1])
        return r

    # the rule is tested from half the run (step 300) on: plain low-rank's seed 1 gained 0.1 dB over the quarter
    # before step 200 (the decay's end), a plateau, not where it stops; it first holds at 400 (21.1 - 21.0), sine's
    # at 500 (24.2 - 24.0 at step 400, nearest 375)
    runs = [run("sine", 1, [[100, 15.0], [200, 20.0], [300, 22.0], [400, 24.0], [500, 24.2], [600, 24.3]]),
            run("lowrank", 1, [[100, 18.9], [200, 19.0], [300, 21.0], [400, 21.1], [500, 21.2], [600, 21.3]]),
            run("sine", 2, [[100, 15.0], [200, 20.0], [300, 22.0], [400, 24.0], [500, 25.0], [600, 26.0]]),
            run("lowrank", 2, [[100, 16.0], [200, 18.0], [300, 20.0], [400, 20.1], [500, 20.2], [600, 20.3]])]
    lines = lite.held_rates_markdown({"runs": runs}).splitlines()
    # four points in each last half (300 to 600): too few for the smoothed rule, which needs five
    assert lines[2] == "| sine k = 5, omega 100 | 1 | 20.00 (step 200) | 24.20 (step 500) | not met | 24.30 (step 600) | +0.30 | - |"
    assert lines[3] == "| sine k = 5, omega 100 | 2 | 20.00 (step 200) | not met | not met | 26.00 (step 600) | +2.00 | - |"
    assert lines[4] == "| lowrank k = 5 | 1 | 19.00 (step 200) | 21.10 (step 400) | not met | 21.30 (step 600) | +0.20 | - |"
    assert lines[5] == "| lowrank k = 5 | 2 | 18.00 (step 200) | 20.10 (step 400) | not met | 20.30 (step 600) | +0.20 | - |"
    gaps = lines[-4:]
    assert gaps[0].startswith("| at the end of the decay | 1, 2 | **+1.50 ± 0.71**")  # gaps 1 and 2
    assert gaps[1] == "| where both runs first meet the rule | 1 | +3.10 (one seed) |"  # seed 2's sine never did
    assert gaps[2] == "| where both runs first meet the smoothed rule | - | - |"
    assert gaps[3].startswith("| at the end | 1, 2 | **+4.35 ± 1.91**")  # gaps 3.0 and 5.7
