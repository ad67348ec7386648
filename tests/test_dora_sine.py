"""Sine-DoRA through PEFT (use_dora=True on a Sine-LoRA config): closed form, merged == unmerged,
magnitude start, Conv1D, save and reload, stacked merge refused."""

import copy

import pytest
import torch

peft = pytest.importorskip("peft", reason="peft is a dependency of sine-fields; install the project")
transformers = pytest.importorskip("transformers", reason="transformers is a dependency of sine-fields")

from sine_fields.peft_lora import PeftSineLoRALinear, load_sine_lora, register_sine_lora  # noqa: E402

from .conftest import IDS, logits  # noqa: E402


def sine_dora(base, targets=("q_proj", "v_proj"), omega=40.0, **kwargs):
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), use_dora=True, **kwargs)
    return peft.get_peft_model(base, register_sine_lora(config, omega=omega))


def perturb(model, seed=1):
    """Non-zero B (so the delta is non-zero) and a magnitude moved off its start value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
            if "lora_magnitude_vector" in name:
                param.mul_(1 + 0.2 * torch.rand(param.shape, generator=generator))


def test_magnitude_starts_at_the_base_norm_and_the_model_at_the_base(tiny_llama):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    model = sine_dora(base)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, PeftSineLoRALinear)
    torch.testing.assert_close(
        layer.lora_magnitude_vector["default"].weight, torch.linalg.vector_norm(layer.get_base_layer().weight, dim=1)
    )
    torch.testing.assert_close(logits(model), logits(reference))
    trainable = {n.split(".default")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B", "lora_magnitude_vector"}


def test_forward_is_magnitude_times_the_normalised_sine_weight(tiny_llama):
    model = sine_dora(tiny_llama())
    perturb(model)
    layer = model.base_model.model.model.layers[1].self_attn.v_proj
    W0 = layer.get_base_layer().weight
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    V = W0 + (8 / 4) * torch.sin(40.0 * B @ A) / 32**0.5
    m = layer.lora_magnitude_vector["default"].weight
    expected_weight = (m / torch.linalg.vector_norm(V, dim=1))[:, None] * V
    x = torch.randn(5, 32)
    layer.eval()
    torch.testing.assert_close(layer(x), x @ expected_weight.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("safe_merge", [False, True])
def test_merged_and_unmerged_agree_to_1e5(tiny_llama, safe_merge):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    model = sine_dora(base)
    perturb(model)
    unmerged = logits(model)
    assert not torch.allclose(unmerged, logits(reference), atol=1e-3)
    weight_before = model.base_model.model.model.layers[0].self_attn.q_proj.get_base_layer().weight.clone()
    model.merge_adapter(safe_merge=safe_merge)
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        model.base_model.model.model.layers[0].self_attn.q_proj.get_base_layer().weight, weight_before, rtol=0, atol=1e-6
    )
    merged = model.merge_and_unload()
    torch.testing.assert_close(logits(merged), unmerged, rtol=0, atol=1e-5)


def test_gpt2_conv1d_sine_dora_merges_exactly():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    base = transformers.GPT2LMHeadModel(config)
    model = sine_dora(base, targets=("c_attn", "c_fc"), fan_in_fan_out=True)
    perturb(model)
    unmerged = logits(model)
    model.merge_adapter()
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-5)
    model.unmerge_adapter()
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=1e-5)


def test_save_and_reload_keeps_the_magnitude(tiny_llama, tmp_path):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    model = sine_dora(base)
    perturb(model)
    expected = logits(model)
    model.save_pretrained(tmp_path)
    reloaded = load_sine_lora(reference, tmp_path)
    torch.testing.assert_close(logits(reloaded), expected)


def test_training_moves_the_magnitude(tiny_llama):
    model = sine_dora(tiny_llama())
    perturb(model)
    model.train()
    model(input_ids=IDS, labels=IDS).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_magnitude_vector" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_merging_on_top_of_another_merged_adapter_is_refused(tiny_llama):
    model = sine_dora(tiny_llama())
    second = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True)
    model.add_adapter("second", register_sine_lora(second, omega=10.0))
    perturb(model)
    model.base_model.set_adapter(["default", "second"])
    with pytest.raises(ValueError, match="cannot be merged on top of the merged adapters"):
        model.merge_adapter()


def test_lora_bias_with_dora_is_refused_by_peft():
    with pytest.raises(ValueError, match="lora_bias=True is not supported for DoRA"):
        register_sine_lora(peft.LoraConfig(r=2, use_dora=True, lora_bias=True), omega=30.0)
