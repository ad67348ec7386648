"""benchmarks/experiments/common.py: the helpers the benchmarks share, on closed-form inputs."""

import pytest
from experiments.common import (cpu_model, first_step_meeting_rule, first_step_meeting_smoothed_rule, last_quarter_gain, layer_kind,
                                mean_std, seed_summaries, smoothed_last_quarter_gain, smoothed_verdict)


def test_first_step_meeting_rule_is_where_the_gain_rule_would_have_stopped_the_run():
    # gains over the last quarter: at 200, 12 - 10 (step 150) = 2; at 400, 13.1 - 12.9 (step 300) = 0.2
    curve = [[50, 5.0], [100, 8.0], [150, 10.0], [200, 12.0], [300, 12.9], [400, 13.1], [500, 13.2]]
    assert first_step_meeting_rule(curve, start=200) == [400, 13.1]
    assert first_step_meeting_rule(curve, start=450) == [500, 13.2]  # 13.2 - 13.1 (step 400 is nearest 375)
    assert first_step_meeting_rule(curve, start=200, threshold=0.05) is None  # gains 0.9, 0.2, 0.1
    assert first_step_meeting_rule([[100, 3.0]], start=0) is None  # one point has no last quarter


def test_last_quarter_gain_reads_the_point_nearest_three_quarters():
    curve = [[100, 15.0], [200, 18.0], [300, 20.0], [400, 21.0]]
    assert last_quarter_gain(curve, 400) == pytest.approx(1.0)  # 21 - the score at step 300
    assert last_quarter_gain([[75, 10.0], [150, 12.0], [225, 13.5], [300, 13.0]], 300) == pytest.approx(-0.5)
    assert last_quarter_gain([[400, 21.0]], 400) is None


def test_smoothed_gain_reads_the_last_quarter_off_a_quadratic_through_the_last_half():
    # a bending curve, exactly quadratic in x = step / 1000: 20 + 4 x - 2 x^2 gains 4 (1 - 0.75) - 2 (1 - 0.75^2)
    # = 0.125 dB over the last quarter, with no error; the point at step 100 lies before half the run and is
    # left out (it would pull the fit)
    def bend(x):
        return 20.0 + 4.0 * x - 2.0 * x * x

    curve = [[100, 0.0]] + [[step, bend(step / 1000)] for step in range(500, 1001, 100)]
    gain, se = smoothed_last_quarter_gain(curve, 1000)
    assert gain == pytest.approx(0.125) and se == pytest.approx(0.0, abs=1e-6)
    assert smoothed_verdict((gain, se)) == "converged"
    # a line, 0.5 dB per quarter: rising
    assert smoothed_verdict(smoothed_last_quarter_gain([[step, 0.002 * step] for step in range(500, 1001, 100)], 1000)) == "rising"
    # noise a (-1, 2, 0, -2, 1) at steps 600..1000 is orthogonal to the quadratics there, so the fit is the
    # curve itself and the residuals are the noise: variance 10 a^2 / 2 degrees of freedom. In t = (x - 0.8) / 0.1
    # the orthogonal basis 1, t, t^2 - 2 has norms 5, 10, 14; from x = 0.75 (t = -0.5) to 1 (t = 2) t rises
    # 2.5 and t^2 - 2 rises 3.75, so se = sqrt(5 a^2 (2.5^2 / 10 + 3.75^2 / 14))
    for a, verdict in ((0.1, "within noise"), (0.02, "converged")):
        noisy = [[step, bend(step / 1000) + a * sign] for step, sign in zip(range(600, 1001, 100), (-1, 2, 0, -2, 1))]
        gain, se = smoothed_last_quarter_gain(noisy, 1000)
        assert gain == pytest.approx(0.125) and se == pytest.approx(a * (5 * (2.5 ** 2 / 10 + 3.75 ** 2 / 14)) ** 0.5)
        assert smoothed_verdict((gain, se)) == verdict
    assert smoothed_last_quarter_gain([[step, 15.0] for step in range(500, 1001, 100)], 1000) == pytest.approx((0.0, 0.0))  # flat
    assert smoothed_last_quarter_gain([[step, 1.0] for step in range(700, 1001, 100)], 1000) is None  # four points
    assert smoothed_verdict(None) == "too short"


def test_first_step_meeting_smoothed_rule_waits_for_a_flat_last_half():
    # rising 1 dB per 100 steps to 15 dB at step 500, then flat. At 800 the last half holds 14 and four 15s
    # at t = -2..2 (x = 0.5..1 in eighths): the basis 1, t, t^2 - 2 gets 0.2 and -1/7, and from x = 0.75 (t = 0)
    # to the end t rises 2 and t^2 - 2 rises 4: a gain of 0.4 - 4/7 = -0.17 dB, with an error of 0.30 (within
    # noise). At 900 the last half (500 to 900) is flat; before 800 the half holds fewer than five points
    curve = [[step, 10.0 + min(step, 500) / 100] for step in range(100, 1001, 100)]
    gain, se = smoothed_last_quarter_gain(curve[:8], 800)
    assert gain == pytest.approx(0.4 - 4 / 7) and smoothed_verdict((gain, se)) == "within noise"
    assert first_step_meeting_smoothed_rule(curve, start=0) == [900, 15.0]
    assert first_step_meeting_smoothed_rule(curve[:8], start=0) is None


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_layer_kind_names_the_layers_and_their_settings():
    assert layer_kind({"linear": "dense", "rank": 5, "omega": 100.0}) == "dense"
    assert layer_kind({"linear": "lowrank", "rank": 5, "omega": None}) == "lowrank k = 5"
    assert layer_kind({"linear": "sine", "rank": 1, "omega": 300.0}) == "sine k = 1, omega 300"


def test_seed_summaries_group_in_first_seen_order_and_leave_out_single_seeds():
    def run(scene, linear, seed, psnr):
        return {"scene": scene, "linear": linear, "rank": 5, "omega": 100.0 if linear == "sine" else None,
                "seed": seed, "psnr": psnr}

    runs = [run("duck", "sine", 0, 26.0), run("duck", "dense", 0, 30.0), run("spider", "sine", 0, 20.0),
            run("duck", "sine", 1, 28.0), run("spider", "sine", 1, 23.0), run("duck", "sine", 2, 27.0)]
    summaries = seed_summaries(runs, lambda r: (r["scene"], r["linear"]), lambda r: r["psnr"])
    assert [s["group"] for s in summaries] == [("duck", "sine"), ("spider", "sine")]  # dense ran one seed
    duck, spider = summaries
    assert duck["seeds"] == [0, 1, 2] and duck["kind"] == "sine k = 5, omega 100"
    assert (duck["psnr_mean"], duck["psnr_std"], duck["psnr_min"], duck["psnr_max"]) == (27.0, 1.0, 26.0, 28.0)
    assert spider["psnr_mean"] == pytest.approx(21.5) and spider["psnr_std"] == pytest.approx(2.1213203)
    assert [r["seed"] for r in spider["runs"]] == [0, 1]


def test_cpu_model_reads_the_first_model_name_and_is_none_without_one(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7B13"  # not the numeric "model" line
    cpuinfo.write_text("processor\t: 0\nmodel\t\t: 1\n")
    assert cpu_model(cpuinfo) is None and cpu_model(tmp_path / "missing") is None
