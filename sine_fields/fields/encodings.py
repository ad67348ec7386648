"""Input encodings for coordinate fields."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["FourierFeatures", "IdentityEncoding", "build_encoding"]


class IdentityEncoding(nn.Module):
    """Passes coordinates through unchanged."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.in_dim = in_dim

    def get_out_dim(self) -> int:
        return self.in_dim

    def forward(self, x: Tensor) -> Tensor:
        return x


class FourierFeatures(nn.Module):
    """Axis-aligned positional encoding ``[x, sin(2^i pi x), cos(2^i pi x)]`` for i < num_frequencies.

    The frequencies are a fixed buffer (not learned), as in NeRF's positional encoding.
    """

    def __init__(self, in_dim: int, num_frequencies: int = 6, include_input: bool = True) -> None:
        super().__init__()
        if num_frequencies < 1:
            raise ValueError(f"num_frequencies must be >= 1, got num_frequencies={num_frequencies}")
        self.in_dim = in_dim
        self.num_frequencies = num_frequencies
        self.include_input = include_input
        freqs = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)

    def get_out_dim(self) -> int:
        return self.in_dim * (2 * self.num_frequencies + int(self.include_input))

    def forward(self, x: Tensor) -> Tensor:
        scaled = (x[..., None] * self.freqs.to(x.dtype)).flatten(-2)  # (..., in_dim * F)
        parts = [torch.sin(scaled), torch.cos(scaled)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)


def build_encoding(in_dim: int, config: dict | None) -> nn.Module:
    """Encoding from a tiny-cuda-nn style dict: ``{"otype": "Identity"}`` or
    ``{"otype": "Frequency", "n_frequencies": 6}``."""
    config = config or {"otype": "Identity"}
    otype = config.get("otype", "Identity")
    if otype == "Identity":
        return IdentityEncoding(in_dim)
    if otype == "Frequency":
        return FourierFeatures(in_dim, int(config.get("n_frequencies", 6)), bool(config.get("include_input", True)))
    raise ValueError(f"encoding otype must be 'Identity' or 'Frequency', got otype={otype!r}")
