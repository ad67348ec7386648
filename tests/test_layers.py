"""Core layers: parameter counts, rank, gradients, dense conversion, state dicts, bad input."""

import math

import pytest
import torch
from torch import nn

from sine_fields import LowRankLinear, SineLowRankLinear, sine_weight
from sine_fields.layers import _SineWeight


def numerical_rank(matrix: torch.Tensor) -> int:
    # In the matrix's own precision: a float32 product cast to float64 would look full rank.
    return int(torch.linalg.matrix_rank(matrix.detach()).item())


@pytest.mark.parametrize("in_features,out_features,rank", [(256, 256, 1), (3, 256, 2), (64, 10, 4), (100, 37, 7)])
@pytest.mark.parametrize("layer_cls", [SineLowRankLinear, LowRankLinear])
def test_parameter_count_is_exact(layer_cls, in_features, out_features, rank):
    layer = layer_cls(in_features, out_features, rank)
    assert sum(p.numel() for p in layer.parameters()) == rank * (in_features + out_features) + out_features
    assert layer.U.shape == (out_features, rank)
    assert layer.V.shape == (rank, in_features)
    no_bias = layer_cls(in_features, out_features, rank, bias=False)
    assert sum(p.numel() for p in no_bias.parameters()) == rank * (in_features + out_features)


def test_sine_weight_has_far_higher_rank_than_low_rank():
    torch.manual_seed(0)
    sine = SineLowRankLinear(256, 256, rank=4, omega=100.0)
    plain = LowRankLinear(256, 256, rank=4)
    assert numerical_rank(plain.weight) == 4
    # The paper's Fig. 1: at omega = 100 the sine matrix is near full rank.
    assert numerical_rank(sine.weight) > 200


def test_rank_grows_with_omega():
    torch.manual_seed(0)
    layer = SineLowRankLinear(256, 256, rank=2, omega=1.0)
    ranks = []
    for omega in (1.0, 10.0, 100.0):
        layer.omega = omega
        ranks.append(numerical_rank(layer.weight))
    assert ranks[0] < ranks[1] < ranks[2]


def test_sine_weight_matches_closed_form_and_default_gain():
    torch.manual_seed(0)
    layer = SineLowRankLinear(16, 8, rank=3, omega=7.0)
    assert layer.gain == pytest.approx(4.0)  # sqrt(in_features)
    expected = torch.sin(7.0 * layer.U @ layer.V) / 4.0
    torch.testing.assert_close(layer.weight, expected)
    x = torch.randn(5, 16)
    torch.testing.assert_close(layer(x), x @ expected.T + layer.bias)


def test_initialisation_follows_the_authors_code():
    torch.manual_seed(0)
    layer = SineLowRankLinear(256, 128, rank=1)
    # kaiming-uniform with a = sqrt(5) gives bound 1/sqrt(fan_in); fan_in of U is the rank.
    assert layer.U.abs().max() <= 1.0 and layer.U.abs().max() > 0.9
    assert layer.V.abs().max() <= 1 / math.sqrt(256) + 1e-7
    assert layer.bias.abs().max() <= 1 / math.sqrt(256) + 1e-7
    assert layer.omega == 100.0


def test_gradcheck_float64():
    torch.manual_seed(0)
    U = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    V = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v: sine_weight(u, v, 3.0, 2.0), (U, V))
    layer = SineLowRankLinear(5, 6, rank=2, omega=3.0).double()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    low = LowRankLinear(5, 6, rank=2).double()
    assert torch.autograd.gradcheck(low, (x,))


def test_backward_keeps_only_the_factors():
    # The custom function must save U and V (small), not an out x in buffer.
    U = torch.randn(64, 2, requires_grad=True)
    V = torch.randn(2, 32, requires_grad=True)
    weight = sine_weight(U, V, 10.0, 1.0)
    saved = weight.grad_fn.saved_tensors
    assert isinstance(weight.grad_fn, _SineWeight._backward_cls)
    assert sorted(t.numel() for t in saved) == sorted([U.numel(), V.numel()])


def test_training_step_keeps_at_most_one_weight_sized_buffer_per_layer():
    layer = SineLowRankLinear(128, 96, rank=2)
    x = torch.randn(3, 128, requires_grad=True)  # a hidden layer's input: grad flows through W
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x).sum().backward()
    assert sum(1 for n in saved if n == 128 * 96) == 1


@pytest.mark.parametrize("layer_cls", [SineLowRankLinear, LowRankLinear])
def test_to_dense_computes_the_same_function(layer_cls):
    torch.manual_seed(0)
    layer = layer_cls(32, 24, 3)
    dense = layer.to_dense()
    assert isinstance(dense, nn.Linear)
    x = torch.randn(7, 32)
    torch.testing.assert_close(dense(x), layer(x))


@pytest.mark.parametrize(
    "in_features, out_features, rank, rows, factored",
    [
        (64, 48, 2, 1, True),  # k (in + out) = 224 per row vs 3072 (k + rows): factored
        (64, 48, 2, 10_000, True),
        (16, 16, 12, 4, True),  # 384 rows vs 256 (12 + rows): factored below 24 rows ...
        (16, 16, 12, 100, False),  # ... materialised above
    ],
)
def test_low_rank_forward_paths_agree(monkeypatch, in_features, out_features, rank, rows, factored):
    torch.manual_seed(0)
    layer = LowRankLinear(in_features, out_features, rank)
    assert layer._factored_is_cheaper(rows) is factored
    # Count materialisations, so that each case provably takes the branch it is listed under.
    calls = []
    weight = LowRankLinear.weight.fget
    monkeypatch.setattr(LowRankLinear, "weight", property(lambda self: calls.append(1) or weight(self)))
    x = torch.randn(rows, in_features, requires_grad=True)
    out = layer(x)
    assert len(calls) == (0 if factored else 1)
    expected = x @ (layer.U @ layer.V).T + layer.bias
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (x, layer.U, layer.V))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, layer.U, layer.V))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_sine_weight_under_bf16_autocast_is_computed_in_float32():
    torch.manual_seed(0)
    layer = SineLowRankLinear(64, 64, rank=4, omega=100.0)
    with torch.no_grad():
        layer.U.mul_(4.0)  # trained factors grow: large arguments are where bf16 goes wrong
    reference = torch.sin(100.0 * (layer.U.double() @ layer.V.double())) / 8.0
    assert (100.0 * layer.U @ layer.V).abs().max() > 20
    x = torch.randn(5, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weight = layer.weight
        out = layer(x)
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight.double(), reference, rtol=0, atol=1e-6)
    # F.linear itself runs in bf16 under autocast: compare the output at bf16 precision.
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), x @ reference.float().T + layer.bias, rtol=2e-2, atol=2e-2)
    # and the gradient flows through the float32 sine to the float32 factors
    out.float().sum().backward()
    assert layer.U.grad.dtype == torch.float32 and torch.isfinite(layer.U.grad).all()


def test_bfloat16_layer_takes_the_sine_in_float32_and_casts_back():
    torch.manual_seed(0)
    layer = SineLowRankLinear(64, 64, rank=4, omega=100.0).to(torch.bfloat16)
    reference = (torch.sin(100.0 * (layer.U.double() @ layer.V.double())) / 8.0).to(torch.bfloat16)
    assert layer.weight.dtype == torch.bfloat16
    torch.testing.assert_close(layer.weight, reference, rtol=0, atol=0)


def test_batched_input_shapes():
    layer = SineLowRankLinear(8, 4, rank=2)
    assert layer(torch.randn(2, 3, 8)).shape == (2, 3, 4)


@pytest.mark.parametrize("layer_cls", [SineLowRankLinear, LowRankLinear])
def test_state_dict_round_trip(layer_cls, tmp_path):
    torch.manual_seed(0)
    layer = layer_cls(16, 16, 2)
    torch.save(layer.state_dict(), tmp_path / "layer.pt")
    fresh = layer_cls(16, 16, 2)
    fresh.load_state_dict(torch.load(tmp_path / "layer.pt", weights_only=True))
    x = torch.randn(3, 16)
    torch.testing.assert_close(fresh(x), layer(x))
    assert set(layer.state_dict()) == {"U", "V", "bias"}


def test_extra_repr_shows_the_settings():
    text = repr(SineLowRankLinear(256, 256, rank=1, omega=30.0))
    assert "rank=1" in text and "omega=30" in text and "gain=16" in text and "params=768" in text


def test_device_and_dtype_follow_arguments():
    layer = SineLowRankLinear(8, 8, 2, dtype=torch.float64)
    assert layer.U.dtype == torch.float64
    assert layer(torch.randn(2, 8, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"rank": 0}, "rank"),
        ({"rank": -1}, "rank"),
        ({"rank": 9}, "rank"),
        ({"rank": 2.5}, "rank"),
        ({"rank": 2, "omega": float("nan")}, "omega"),
        ({"rank": 2, "omega": float("inf")}, "omega"),
        ({"rank": 2, "gain": 0.0}, "gain"),
        ({"rank": 2, "gain": -1.0}, "gain"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SineLowRankLinear(8, 16, **kwargs)


@pytest.mark.parametrize("layer_cls", [SineLowRankLinear, LowRankLinear])
def test_bad_rank_for_low_rank_too(layer_cls):
    with pytest.raises(ValueError, match=r"rank must be <= min\(in_features, out_features\) = 8, got rank=9"):
        layer_cls(8, 16, 9)


@pytest.mark.parametrize("layer_cls", [SineLowRankLinear, LowRankLinear])
def test_wrong_input_width_names_the_shape(layer_cls):
    layer = layer_cls(8, 4, 2)
    with pytest.raises(ValueError, match=r"in_features=8, got shape \(3, 5\)"):
        layer(torch.randn(3, 5))
