"""MergedMLP: the frozen, chunked inference copy computes exactly what the FieldMLP computes."""

import pytest
import torch

from sine_fields import FieldMLP, MLPConfig
from sine_fields.fields.merged import MergedMLP
from sine_fields.fields.mlp import ACTIVATIONS


@pytest.mark.parametrize("linear", ["dense", "lowrank", "sine"])
@pytest.mark.parametrize("activation", ["ReLU", "Gaussian", "Sine"])
@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_merged_inference_equals_the_network(linear, activation, rows):
    torch.manual_seed(0)
    mlp = FieldMLP(3, 2, MLPConfig(n_neurons=32, n_hidden_layers=3, activation=activation, linear=linear, rank=2))
    merged = MergedMLP(mlp, chunk=256)  # several chunks and a ragged last one
    x = torch.rand(rows, 3)
    with torch.no_grad():
        expected = mlp(x)
    torch.testing.assert_close(merged(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output_activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden_activation", ["ReLU", "Softplus"])
def test_every_output_activation_matches_the_unmerged_network(output_activation, hidden_activation):
    # Softplus has no in-place form: its result is a new tensor that must still reach the output.
    torch.manual_seed(1)
    mlp = FieldMLP(3, 4, MLPConfig(n_neurons=16, n_hidden_layers=2, activation=hidden_activation,
                                   output_activation=output_activation, linear="sine", rank=2))
    x = torch.randn(300, 3)
    expected = mlp(x).detach()  # autograd on: the out-of-place path of every activation
    merged = MergedMLP(mlp, chunk=128)
    torch.testing.assert_close(merged(x), expected, rtol=1e-5, atol=1e-5)
    if output_activation != "None":
        # The output activation really ran: without it some outputs would differ, e.g. be negative.
        pre_activation = FieldMLP(3, 4, MLPConfig(n_neurons=16, n_hidden_layers=2, activation=hidden_activation,
                                                  output_activation="None", linear="sine", rank=2))
        pre_activation.load_state_dict(mlp.state_dict())
        assert not torch.allclose(pre_activation(x), expected)


def test_merged_inference_rejects_bad_input():
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        MergedMLP(FieldMLP(3, 1))(torch.rand(4, 2))
