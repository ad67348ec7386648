import math

import numpy as np
import pytest
import torch

from sine_fields.errors import UserError
from sine_fields.shapes.commands import build_field_config
from sine_fields.shapes.field import FieldConfig, ShapeField, default_mlp, shape_omega


def _params(width, hidden, kind, k, in_dim=3):
    square = width * width if kind == "dense" else k * 2 * width
    return in_dim * width + width + (hidden - 1) * (square + width) + width + 1


@pytest.mark.parametrize("kind, rank", [("dense", 1), ("lowrank", 1), ("sine", 1), ("sine", 16)])
def test_paper_budget_parameter_counts(kind, rank):
    mlp = default_mlp()
    mlp.linear, mlp.rank = kind, rank
    field = ShapeField(FieldConfig(mlp=mlp))
    assert field.num_parameters() == _params(256, 3, kind, rank)
    assert _params(256, 3, "sine", 1) == 2817 and _params(256, 3, "dense", 1) == 132865  # 2.1 %, as the paper


def test_fourier_encoding_widens_the_input_and_evaluate_matches_forward():
    field = ShapeField(FieldConfig(mlp=default_mlp(), fourier_frequencies=4))
    assert field.mlp.in_dim == 3 * (2 * 4 + 1)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (1000, 3)).astype(np.float32)
    with torch.no_grad():
        expected = field(torch.from_numpy(points)).numpy()
    assert np.allclose(field.evaluate(points, chunk=300), expected, atol=1e-5)


def test_default_omega_follows_the_rank_rule_and_explicit_omega_wins():
    assert shape_omega(1) == default_mlp().omega
    assert shape_omega(16) == pytest.approx(shape_omega(1) / 4)
    config = build_field_config("occupancy", "sine", 4, None, None, 256, 3, "Gaussian", "hidden", 0)
    assert config.mlp.omega == pytest.approx(shape_omega(1) / math.sqrt(4))
    assert build_field_config("occupancy", "sine", 4, 30.0, None, 256, 3, "Gaussian", "hidden", 0).mlp.omega == 30.0
    with pytest.raises(UserError, match="rank must be"):
        build_field_config("occupancy", "sine", 0, None, None, 256, 3, "Gaussian", "hidden", 0)
