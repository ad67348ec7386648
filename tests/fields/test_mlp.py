"""FieldMLP: layer kinds and placement, parameter counts, tiny-cuda-nn style dicts, activations."""

import math

import pytest
import torch
from torch import nn

from sine_fields import FieldMLP, FourierFeatures, LowRankLinear, MLPConfig, SineLowRankLinear
from sine_fields.fields import build_encoding


def test_paper_budget_layout_and_exact_counts():
    # Authors' occupancy net: 3 -> 256, two factorised 256 x 256 layers at rank 1, 256 -> 1.
    config = {"otype": "FullyFusedMLP", "n_neurons": 256, "n_hidden_layers": 3, "activation": "Gaussian",
              "linear": "sine", "rank": 1, "omega": 100.0}
    mlp = FieldMLP(3, 1, config)
    kinds = [type(layer) for layer in mlp.layers]
    assert kinds == [nn.Linear, SineLowRankLinear, SineLowRankLinear, nn.Linear]
    expected = (3 * 256 + 256) + 2 * (1 * (256 + 256) + 256) + (256 + 1)
    assert mlp.num_parameters() == expected == 2817  # 2.1 % of dense: the paper's budget
    dense = FieldMLP(3, 1, {**config, "linear": "dense"})
    assert dense.num_parameters() == (3 * 256 + 256) + 2 * (256 * 256 + 256) + 257
    lowrank = FieldMLP(3, 1, {**config, "linear": "lowrank"})
    assert [type(layer) for layer in lowrank.layers][1:3] == [LowRankLinear, LowRankLinear]
    assert lowrank.num_parameters() == mlp.num_parameters()


def test_factorise_all_uses_the_rank_where_it_fits():
    mlp = FieldMLP(8, 4, MLPConfig(n_neurons=16, n_hidden_layers=2, linear="lowrank", rank=4, factorise="all"))
    assert all(isinstance(layer, LowRankLinear) for layer in mlp.layers)


@pytest.mark.parametrize("activation", ["ReLU", "Gaussian", "Sine", "Softplus", "Sigmoid", "None"])
def test_inplace_inference_equals_training_forward(activation):
    torch.manual_seed(0)
    mlp = FieldMLP(3, 2, MLPConfig(n_neurons=32, n_hidden_layers=3, activation=activation, linear="sine", rank=2))
    x = torch.randn(50, 3)
    with_grad = mlp(x)
    with torch.no_grad():
        without_grad = mlp(x)
    torch.testing.assert_close(without_grad, with_grad.detach())


def test_gaussian_activation_closed_form():
    mlp = FieldMLP(1, 1, MLPConfig(n_neurons=1, n_hidden_layers=1, activation="Gaussian"))
    with torch.no_grad():
        mlp.layers[0].weight.fill_(1.0)
        mlp.layers[0].bias.zero_()
        mlp.layers[1].weight.fill_(1.0)
        mlp.layers[1].bias.zero_()
    # exp(-x^2 / (2 * 0.1^2)) at x = 0.1 is exp(-0.5)
    assert mlp(torch.tensor([[0.1]])).item() == pytest.approx(math.exp(-0.5), rel=1e-6)


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown MLP config keys"):
        FieldMLP(3, 1, {"n_neurons": 8, "width": 8})
    with pytest.raises(ValueError, match="linear"):
        FieldMLP(3, 1, {"linear": "svd"})
    with pytest.raises(ValueError, match="activation"):
        FieldMLP(3, 1, {"activation": "Tanh"})
    with pytest.raises(ValueError, match="rank"):
        FieldMLP(3, 1, {"n_neurons": 8, "linear": "sine", "rank": 9})
    with pytest.raises(ValueError, match="last dimension 3"):
        FieldMLP(3, 1)(torch.randn(4, 2))


def test_fourier_features_closed_form():
    enc = FourierFeatures(2, num_frequencies=3)
    assert enc.get_out_dim() == 2 * 7
    x = torch.tensor([[0.25, 0.5]])
    out = enc(x)
    torch.testing.assert_close(out[0, :2], x[0])
    # sin(2^0 * pi * 0.25) = sin(pi / 4)
    assert out[0, 2].item() == pytest.approx(math.sin(math.pi / 4), abs=1e-6)
    assert build_encoding(3, {"otype": "Identity"}).get_out_dim() == 3
    with pytest.raises(ValueError, match="otype"):
        build_encoding(3, {"otype": "HashGridX"})
