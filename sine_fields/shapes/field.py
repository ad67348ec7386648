"""The shape field: an optional Fourier encoding followed by a ``FieldMLP`` with one output.

The output is a raw value whose zero level set is the surface in both targets: occupancy logits
(probability 0.5 at logit 0) or signed distance (negative inside). ``LEVEL`` is that zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from sine_fields.fields import MLPConfig, build_mlp
from sine_fields.fields.encodings import build_encoding
from sine_fields.fields.merged import MergedMLP

__all__ = ["LEVEL", "SHAPE_OMEGA_RANK1", "FieldConfig", "ShapeField", "default_mlp", "field_summary", "shape_omega"]

LEVEL = 0.0
"""Surface level in the field's output space: logit 0 for occupancy, distance 0 for SDF."""


# Sine frequency of shape fields at rank 1, from the omega sweep of benchmarks/shapes.py (bunny,
# occupancy; results in benchmarks/results/shapes.json): best at 1000 for k = 1 (IoU 0.945 vs 0.813
# at the authors' 100) and at 300 for k = 8.
SHAPE_OMEGA_RANK1 = 1000.0


def shape_omega(rank: int) -> float:
    """Default omega for rank ``k``: ``SHAPE_OMEGA_RANK1 / sqrt(k)``.

    Each entry of ``U V`` sums k products of independent factors, so its spread grows like sqrt(k);
    dividing omega by sqrt(k) keeps the spread of the sine's argument, and so the frequency content
    of the weight, the same at every rank. It matches the sweep: 1000 at k = 1, 354 at k = 8 (best: 300).
    """
    return SHAPE_OMEGA_RANK1 / math.sqrt(rank)


def default_mlp() -> MLPConfig:
    # The paper's occupancy budget: 3 -> 256 -> 256 -> 256 -> 1, the two square
    # hidden layers factorised; at rank 1 that is 2,817 of 132,865 dense parameters (2.1 %).
    return MLPConfig(n_neurons=256, n_hidden_layers=3, activation="Gaussian", linear="dense", rank=1, omega=shape_omega(1))


@dataclass
class FieldConfig:
    """What is fitted: the target and the network."""

    target: Literal["occupancy", "sdf"] = "occupancy"
    """Occupancy (classification, logits) or signed distance (regression on truncated distance)."""
    mlp: MLPConfig = field(default_factory=default_mlp)
    """The coordinate MLP."""
    fourier_frequencies: int = 0
    """Frequencies of the Fourier-feature encoding of xyz; 0 feeds raw coordinates."""

    def to_dict(self) -> dict:
        return {"target": self.target, "mlp": self.mlp.to_dict(), "fourier_frequencies": self.fourier_frequencies}

    @classmethod
    def from_dict(cls, data: dict) -> "FieldConfig":
        return cls(data["target"], MLPConfig.from_dict(data["mlp"]), int(data["fourier_frequencies"]))


class ShapeField(nn.Module):
    """``(*bs, 3)`` normalised points -> ``(*bs,)`` logits (occupancy) or signed distances (sdf)."""

    def __init__(self, config: FieldConfig) -> None:
        super().__init__()
        self.config = config
        encoding = {"otype": "Frequency", "n_frequencies": config.fourier_frequencies} if config.fourier_frequencies else None
        self.encoding = build_encoding(3, encoding)
        self.mlp = build_mlp(self.encoding.get_out_dim(), 1, config.mlp)

    def forward(self, points: Tensor) -> Tensor:
        return self.mlp(self.encoding(points)).squeeze(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def evaluate(self, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """``(n, 3)`` numpy points -> ``(n,)`` float32 field values, in chunks to bound memory."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        out = np.empty(len(points), dtype=np.float32)
        # Weights materialised once per call (sine / low-rank cost the same as dense here), with the
        # cache-sized chunking of MergedMLP; built per call so the module holds no stale copy.
        merged = MergedMLP(self.mlp)
        for start in range(0, len(points), chunk):
            batch = torch.from_numpy(points[start : start + chunk]).to(self.device)
            out[start : start + chunk] = merged(self.encoding(batch)).squeeze(-1).float().cpu().numpy()
        return out


def field_summary(config: FieldConfig) -> dict:
    """Flat description for tables: kind, rank, omega, activation, width."""
    m = config.mlp
    return {
        "target": config.target,
        "linear": m.linear,
        "rank": m.rank if m.linear != "dense" else None,
        "omega": m.omega if m.linear == "sine" else None,
        "activation": m.activation,
        "width": m.n_neurons,
        "hidden_layers": m.n_hidden_layers,
        "fourier_frequencies": config.fourier_frequencies,
        **({"gain": m.gain} if m.gain is not None else {}),
    }

