"""The arithmetic precision of a NeRF field's MLPs: float32, or bfloat16 where the hardware has it.

A NeRF step on a CPU is almost all field matrix products (32k samples through 256-wide layers). oneDNN
runs bfloat16 products several times faster than float32 ones on CPUs with bfloat16 units: Intel AMX
tiles (Sapphire Rapids and later Xeons) and the AVX512-BF16 dot-product instructions (AMD Zen 4 and later,
Intel Cooper Lake). ``benchmarks/field_precision.py`` measures a hidden layer's product and a whole lite
field's forward and backward pass on one CPU. Elsewhere a bfloat16 product is emulated and no faster, so
``auto`` asks for it only where such units exist.

Only the field runs under ``torch.autocast``: the parameters, the optimiser state, the sine weight
``sin(omega U V) / g`` itself (``sine_weight`` computes it in float32 and autocast rounds the result
for the product) and everything after the field (rendering weights, losses, metrics) stay float32.
bfloat16 has float32's exponent range, so no loss scaling is needed.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch

__all__ = ["FieldPrecision", "cpu_bfloat16_units", "field_autocast", "resolve_precision"]

FieldPrecision = Literal["auto", "float32", "bfloat16"]


# torch exposes both checks only under private names; a torch without one reads as "not there", which
# only costs speed (``auto`` then stays float32). Checked in this order: AMX is the faster of the two.
_BFLOAT16_UNIT_CHECKS = (("AMX tiles", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))


def cpu_bfloat16_units() -> str | None:
    """The CPU's units that make bfloat16 products fast ("AMX tiles" or "AVX512-BF16"), or None."""
    for name, attribute in _BFLOAT16_UNIT_CHECKS:
        check = getattr(torch.cpu, attribute, None)
        try:
            if check is not None and check():
                return name
        except RuntimeError:
            continue
    return None


def resolve_precision(choice: FieldPrecision, device: torch.device) -> torch.dtype:
    """The dtype a field's products run in on ``device``: ``auto`` is bfloat16 on a CPU with bfloat16 units
    (``cpu_bfloat16_units``) and float32 everywhere else (on a GPU the float32 recipe is the one measured)."""
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    if choice != "auto":
        raise ValueError(f"precision must be one of auto, float32, bfloat16; got {choice!r}")
    return torch.bfloat16 if device.type == "cpu" and cpu_bfloat16_units() is not None else torch.float32


@contextlib.contextmanager
def field_autocast(dtype: torch.dtype, device: torch.device) -> Iterator[None]:
    """Run the enclosed field evaluation with its products in ``dtype`` (a no-op for float32)."""
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        yield
