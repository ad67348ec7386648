"""The field-precision choice: which dtype ``auto`` resolves to, and that autocast is really engaged."""

from __future__ import annotations

import pytest
import torch

from sine_fields.methods import precision
from sine_fields.methods.precision import field_autocast, resolve_precision


def test_explicit_choices_are_taken_as_given():
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert resolve_precision("float32", device) is torch.float32
        assert resolve_precision("bfloat16", device) is torch.bfloat16


@pytest.mark.parametrize("tiles", [True, False])
def test_auto_is_bfloat16_only_on_a_cpu_with_amx_tiles(monkeypatch, tiles):
    monkeypatch.setattr(precision, "cpu_has_bfloat16_tiles", lambda: tiles)
    assert resolve_precision("auto", torch.device("cpu")) is (torch.bfloat16 if tiles else torch.float32)
    # the GPU recipe measured is float32: auto does not change it
    assert resolve_precision("auto", torch.device("cuda")) is torch.float32


def test_a_torch_without_the_private_check_reads_as_no_tiles(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert precision.cpu_has_bfloat16_tiles() is False
    assert resolve_precision("auto", torch.device("cpu")) is torch.float32


def test_a_bad_choice_names_the_option():
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16; got 'half'"):
        resolve_precision("half", torch.device("cpu"))  # type: ignore[arg-type]


def test_autocast_rounds_products_to_bfloat16_and_float32_leaves_them_alone():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(16, 8)
    cpu = torch.device("cpu")
    with field_autocast(torch.bfloat16, cpu):
        low = layer(x)
    with field_autocast(torch.float32, cpu):
        full = layer(x)
    assert low.dtype is torch.bfloat16 and full.dtype is torch.float32
    assert torch.equal(full, layer(x))
    # bfloat16 keeps 8 significant bits: the product is close to, not equal to, the float32 one
    assert torch.allclose(low.float(), full, rtol=0.02, atol=0.02) and not torch.equal(low.float(), full)
