import math

import numpy as np
import pytest
import torch

from sine_fields.errors import UserError
from sine_fields.shapes.field import FieldConfig, ShapeField, default_mlp, shape_omega


def _params(width, hidden, kind, k, in_dim=3):
    square = width * width if kind == "dense" else k * 2 * width
    return in_dim * width + width + (hidden - 1) * (square + width) + width + 1


@pytest.mark.parametrize("kind, rank", [("dense", 1), ("lowrank", 1), ("sine", 1), ("sine", 16)])
def test_paper_budget_parameter_counts(kind, rank):
    field = ShapeField(FieldConfig(linear=kind, rank=rank))
    assert field.num_parameters() == _params(256, 3, kind, rank)
    assert _params(256, 3, "sine", 1) == 2817 and _params(256, 3, "dense", 1) == 132865  # 2.1 %, as the paper


def test_fourier_encoding_widens_the_input_and_values_match_forward():
    field = ShapeField(FieldConfig(fourier_frequencies=4))
    assert field.mlp.in_dim == 3 * (2 * 4 + 1)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (1000, 3)).astype(np.float32)
    with torch.no_grad():
        expected = field(torch.from_numpy(points)).numpy()
    assert np.allclose(field.values(points, chunk=300), expected, atol=1e-5)


def test_default_omega_follows_the_rank_rule_and_explicit_omega_wins():
    assert shape_omega(1) == default_mlp().omega
    assert shape_omega(16) == pytest.approx(shape_omega(1) / 4)
    assert FieldConfig(rank=4).mlp.omega == pytest.approx(shape_omega(1) / math.sqrt(4))
    assert FieldConfig(rank=4, omega=30.0).mlp.omega == 30.0
    with pytest.raises(UserError, match="rank must be"):
        FieldConfig(rank=0).build()


def test_config_json_round_trip_is_the_tiny_cuda_nn_dict():
    config = FieldConfig(target="sdf", linear="lowrank", rank=3, width=64, hidden_layers=2, activation="ReLU",
                         factorise="all", fourier_frequencies=2, gain=2.0)
    data = config.to_dict()
    assert data["mlp"]["otype"] == "MLP" and data["mlp"]["n_neurons"] == 64 and data["mlp"]["output_activation"] == "None"
    back = FieldConfig.from_dict(data)
    assert back.to_dict() == data and back.linear == "lowrank" and back.width == 64 and back.omega == config.mlp.omega


@pytest.mark.parametrize("target", ["occupancy", "sdf"])
def test_the_field_owns_its_level_and_sign(target):
    config = FieldConfig(target=target)
    # Raw output 2 is inside for occupancy (logit > 0) and outside for SDF (distance > 0).
    raw = np.array([2.0, -2.0], dtype=np.float32)
    inside = config.inside_sign * raw > config.inside_sign * config.raw_level()
    assert inside.tolist() == ([True, False] if target == "occupancy" else [False, True])
    if target == "occupancy":
        assert config.surface_level == 0.5 and config.raw_level(0.5) == 0.0
        assert config.raw_level(0.9) == pytest.approx(math.log(9))  # logit of the probability
        assert config.to_user_units(np.zeros(1))[0] == 0.5
        with pytest.raises(UserError, match="probability"):
            config.raw_level(1.5)
    else:
        assert config.surface_level == 0.0 and config.raw_level(0.05) == 0.05
        assert config.to_user_units(raw).tolist() == raw.tolist()
