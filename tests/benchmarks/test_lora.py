"""``benchmarks/lora.py --quick`` end to end, and the pieces it relies on (cookie parsing, merge check).

The quick run needs Debian's ``fortunes`` and ``fortunes-de`` packages (fetched once into the
cache by ``apt-get download``); those tests skip, saying why, when the packages cannot be had.
"""

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft", reason="peft is a dependency of sine-fields; install the project")
pytest.importorskip("transformers", reason="transformers is a dependency of sine-fields; install the project")

from experiments import lm  # noqa: E402
from experiments.text import DataError, _cookies, load_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "lora.py"


def run(*args, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def corpora_available():
    try:
        load_corpus("en")
        load_corpus("de")
    except DataError as error:
        pytest.skip(f"Debian fortune packages not available here: {error}")


@pytest.fixture(scope="module")
def quick_result(corpora_available, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "lora.json"
    done = run("--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text()), out


def adapter_parameters(model_config: dict, rank: int) -> int:
    """r (in + out) for q, k, v, o (h -> h), gate, up (h -> m) and down (m -> h) of every layer."""
    h, m = model_config["hidden_size"], model_config["intermediate_size"]
    per_layer = 4 * rank * (h + h) + 3 * rank * (h + m)
    return model_config["num_layers"] * per_layer


@pytest.mark.slow
def test_quick_run_writes_complete_results(quick_result):
    result, out = quick_result
    assert {"config", "base_model", "lr", "omega", "sweep", "summary", "runs", "data", "total_seconds"} <= set(result)
    assert "| rank |" in out.with_suffix(".md").read_text()
    ranks, seeds = result["config"]["ranks"], result["config"]["seeds"]
    methods = {(r["method"], r["rank"]) for r in result["runs"]}
    assert methods == {("full", None)} | {(m, r) for r in ranks for m in ("lora", "sine")}
    assert len(result["runs"]) == len(methods) * len(seeds)
    assert result["omega"] == min(result["sweep"]["omega"], key=lambda s: s["validation_loss"])["omega"]
    for run_ in result["runs"]:
        assert run_["eval_loss"] > 0 and abs(run_["eval_perplexity"] - torch.tensor(run_["eval_loss"]).exp().item()) < 1e-3


@pytest.mark.slow
def test_trainable_counts_are_exact_and_merged_equals_unmerged(quick_result):
    result, _ = quick_result
    model_config = result["config"]["model"]
    for run_ in result["runs"]:
        if run_["method"] == "full":
            assert run_["trainable_parameters"] == result["base_model"]["parameters"]
            continue
        assert run_["trainable_parameters"] == adapter_parameters(model_config, run_["rank"])
        check = run_["merge_check"]
        assert check["merged_equals_unmerged"] is True
        assert check["merged_max_abs_diff"] <= check["tolerance"]
        if run_["method"] == "sine":
            assert check["reloaded_max_abs_diff"] <= check["tolerance"]
        plain = run_["plain_rank"]
        assert len(plain["layers"]) == 7 * model_config["num_layers"]
        assert all(1 <= layer["rank_for_energy"] <= min(layer["shape"]) for layer in plain["layers"])
        if run_["method"] == "lora":  # a rank-r product has at most r singular values
            assert all(layer["rank_for_energy"] <= run_["rank"] for layer in plain["layers"])
    for row in result["summary"]:
        if row["method"] != "full":
            assert row["plain_rank_min"] <= row["plain_rank_median"] <= row["plain_rank_max"]
    assert "plain rank median / max" in quick_result[1].with_suffix(".md").read_text()


def test_merge_check_detects_a_wrong_merge(monkeypatch):
    """The benchmark's merge check passes on a correct adapter and fails when merging is broken."""
    config = lm.LMConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4, seq_len=16)
    base = lm.build_lm(config, seed=0)
    model = lm._peft_model(base, "sine", rank=4, omega=30.0)
    with torch.no_grad():  # a non-zero adapter, so that merging changes the base weights
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    windows = torch.randint(0, 256, (8, 16))
    assert lm.merge_check(model, windows, "sine", None)["merged_equals_unmerged"] is True
    # Sabotage: a layer merge that adds the delta twice must be reported.
    from sine_fields.peft_lora import PeftSineLoRALinear

    merge = PeftSineLoRALinear.merge

    def double_merge(self, *args, **kwargs):
        merge(self, *args, **kwargs)
        with torch.no_grad():
            self.base_layer.weight += self.get_delta_weight("default")

    monkeypatch.setattr(PeftSineLoRALinear, "merge", double_merge)
    assert lm.merge_check(model, windows, "sine", None)["merged_equals_unmerged"] is False


def test_plain_ranks_of_lora_and_sine_lora_updates():
    """LoRA's update has rank r; a Sine-LoRA update with large omega * B @ A needs far more."""
    config = lm.LMConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4, seq_len=16)
    base = lm.build_lm(config, seed=0)
    for method, omega in (("lora", 0.0), ("sine", 100.0)):
        model = lm._peft_model(copy.deepcopy(base), method, rank=4, omega=omega)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.5)
        full = lm.adapter_plain_ranks(model, energy=1.0)
        assert len(full["layers"]) == 7 and full["max"] == max(layer["rank_for_energy"] for layer in full["layers"])
        if method == "lora":
            assert {layer["rank_for_energy"] for layer in full["layers"]} == {4}
        else:
            assert lm.adapter_plain_ranks(model, energy=0.99)["median"] > 8


def test_cookies_split_on_percent_lines():
    text = b"first cookie\n%\n\n  second\n  cookie \n%\n%\nlast"
    assert _cookies(text) == [b"first cookie", b"second\n  cookie", b"last"]


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_lora", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "args, message",
    [(["--ranks", "4,-1"], "--ranks"), (["--lr", "nan"], "--lr"), (["--finetune-steps", "0"], "--finetune-steps")],
)
def test_bad_options_give_one_line_errors(args, message, capsys):
    # In-process: the parser runs before any heavy import, and a subprocess per case is slow here.
    with pytest.raises(SystemExit) as exit_:
        load_script().parse_args(args)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
