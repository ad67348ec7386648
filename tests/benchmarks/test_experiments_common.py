"""benchmarks/experiments/common.py: the helpers the benchmarks share, on closed-form inputs."""

import pytest
from experiments.common import cpu_model, first_step_meeting_rule, last_quarter_gain, layer_kind, mean_std, seed_summaries


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
