"""to_plain_lora / plain_rank_report: SVD export of Sine-LoRA into a standard LoRA that stock PEFT
loads (checked in a subprocess that never imports sine_fields), energy ranks, truncation error."""

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import torch

peft = pytest.importorskip("peft", reason="peft is a dependency of sine-fields; install the project")
transformers = pytest.importorskip("transformers", reason="transformers is a dependency of sine-fields")

from sine_fields.peft_lora import energy_rank, plain_rank_report, register_sine_lora, to_plain_lora  # noqa: E402

from .conftest import IDS, logits  # noqa: E402


def trained_like(tiny_llama, omega=60.0, use_dora=False):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=use_dora)
    model = peft.get_peft_model(base, register_sine_lora(config, omega=omega))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model, reference


def test_energy_rank_closed_form():
    # squares 16, 4, 1, 0: cumulative shares 16/21, 20/21, 1
    s = torch.tensor([4.0, 2.0, 1.0, 0.0])
    assert energy_rank(s, 0.5) == 1
    assert energy_rank(s, 16 / 21) == 1
    assert energy_rank(s, 0.9) == 2
    assert energy_rank(s, 0.99) == 3
    assert energy_rank(s, 1.0) == 3
    assert energy_rank(torch.zeros(3), 0.99) == 0


def test_report_matches_an_svd_of_each_delta(tiny_llama):
    model, _ = trained_like(tiny_llama)
    report = plain_rank_report(model, energy=0.9)
    assert [r["module"] for r in report] == [
        f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")
    ]
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    s = torch.linalg.svdvals(layer.get_delta_weight("default"))
    share = torch.cumsum(s**2, 0) / (s**2).sum()
    assert report[0]["rank_for_energy"] == int((share < 0.9).sum()) + 1
    # The point of the sine: a rank-4 adapter whose update needs far more than rank 4.
    assert all(r["rank"] == 4 and r["rank_for_energy"] > 8 for r in report)


def test_an_untrained_adapter_needs_rank_zero(tiny_llama):
    base = tiny_llama()
    config = register_sine_lora(peft.LoraConfig(r=4, target_modules=["q_proj"]), omega=30.0)
    report = plain_rank_report(peft.get_peft_model(base, config))
    assert {r["rank_for_energy"] for r in report} == {0}


STOCK_LOAD = textwrap.dedent(
    """
    import sys, torch, transformers, peft
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    torch.manual_seed(0)  # the same base weights as the tiny_llama fixture
    base = transformers.LlamaForCausalLM(config)
    model = peft.PeftModel.from_pretrained(base, sys.argv[1])
    model.eval()
    ids = torch.load(sys.argv[2])
    with torch.no_grad():
        torch.save(model(input_ids=ids).logits, sys.argv[3])
    assert not any(name.startswith("sine_fields") for name in sys.modules), "sine_fields was imported"
    """
)


def stock_peft_logits(tmp_path, folder):
    """Logits of stock PEFT's PeftModel.from_pretrained(folder), in a process without sine_fields."""
    torch.save(IDS, tmp_path / "ids.pt")
    out = tmp_path / f"{folder.name}_logits.pt"
    done = subprocess.run(
        [sys.executable, "-c", STOCK_LOAD, str(folder), str(tmp_path / "ids.pt"), str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


def test_full_rank_export_loads_in_stock_peft_and_reproduces_the_sine_outputs(tiny_llama, tmp_path):
    model, reference = trained_like(tiny_llama)
    expected = logits(model)
    assert not torch.allclose(expected, logits(reference), atol=1e-3)
    report = to_plain_lora(model, tmp_path / "full", rank=32)
    assert all(r["exported_rank"] == 32 and r["relative_error"] < 1e-3 for r in report)
    saved = json.loads((tmp_path / "full" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == saved["lora_alpha"] == 32 and not saved["use_dora"]
    torch.testing.assert_close(stock_peft_logits(tmp_path, tmp_path / "full"), expected, rtol=0, atol=1e-4)


def test_energy_export_matches_within_the_truncation_error(tiny_llama, tmp_path):
    model, reference = trained_like(tiny_llama)
    expected = logits(model)
    report = to_plain_lora(model, tmp_path / "energy", energy=0.9)
    saved = json.loads((tmp_path / "energy" / "adapter_config.json").read_text())
    assert saved["rank_pattern"] == {r["module"]: r["exported_rank"] for r in report}
    assert all(r["exported_rank"] == r["rank_for_energy"] and r["kept_energy"] >= 0.9 for r in report)
    assert all(r["exported_rank"] < 32 for r in report)  # truncated: the check below is not exact
    # Outside the process too: stock PEFT's outputs and the truncated model's, computed here.
    got = stock_peft_logits(tmp_path, tmp_path / "energy")
    # Within the truncation error: much closer to the sine model than the base model is, not equal.
    error = (got - expected).abs().max()
    assert error > 1e-5
    assert error < 0.5 * (logits(reference) - expected).abs().max()
    # and it equals, to float precision, the sine model with each delta replaced by its truncation
    with torch.no_grad():
        for row in report:
            layer = model.base_model.model.get_submodule(row["module"])
            delta = layer.get_delta_weight("default")
            U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
            k = row["exported_rank"]
            layer.get_base_layer().weight += (U[:, :k] * S[:k]) @ Vh[:k]
    with model.disable_adapter():
        truncated = logits(model)
    torch.testing.assert_close(got, truncated, rtol=0, atol=1e-4)


def test_sine_dora_exports_as_stock_dora(tiny_llama, tmp_path):
    model, _ = trained_like(tiny_llama, use_dora=True)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_magnitude_vector" in name:
                param.mul_(1.1)
    expected = logits(model)
    to_plain_lora(model, tmp_path / "dora", rank=32)
    assert json.loads((tmp_path / "dora" / "adapter_config.json").read_text())["use_dora"] is True
    torch.testing.assert_close(stock_peft_logits(tmp_path, tmp_path / "dora"), expected, rtol=0, atol=1e-4)


def test_export_refuses_bad_arguments_and_existing_folders(tiny_llama, tmp_path):
    model, _ = trained_like(tiny_llama)
    with pytest.raises(ValueError, match="energy must be in"):
        to_plain_lora(model, tmp_path / "a", energy=1.5)
    with pytest.raises(ValueError, match="rank must be None or an integer"):
        to_plain_lora(model, tmp_path / "a", rank=0)
    with pytest.raises(ValueError, match="larger than min"):
        to_plain_lora(model, tmp_path / "a", rank=33)
    with pytest.raises(ValueError, match="no adapter 'other'"):
        to_plain_lora(model, tmp_path / "a", adapter_name="other")
    to_plain_lora(model, tmp_path / "a", rank=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_plain_lora(model, tmp_path / "a", rank=2)
    to_plain_lora(model, tmp_path / "a", rank=3, overwrite=True)
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["r"] == 3
