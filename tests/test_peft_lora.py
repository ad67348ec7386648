"""Sine-LoRA through PEFT: delta, merge / unmerge / unload, targets (Linear, Conv1D, refused types),
lora_bias, per-adapter omega, save and reload, stock PEFT refusing the folder, mixed precision."""

import copy
import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft", reason="peft is a dependency of sine-fields; install the project")
transformers = pytest.importorskip("transformers", reason="transformers is a dependency of sine-fields")

from .conftest import IDS, logits  # noqa: E402
from sine_fields.peft_lora import (  # noqa: E402
    SINE_PEFT_TYPE,
    _check_peft_has_lora_variants,
    PeftSineLoRALinear,
    SineLoraConfig,
    load_sine_lora,
    register_sine_lora,
    save_sine_lora,
)


def sine_peft_model(tiny_llama, rank=4, alpha=8, omega=40.0, **config_kwargs):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], **config_kwargs)
    register_sine_lora(config, omega=omega)
    return peft.get_peft_model(base, config), reference


def randomise_b(model, std=0.2, seed=1):
    """A non-zero adapter (PEFT starts B at zero), so that every comparison below can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def tiny_gpt2():
    """A randomly initialised 2-layer GPT-2 (32 wide): its projections are transformers' Conv1D."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    return transformers.GPT2LMHeadModel(config)


def test_layers_are_sine_lora_and_start_at_the_base_model(tiny_llama):
    model, reference = sine_peft_model(tiny_llama)
    layers = [m for m in model.modules() if isinstance(m, PeftSineLoRALinear)]
    assert len(layers) == 4
    torch.testing.assert_close(logits(model), logits(reference))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * (4 * (32 + 32) + 4 * (32 + 32))  # 2 layers x (q, v) x r (in + out)


def test_register_changes_the_callers_config_in_place():
    config = peft.LoraConfig(r=2)
    returned = register_sine_lora(config, omega=12.0)
    assert returned is config and isinstance(config, SineLoraConfig)
    assert config.sine_lora == {"omega": 12.0, "gain": None, "format": 1}


def test_delta_is_the_sine_of_the_lora_product(tiny_llama):
    model, _ = sine_peft_model(tiny_llama, rank=4, alpha=8, omega=40.0)
    randomise_b(model)
    layer = next(m for m in model.modules() if isinstance(m, PeftSineLoRALinear))
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    torch.testing.assert_close(layer.get_delta_weight("default"), (8 / 4) * torch.sin(40.0 * B @ A) / 32**0.5)


def merge_round_trip(model, reference=None, atol=1e-5):
    """Unmerged, merged, unmerged again, disabled and unloaded outputs against each other."""
    unmerged = logits(model)
    if reference is not None:
        assert not torch.allclose(unmerged, logits(reference), atol=1e-3)
    model.merge_adapter()
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=atol)
    model.unmerge_adapter()
    torch.testing.assert_close(logits(model), unmerged, rtol=0, atol=atol)
    if reference is not None:
        with model.disable_adapter():
            torch.testing.assert_close(logits(model), logits(reference), rtol=0, atol=atol)
    merged = model.merge_and_unload()
    assert not any(isinstance(m, PeftSineLoRALinear) for m in merged.modules())
    torch.testing.assert_close(logits(merged), unmerged, rtol=0, atol=atol)
    return unmerged


def test_merge_unmerge_and_unload_match_the_unmerged_output(tiny_llama):
    model, reference = sine_peft_model(tiny_llama)
    randomise_b(model)
    merge_round_trip(model, reference)


def test_gpt2_conv1d_targets_are_sine_lora_with_fan_in_fan_out():
    base = tiny_gpt2()
    reference = copy.deepcopy(base)
    config = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"]), omega=30.0)
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to True"):
        model = peft.get_peft_model(base, config)
    layers = [m for m in model.modules() if isinstance(m, PeftSineLoRALinear)]
    assert len(layers) == 6  # c_attn + attn.c_proj + mlp.c_proj, 2 blocks
    assert all(layer.fan_in_fan_out for layer in layers)
    torch.testing.assert_close(logits(model), logits(reference))
    randomise_b(model)
    c_attn = model.base_model.model.transformer.h[0].attn.c_attn
    A, B = c_attn.lora_A["default"].weight, c_attn.lora_B["default"].weight
    # Conv1D holds its weight as (in, out): the delta comes in the same layout.
    expected = ((8 / 4) * torch.sin(30.0 * B @ A) / 32**0.5).t()
    assert c_attn.get_base_layer().weight.shape == expected.shape == (32, 96)
    torch.testing.assert_close(c_attn.get_delta_weight("default"), expected)
    x = torch.randn(3, 32)
    torch.testing.assert_close(c_attn(x), c_attn.get_base_layer()(x) + x @ expected, rtol=1e-5, atol=1e-5)
    merge_round_trip(model, reference)


@pytest.mark.parametrize(
    "targets, refused, type_name",
    [
        (["q_proj", "embed_tokens"], "model.embed_tokens", "torch.nn.modules.sparse.Embedding"),
        (["conv"], "conv", "torch.nn.modules.conv.Conv2d"),
        (["mha"], "mha", "torch.nn.modules.activation.MultiheadAttention"),
    ],
)
def test_other_target_types_are_refused_naming_module_and_type(tiny_llama, targets, refused, type_name):
    if "q_proj" in targets:
        base = tiny_llama()
    else:
        base = nn.Module()
        base.conv = nn.Conv2d(3, 4, 3)
        base.mha = nn.MultiheadAttention(8, 2)
    config = register_sine_lora(peft.LoraConfig(r=2, target_modules=targets), omega=30.0)
    with pytest.raises(ValueError, match=f"target module '{refused}' is a {type_name}"):
        peft.get_peft_model(base, config)


def test_lora_bias_is_applied_in_forward_and_merge():
    base = tiny_gpt2()  # GPT-2's Conv1D layers have a bias to merge lora_B's bias into
    reference = copy.deepcopy(base)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_bias=True)
    model = peft.get_peft_model(base, register_sine_lora(config, omega=30.0))
    randomise_b(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name and name.endswith("bias"):
                param.normal_(std=0.5)
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    x = torch.randn(3, 32)
    expected = layer.get_base_layer()(x) + x @ layer.get_delta_weight("default") + 2.0 * layer.lora_B["default"].bias
    torch.testing.assert_close(layer(x), expected)
    merge_round_trip(model, reference)


def test_two_adapters_keep_their_own_omega_train_switch_save_and_reload(tiny_llama, tmp_path):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    low = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), omega=5.0)
    high = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), omega=80.0)
    model = peft.get_peft_model(base, low, adapter_name="low")
    model.add_adapter("high", high)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.sine_omega == {"low": 5.0, "high": 80.0}
    for name in ("low", "high"):  # a few steps of training, each adapter on its own
        model.set_adapter(name)
        params = [p for p in model.parameters() if p.requires_grad]
        assert params and all(f".{name}." in n for n, p in model.named_parameters() if p.requires_grad)
        optimiser = torch.optim.Adam(params, lr=1e-2)
        for _ in range(3):
            model.train()
            loss = model(input_ids=IDS, labels=IDS).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    for name, omega in (("low", 5.0), ("high", 80.0)):
        A, B = layer.lora_A[name].weight, layer.lora_B[name].weight
        assert B.abs().sum() > 0
        torch.testing.assert_close(layer.get_delta_weight(name), 2.0 * torch.sin(omega * B @ A) / 32**0.5)
    model.set_adapter("low")
    out_low = logits(model)
    model.set_adapter("high")
    out_high = logits(model)
    assert not torch.allclose(out_low, out_high, atol=1e-4)

    save_sine_lora(model, tmp_path)
    assert (tmp_path / "high" / "adapter_config.json").is_file() and (tmp_path / "low" / "adapter_config.json").is_file()
    reloaded = load_sine_lora(copy.deepcopy(reference), tmp_path, adapter_name="low")
    load_sine_lora(reloaded, tmp_path, adapter_name="high")
    q = reloaded.base_model.model.model.layers[0].self_attn.q_proj
    assert q.sine_omega == {"low": 5.0, "high": 80.0}
    torch.testing.assert_close(logits(reloaded), out_low)
    reloaded.set_adapter("high")
    torch.testing.assert_close(logits(reloaded), out_high)


def test_mixed_adapter_batch_gives_each_row_its_own_adapter(tiny_llama):
    base = tiny_llama()
    low = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), omega=5.0)
    high = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), omega=80.0)
    model = peft.get_peft_model(base, low, adapter_name="low")
    model.add_adapter("high", high)
    randomise_b(model)
    model.eval()
    with torch.no_grad():
        mixed = model(input_ids=IDS, adapter_names=["low", "high"]).logits
    model.set_adapter("low")
    out_low = logits(model)
    model.set_adapter("high")
    out_high = logits(model)
    torch.testing.assert_close(mixed[0], out_low[0])
    torch.testing.assert_close(mixed[1], out_high[1])
    assert not torch.allclose(out_low[1], out_high[1], atol=1e-3)  # the two adapters differ on that row


def test_non_default_adapter_name_reads_config_and_weights_from_its_folder(tiny_llama, tmp_path):
    base = tiny_llama()
    reference = copy.deepcopy(base)
    config = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]), omega=25.0)
    model = peft.get_peft_model(base, config, adapter_name="german")
    randomise_b(model)
    expected = logits(model)
    save_sine_lora(model, tmp_path)
    # PEFT writes a non-default adapter into path/<name>; nothing is left at the top level.
    assert not (tmp_path / "adapter_model.safetensors").exists()
    reloaded = load_sine_lora(reference, tmp_path, adapter_name="german")
    assert reloaded.active_adapters == ["german"]
    torch.testing.assert_close(logits(reloaded), expected)


def test_save_and_reload_the_default_adapter(tmp_path, tiny_llama):
    model, reference = sine_peft_model(tiny_llama, omega=25.0)
    randomise_b(model)
    expected = logits(model)
    model.save_pretrained(tmp_path)  # PEFT's own save writes the Sine-LoRA config too
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == SINE_PEFT_TYPE and saved["sine_lora"]["omega"] == 25.0
    reloaded = load_sine_lora(reference, tmp_path)
    layer = next(m for m in reloaded.modules() if isinstance(m, PeftSineLoRALinear))
    assert layer.sine_omega == {"default": 25.0}
    assert not any(p.requires_grad for p in reloaded.parameters())
    torch.testing.assert_close(logits(reloaded), expected)


STOCK_PEFT = textwrap.dedent(
    """
    import sys, torch, transformers, peft
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    base = transformers.LlamaForCausalLM(config)
    try:
        peft.PeftModel.from_pretrained(base, sys.argv[1])
    except Exception as error:
        print(f"refused: {type(error).__name__}: {error}")
        code = 3
    else:
        print("loaded")
        code = 0
    assert not any(name.startswith("sine_fields") for name in sys.modules), "sine_fields was imported"
    sys.exit(code)
    """
)


def test_stock_peft_refuses_a_sine_lora_folder_instead_of_loading_plain_lora(tmp_path, tiny_llama):
    model, _ = sine_peft_model(tiny_llama)
    randomise_b(model)
    save_sine_lora(model, tmp_path / "sine")
    # The subprocess must not see this checkout's sine_fields: run it from an empty folder, no PYTHONPATH.
    done = subprocess.run(
        [sys.executable, "-c", STOCK_PEFT, str(tmp_path / "sine")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    assert "refused: KeyError" in done.stdout and SINE_PEFT_TYPE in done.stdout


def test_a_plain_lora_folder_is_not_read_as_sine_lora(tmp_path, tiny_llama):
    base = tiny_llama()
    plain = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    plain.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="peft_type 'LORA', not 'SINE_LORA'"):
        load_sine_lora(tiny_llama(), tmp_path)


def test_mixing_plain_and_sine_adapters_on_one_layer_is_refused(tiny_llama):
    model, _ = sine_peft_model(tiny_llama)
    with pytest.raises(ValueError, match="holds Sine-LoRA adapters; adapter 'plain' has a plain LoraConfig"):
        model.add_adapter("plain", peft.LoraConfig(r=2, target_modules=["q_proj"]))
    plain = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    sine = register_sine_lora(peft.LoraConfig(r=2, target_modules=["q_proj"]), omega=30.0)
    # PEFT's own variant check: a plain lora.Linear does not know the sine_lora variant.
    with pytest.raises(ValueError, match="sine_lora"):
        plain.add_adapter("sine", sine)


def test_training_updates_only_the_adapter(tiny_llama):
    model, _ = sine_peft_model(tiny_llama)
    loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all(("lora_A" in n or "lora_B" in n) for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)


def test_under_bf16_autocast_the_sine_is_taken_in_float32(tiny_llama):
    model, _ = sine_peft_model(tiny_llama, omega=100.0)
    randomise_b(model, std=1.0)  # omega * B @ A reaches tens: bf16 rounding alone is a sizeable phase error
    layer = next(m for m in model.modules() if isinstance(m, PeftSineLoRALinear))
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    reference = (8 / 4) * torch.sin(100.0 * (B.double() @ A.double())) / 32**0.5
    assert (100.0 * B @ A).abs().max() > 20
    with torch.autocast("cpu", dtype=torch.bfloat16):
        delta = layer.get_delta_weight("default")
        x = torch.randn(5, 32)
        out = layer(x)
    assert delta.dtype == torch.float32
    torch.testing.assert_close(delta.double(), reference, rtol=0, atol=1e-5)
    # The output itself is a bf16 matmul under autocast: compare at bf16's precision.
    expected = layer.get_base_layer()(x) + x @ reference.float().T
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def test_bfloat16_model_keeps_a_float32_sine():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(32, 32)).to(torch.bfloat16)
    config = register_sine_lora(peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"]), omega=100.0)
    model = peft.get_peft_model(base, config, autocast_adapter_dtype=False)
    layer = model.base_model.model[0]
    randomise_b(model, std=1.0)
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert B.dtype == torch.bfloat16
    reference = (2.0 * torch.sin(100.0 * (B.double() @ A.double())) / 32**0.5).to(torch.bfloat16)
    torch.testing.assert_close(layer.get_delta_weight("default"), reference, rtol=0, atol=0)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="omega"):
        register_sine_lora(peft.LoraConfig(r=2), omega=float("nan"))
    with pytest.raises(ValueError, match="omega must be non-zero"):
        register_sine_lora(peft.LoraConfig(r=2), omega=0)
    with pytest.raises(ValueError, match="gain"):
        register_sine_lora(peft.LoraConfig(r=2), omega=1.0, gain=-1.0)
    with pytest.raises(ValueError, match="LoraConfig"):
        register_sine_lora({"r": 2}, omega=1.0)
    with pytest.raises(ValueError, match="target_parameters"):
        register_sine_lora(peft.LoraConfig(r=2, target_parameters=["weight"]), omega=1.0)
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        load_sine_lora(nn.Sequential(nn.Linear(2, 2)), tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_sine_lora(nn.Sequential(nn.Linear(2, 2)), tmp_path)


def test_save_refuses_a_model_with_a_plain_adapter(tmp_path, tiny_llama):
    plain = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="not a Sine-LoRA adapter"):
        save_sine_lora(plain, tmp_path)
    assert not any(Path(tmp_path).iterdir())


def test_a_peft_without_the_lora_variant_registry_is_refused_at_import():
    @dataclasses.dataclass
    class OldLoraConfig:  # PEFT before the registry: use_dora is a plain field
        use_dora: bool = False

    class OldLinear:
        pass

    _check_peft_has_lora_variants()  # the installed PEFT has it
    with pytest.raises(ImportError, match=r"needs PEFT's LoRA-variant registry \(peft >= 0.21\)"):
        _check_peft_has_lora_variants(OldLinear, OldLoraConfig)
    with pytest.raises(ImportError, match="peft >= 0.21"):
        _check_peft_has_lora_variants(peft.tuners.lora.layer.Linear, OldLoraConfig)
