"""The ``--device`` option of every command, as a torch device checked up front."""

from __future__ import annotations

import torch

from sine_fields.errors import UserError

__all__ = ["torch_device"]


def torch_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; other names (cpu, cuda, cuda:1, mps) are
    torch's. A name torch does not know, or a CUDA device torch cannot see, is a ``UserError``: a bad
    device should fail before the work starts, not inside it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"--device {name!r}: {str(error).splitlines()[0]}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: torch sees no CUDA device here; use --device cpu")
    return device
