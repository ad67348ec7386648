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


@pytest.mark.parametrize("units", ["AMX tiles", "AVX512-BF16", None])
def test_auto_is_bfloat16_only_on_a_cpu_with_bfloat16_units(monkeypatch, units):
    monkeypatch.setattr(precision, "cpu_bfloat16_units", lambda: units)
    assert resolve_precision("auto", torch.device("cpu")) is (torch.bfloat16 if units else torch.float32)
    # the GPU recipe measured is float32: auto does not change it
    assert resolve_precision("auto", torch.device("cuda")) is torch.float32


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (True, True, "AMX tiles"), (False, True, "AVX512-BF16"), (True, False, "AMX tiles"), (False, False, None)])
def test_units_are_named_amx_first(monkeypatch, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert precision.cpu_bfloat16_units() == expected


def test_a_torch_without_the_private_checks_reads_as_no_units(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert precision.cpu_bfloat16_units() is None
    assert resolve_precision("auto", torch.device("cpu")) is torch.float32


def test_a_check_that_fails_reads_as_that_unit_missing(monkeypatch):
    def broken():
        raise RuntimeError("cpuinfo could not be read")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.cpu_bfloat16_units() == "AVX512-BF16"


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
