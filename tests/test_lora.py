"""SineLoRALinear: starts at the base layer, one delta, merge / unmerge round trips, bad input."""

import pytest
import torch
from torch import nn

from sine_fields import SineLoRALinear


def adapted(in_features=32, out_features=24, rank=4, alpha=8.0, omega=30.0, bias=True, dtype=torch.float32):
    torch.manual_seed(0)
    base = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
    layer = SineLoRALinear(base, rank=rank, alpha=alpha, omega=omega)
    return base, layer


def test_starts_equal_to_the_base_layer():
    base, layer = adapted()
    x = torch.randn(5, 32)
    reference = nn.functional.linear(x, base.weight, base.bias)
    torch.testing.assert_close(layer(x), reference)
    assert torch.count_nonzero(layer.get_delta_weight()) == 0


def test_delta_matches_closed_form():
    _, layer = adapted(rank=4, alpha=8.0, omega=30.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = (8.0 / 4) * torch.sin(30.0 * layer.lora_B @ layer.lora_A) / 32**0.5
    torch.testing.assert_close(layer.get_delta_weight(), expected)


def test_base_is_frozen_and_adapter_trains():
    base, layer = adapted()
    assert not base.weight.requires_grad and not base.bias.requires_grad
    layer(torch.randn(3, 32)).sum().backward()
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "in_features,out_features,rank,bias,dtype",
    [(32, 24, 4, True, torch.float32), (16, 64, 1, False, torch.float32), (48, 48, 8, True, torch.float64)],
)
def test_merge_unmerge_round_trip_from_a_nonzero_delta(in_features, out_features, rank, bias, dtype):
    base, layer = adapted(in_features, out_features, rank, bias=bias, dtype=dtype)
    with torch.no_grad():
        layer.lora_B.normal_(std=0.5)  # non-zero delta, so the checks below can fail
    original = base.weight.detach().clone()
    x = torch.randn(6, in_features, dtype=dtype)
    unmerged = layer(x)
    assert not torch.allclose(unmerged, nn.functional.linear(x, original, base.bias))
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), unmerged)
    layer.merge()  # merging twice must not add the delta twice
    torch.testing.assert_close(layer(x), unmerged)
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer(x), unmerged)
    torch.testing.assert_close(base.weight, original)
    unloaded = layer.merge_and_unload()
    assert type(unloaded) is nn.Linear
    torch.testing.assert_close(unloaded(x), unmerged)


@pytest.mark.parametrize(
    "kwargs,needle",
    [({"rank": 0}, "rank"), ({"rank": 100}, "rank"), ({"rank": 2, "omega": float("nan")}, "omega"),
     ({"rank": 2, "gain": 0}, "gain"), ({"rank": 2, "alpha": float("inf")}, "alpha")],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SineLoRALinear(nn.Linear(8, 8), **kwargs)


def test_base_layer_must_be_linear():
    with pytest.raises(ValueError, match="base_layer must be an nn.Linear"):
        SineLoRALinear(nn.Conv1d(3, 3, 1), rank=1)


def test_wrong_input_width():
    _, layer = adapted()
    with pytest.raises(ValueError, match="in_features=32"):
        layer(torch.randn(2, 31))


def test_state_dict_round_trip(tmp_path):
    base, layer = adapted()
    with torch.no_grad():
        layer.lora_B.normal_()
    torch.save(layer.state_dict(), tmp_path / "a.pt")
    _, fresh = adapted()
    fresh.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    x = torch.randn(2, 32)
    torch.testing.assert_close(fresh(x), layer(x))


def test_sine_of_the_delta_is_float32_under_bf16_autocast():
    _, layer = adapted(in_features=64, out_features=64, rank=4, alpha=8.0, omega=100.0)
    with torch.no_grad():
        layer.lora_B.normal_()  # omega * B @ A reaches tens: bf16 rounding alone is a sizeable phase error
    reference = 2.0 * torch.sin(100.0 * (layer.lora_B.double() @ layer.lora_A.double())) / 8.0
    assert (100.0 * layer.lora_B @ layer.lora_A).abs().max() > 20
    x = torch.randn(5, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        delta = layer.get_delta_weight()
        out = layer(x)
    assert delta.dtype == torch.float32
    torch.testing.assert_close(delta.double(), reference, rtol=0, atol=1e-5)
    expected = nn.functional.linear(x, layer.base_layer.weight + reference.float(), layer.base_layer.bias)
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=3e-2)
