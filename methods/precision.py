"""The arithmetic precision of a NeRF field's MLPs: float32, or bfloat16 where the hardware has it.

A NeRF step on a CPU is almost all field matrix products (32k samples through 256-wide layers). On
CPUs with Intel AMX tiles, oneDNN runs bfloat16 products several times faster than float32 ones
(``benchmarks/field_precision.py`` measures a hidden layer's product and a whole lite field's forward
and backward pass). Elsewhere a bfloat16 product is emulated and no faster, so ``auto`` asks for it
only where the tiles exist.

Only the field runs under ``torch.autocast``: the parameters, the optimiser state, the sine weight
``sin(omega U V) / g`` itself (``sine_weight`` computes it in float32 and autocast rounds the result
for the product) and everything after the field (rendering weights, losses, metrics) stay float32.
bfloat16 has float32's exponent range, so no loss scaling is needed.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch

__all__ = ["FieldPrecision", "cpu_has_bfloat16_tiles", "field_autocast", "resolve_precision"]

FieldPrecision = Literal["auto", "float32", "bfloat16"]


def cpu_has_bfloat16_tiles() -> bool:
    """Whether this CPU has AMX tiles, the units that make bfloat16 products fast.

    torch exposes the check only under a private name; an older or newer torch without it reads as
    "no tiles", which only costs speed (``auto`` then stays float32)."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def resolve_precision(choice: FieldPrecision, device: torch.device) -> torch.dtype:
    """The dtype a field's products run in on ``device``: ``auto`` is bfloat16 on a CPU with AMX tiles
    and float32 everywhere else (on a GPU the float32 recipe is the one measured)."""
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    if choice != "auto":
        raise ValueError(f"precision must be one of auto, float32, bfloat16; got {choice!r}")
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bfloat16_tiles() else torch.float32


@contextlib.contextmanager
def field_autocast(dtype: torch.dtype, device: torch.device) -> Iterator[None]:
    """Run the enclosed field evaluation with its products in ``dtype`` (a no-op for float32)."""
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        yield
