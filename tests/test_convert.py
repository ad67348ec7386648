"""convert / add_sine_lora on real architectures: a timm ViT and a Hugging Face causal LM."""

import pytest
import torch
from torch import nn

from sine_fields import LowRankLinear, SineLoRALinear, SineLowRankLinear, add_sine_lora, convert, count_parameters

timm = pytest.importorskip("timm", reason="timm is a dependency of sine-fields; install the project")


def tiny_vit():
    torch.manual_seed(0)
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10)


def linear_shapes(model, names):
    return {n: (m.in_features, m.out_features, m.bias is not None) for n, m in model.named_modules() if n in names}


@pytest.mark.parametrize("kind,layer_cls", [("sine", SineLowRankLinear), ("lowrank", LowRankLinear)])
def test_convert_vit_blocks(kind, layer_cls):
    model = tiny_vit()
    before = count_parameters(model)
    targets = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]
    originals = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(n.endswith(t) for t in targets)}
    summary = convert(model, kind, rank=4, omega=50.0, target_modules=targets)
    assert sorted(summary.changed) == sorted(originals)
    assert len(summary.changed) == 8  # 2 blocks x 4 projections
    assert "head" not in summary.changed
    expected_after = before - sum(
        m.in_features * m.out_features - 4 * (m.in_features + m.out_features) for m in originals.values()
    )
    assert summary.parameters_before == before
    assert summary.parameters_after == count_parameters(model) == expected_after
    for name, original in originals.items():
        new = model.get_submodule(name)
        assert isinstance(new, layer_cls)
        assert (new.in_features, new.out_features, new.bias is not None) == (
            original.in_features, original.out_features, original.bias is not None)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert model.blocks[0].attn.qkv.U.grad is not None


def test_convert_exclude_and_regex():
    model = tiny_vit()
    summary = convert(model, "sine", rank=2, target_modules=r"blocks\.\d+\.mlp\.fc\d", exclude=["blocks.1.mlp.fc2"])
    assert sorted(summary.changed) == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1"]
    assert type(model.blocks[1].mlp.fc2) is nn.Linear


def test_convert_skips_layers_the_rank_does_not_fit():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    summary = convert(model, "lowrank", rank=4)
    assert summary.changed == ["0"]
    assert "2" in summary.skipped and "min(in, out) = 2" in summary.skipped["2"]


def test_convert_keeps_dtype():
    model = nn.Sequential(nn.Linear(8, 8, dtype=torch.float64))
    convert(model, "sine", rank=2)
    assert model[0].U.dtype == torch.float64


def test_convert_language_model_and_state_dict_round_trip(tmp_path, tiny_llama):
    model = tiny_llama()
    summary = convert(model, "sine", rank=4, omega=30.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert len(summary.changed) == 8
    ids = torch.randint(0, 64, (2, 10))
    out = model(input_ids=ids).logits
    assert out.shape == (2, 10, 64)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = tiny_llama()
    convert(fresh, "sine", rank=4, omega=30.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    torch.testing.assert_close(fresh(input_ids=ids).logits, out)


def test_add_sine_lora_freezes_the_base_and_merges(tiny_llama):
    model = tiny_llama()
    x = torch.randint(0, 64, (1, 6))
    reference = model(input_ids=x).logits
    summary = add_sine_lora(model, rank=4, alpha=8.0, omega=50.0, target_modules=["q_proj", "v_proj"])
    assert len(summary.changed) == 4
    adapters = [m for m in model.modules() if isinstance(m, SineLoRALinear)]
    assert summary.trainable_after == sum(a.lora_A.numel() + a.lora_B.numel() for a in adapters)
    torch.testing.assert_close(model(input_ids=x).logits, reference)  # B = 0 at the start
    with torch.no_grad():
        for adapter in adapters:
            adapter.lora_B.normal_(std=0.5)
    adapted = model(input_ids=x).logits
    assert not torch.allclose(adapted, reference)
    for adapter in adapters:
        adapter.merge()
    torch.testing.assert_close(model(input_ids=x).logits, adapted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,needle",
    [({"kind": "svd", "rank": 2}, "kind"), ({"kind": "sine", "rank": 0}, "rank"),
     ({"kind": "sine", "rank": 2, "omega": float("nan")}, "omega"), ({"kind": "sine", "rank": 2, "gain": -2.0}, "gain")],
)
def test_convert_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        convert(nn.Sequential(nn.Linear(8, 8)), **kwargs)


def encoder_layer():
    torch.manual_seed(0)
    # dropout 0: training and inference forwards compute the same function.
    return nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)


def manual_attention(attn: nn.MultiheadAttention, x):
    """Self-attention written out, calling ``out_proj`` as a module (not reading its weight)."""
    q, k, v = nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    heads = lambda t: t.unflatten(-1, (attn.num_heads, attn.head_dim)).transpose(1, 2)  # noqa: E731
    mixed = nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    return attn.out_proj(mixed.transpose(1, 2).flatten(-2))


@pytest.mark.parametrize("kind,layer_cls", [("sine", SineLowRankLinear), ("lowrank", LowRankLinear)])
def test_convert_replaces_multihead_attention_out_proj(kind, layer_cls):
    # out_proj is a NonDynamicallyQuantizableLinear that MultiheadAttention never calls: it reads
    # out_proj.weight / .bias, which the new layers expose as the effective weight and bias.
    layer = encoder_layer()
    x = torch.randn(2, 5, 16)
    before = layer(x).detach()
    summary = convert(layer, kind, rank=2, omega=30.0)
    assert sorted(summary.changed) == ["linear1", "linear2", "self_attn.out_proj"] and not summary.skipped
    attn = layer.self_attn
    assert isinstance(attn.out_proj, layer_cls)
    out = attn(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(out, manual_attention(attn, x), rtol=1e-5, atol=1e-5)
    y = layer(x)
    assert not torch.allclose(y, before, atol=1e-3)
    y.square().sum().backward()
    assert attn.out_proj.U.grad is not None and attn.out_proj.U.grad.abs().sum() > 0
    assert attn.out_proj.V.grad is not None and attn.out_proj.V.grad.abs().sum() > 0
    layer.eval()
    with torch.inference_mode():  # PyTorch's fused fast path also reads out_proj.weight
        torch.testing.assert_close(layer(x), y.detach(), rtol=1e-5, atol=1e-5)


def test_convert_dense_keeps_the_out_proj_class():
    layer = encoder_layer()
    cls = type(layer.self_attn.out_proj)
    assert cls is not nn.Linear  # NonDynamicallyQuantizableLinear in every PyTorch since 1.8
    old_weight = layer.self_attn.out_proj.weight.detach().clone()
    summary = convert(layer, "dense", rank=2, target_modules=["out_proj"])
    assert summary.changed == ["self_attn.out_proj"]
    assert type(layer.self_attn.out_proj) is cls  # still marked for quantisation to leave it alone
    assert not torch.equal(layer.self_attn.out_proj.weight, old_weight)  # freshly initialised


class DoubledLinear(nn.Linear):
    """A subclass whose forward is not x W^T + b: replacing it would change the model."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_subclasses_that_cannot_be_changed_are_skipped_and_listed():
    model = nn.Sequential(nn.Linear(8, 8), DoubledLinear(8, 8), nn.Linear(8, 1))
    summary = convert(model, "sine", rank=2)
    assert summary.changed == ["0"]
    assert set(summary.skipped) == {"1", "2"}
    assert "DoubledLinear overrides forward" in summary.skipped["1"]
    assert "rank 2 > min(in, out) = 1" in summary.skipped["2"]
    assert type(model[1]) is DoubledLinear
    text = str(summary)  # every skipped layer is named with its reason
    assert "2 skipped: 1 (" in text and "DoubledLinear overrides forward" in text and "2 (rank 2 > min" in text


def test_add_sine_lora_skips_multihead_attention_out_proj_with_a_reason():
    layer = encoder_layer()
    x = torch.randn(2, 5, 16)
    summary = add_sine_lora(layer, rank=2, alpha=4.0)
    assert sorted(summary.changed) == ["linear1", "linear2"]
    assert list(summary.skipped) == ["self_attn.out_proj"]
    assert "read its .weight directly" in summary.skipped["self_attn.out_proj"]
    assert "self_attn.out_proj" in str(summary)
    assert layer(x).shape == (2, 5, 16)  # the attention still runs
