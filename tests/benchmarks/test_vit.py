"""``benchmarks/vit.py --quick`` end to end: JSON keys, exact and equal parameter counts, one-line errors.

The accuracy numbers are not checked (a two-epoch run says nothing about the method); the counts,
the structure and the files are.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("timm", reason="timm is a dependency of sine-fields; install the project")
pytest.importorskip("sklearn", reason="scikit-learn is a dependency of sine-fields; install the project")

from sine_fields.convert import count_parameters  # noqa: E402
from experiments.vit import ViTConfig, build_vit  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "vit.py"


def run(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("vit") / "vit.json"
    done = run("--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), out


def projection_parameters(config: dict, rank: int | None) -> int:
    """Parameters of every block's qkv, proj, fc1, fc2 (weights + biases), from the config alone."""
    d = config["embed_dim"]
    hidden = int(d * config["mlp_ratio"])
    shapes = [(d, 3 * d), (d, d), (d, hidden), (hidden, d)]  # (in, out)
    per_block = sum((i * o if rank is None else rank * (i + o)) + o for i, o in shapes)
    return config["depth"] * per_block


@pytest.mark.slow
def test_quick_run_writes_complete_results(quick_result):
    result, out = quick_result
    assert {"config", "omega", "omega_sweep", "summary", "runs", "dataset", "total_seconds", "command"} <= set(result)
    assert out.with_suffix(".md").is_file() and "| rank |" in out.with_suffix(".md").read_text()
    ranks, seeds = result["config"]["ranks"], result["config"]["seeds"]
    kinds = {(r["kind"], r["rank"]) for r in result["runs"]}
    assert kinds == {("dense", None)} | {(k, r) for r in ranks for k in ("lowrank", "sine")}
    assert len(result["runs"]) == len(kinds) * len(seeds)
    # The chosen omega is the best of the recorded sweep, which ran on the validation split.
    sweep = result["omega_sweep"]["results"]
    assert sweep and result["omega"] == max(sweep, key=lambda s: s["validation_accuracy_mean"])["omega"]
    for run_ in result["runs"]:
        assert 0.0 <= run_["test_accuracy"] <= 1.0
        assert run_["train_seconds"] > 0


@pytest.mark.slow
def test_parameter_counts_are_exact_and_equal_across_methods(quick_result):
    result, _ = quick_result
    model_config = result["config"]["model"]
    dense_model = build_vit(ViTConfig(**model_config))
    dense_total = count_parameters(dense_model)
    others = dense_total - projection_parameters(model_config, None)
    for run_ in result["runs"]:
        rank = run_["rank"]
        expected_projection = projection_parameters(model_config, rank)
        assert run_["projection_parameters"] == expected_projection
        assert run_["parameters"] == others + expected_projection
    for rank in result["config"]["ranks"]:
        low = [r["parameters"] for r in result["summary"] if r["kind"] == "lowrank" and r["rank"] == rank]
        sine = [r["parameters"] for r in result["summary"] if r["kind"] == "sine" and r["rank"] == rank]
        assert low == sine and len(low) == 1
    # The low-rank weights really have rank <= k; the sine ones are not limited to k (paper, Sec. 3.2).
    for row in result["summary"]:
        if row["kind"] == "lowrank":
            assert row["effective_rank_mean"] <= row["rank"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ranks", "1,x"], "--ranks"),
        (["--epochs", "0"], "--epochs"),
        (["--omega", "-3"], "--omega"),
        (["--out", "result.txt"], "--out"),
        (["--no-such-option"], "unrecognized"),
    ],
)
def test_bad_options_give_one_line_errors(args, message, capsys):
    # In-process: the parser runs before any heavy import, and a subprocess per case is slow here.
    spec = importlib.util.spec_from_file_location("benchmark_vit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(args)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_the_command_line_reports_a_bad_option_on_one_line():
    done = run("--ranks", "1,x", timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: argument --ranks: value must be a comma-separated list of ints, got '1,x' (see --help)"
    ]
