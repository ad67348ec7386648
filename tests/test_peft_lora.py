"""Sine-LoRA through PEFT's get_peft_model: delta, merge / unmerge / unload, save and reload."""

import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft", reason="peft is a dependency of sine-fields; install the project")

from sine_fields.peft_lora import SIDECAR, PeftSineLoRALinear, load_sine_lora, register_sine_lora, save_sine_lora  # noqa: E402


def sine_peft_model(tiny_llama, rank=4, alpha=8, omega=40.0):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "v_proj"])
    register_sine_lora(config, omega=omega)
    return peft.get_peft_model(base, config), reference


def randomise_b(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)


def test_layers_are_sine_lora_and_start_at_the_base_model(tiny_llama):
    model, reference = sine_peft_model(tiny_llama)
    layers = [m for m in model.modules() if isinstance(m, PeftSineLoRALinear)]
    assert len(layers) == 4
    ids = torch.randint(0, 64, (2, 8))
    torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * (4 * (32 + 32) + 4 * (32 + 32))  # 2 layers x (q, v) x r (in + out)


def test_delta_is_the_sine_of_the_lora_product(tiny_llama):
    model, _ = sine_peft_model(tiny_llama, rank=4, alpha=8, omega=40.0)
    randomise_b(model)
    layer = next(m for m in model.modules() if isinstance(m, PeftSineLoRALinear))
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    torch.testing.assert_close(layer.get_delta_weight("default"), (8 / 4) * torch.sin(40.0 * B @ A) / 32**0.5)


def test_merge_unmerge_and_unload_match_the_unmerged_output(tiny_llama):
    model, reference = sine_peft_model(tiny_llama)
    randomise_b(model)
    ids = torch.randint(0, 64, (2, 8))
    unmerged = model(input_ids=ids).logits
    assert not torch.allclose(unmerged, reference(input_ids=ids).logits)
    model.merge_adapter()
    torch.testing.assert_close(model(input_ids=ids).logits, unmerged, rtol=1e-4, atol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(model(input_ids=ids).logits, unmerged, rtol=1e-4, atol=1e-5)
    with model.disable_adapter():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
    merged = model.merge_and_unload()
    assert not any(isinstance(m, PeftSineLoRALinear) for m in merged.modules())
    torch.testing.assert_close(merged(input_ids=ids).logits, unmerged, rtol=1e-4, atol=1e-5)


def test_save_and_reload_the_adapter(tmp_path, tiny_llama):
    model, reference = sine_peft_model(tiny_llama, omega=25.0)
    randomise_b(model)
    ids = torch.randint(0, 64, (2, 8))
    expected = model(input_ids=ids).logits
    save_sine_lora(model, tmp_path)
    assert (tmp_path / SIDECAR).is_file() and (tmp_path / "adapter_config.json").is_file()
    reloaded = load_sine_lora(reference, tmp_path)
    layer = next(m for m in reloaded.modules() if isinstance(m, PeftSineLoRALinear))
    assert layer.sine_omega == 25.0
    torch.testing.assert_close(reloaded(input_ids=ids).logits, expected)


def test_training_updates_only_the_adapter(tiny_llama):
    model, _ = sine_peft_model(tiny_llama)
    ids = torch.randint(0, 64, (2, 8))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(("lora_A" in n or "lora_B" in n) for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="omega"):
        register_sine_lora(peft.LoraConfig(r=2), omega=float("nan"))
    with pytest.raises(ValueError, match="LoraConfig"):
        register_sine_lora({"r": 2}, omega=1.0)
    with pytest.raises(FileNotFoundError, match="sine_lora.json"):
        load_sine_lora(nn.Sequential(nn.Linear(2, 2)), tmp_path)
