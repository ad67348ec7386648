"""The shape field: an optional Fourier encoding followed by a ``FieldMLP`` with one output.

The output is a raw value whose zero level set is the surface in both targets: occupancy logits
(probability 0.5 at logit 0) or signed distance (negative inside). The field's config owns these
conventions (``inside_sign``, ``surface_level``, ``raw_level``), so no caller re-derives them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from sine_fields.errors import UserError
from sine_fields.fields import MLPConfig, build_mlp
from sine_fields.fields.encodings import build_encoding
from sine_fields.fields.merged import MergedMLP
from sine_fields.fields.mlp import Activation, LinearKind

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


@dataclass
class FieldConfig:
    """What is fitted: the target and the network."""

    # Each attribute is one `sine-fields fit` flag (its docstring is the help) and one config.json
    # entry: a new field option is an attribute here plus its use in `mlp` or `ShapeField`.

    target: Literal["occupancy", "sdf"] = "occupancy"
    """occupancy (BCE on logits) or sdf (L1 on truncated signed distance)."""
    linear: LinearKind = "sine"
    """kind of the hidden layers: dense, lowrank (U V) or sine (sin(omega U V) / gain)."""
    rank: int = 1
    """rank k of lowrank / sine layers."""
    omega: float | Literal["auto"] | None = None
    """sine frequency (sine layers only): a number; auto (each fit probes 100, 300, 1000 and 3000 for a tenth of
    its steps on held-back points and continues the best; recorded in omega.json); default 1000 / sqrt(rank)."""
    gain: float | None = None
    """divisor of the sine matrix; default sqrt(width)."""
    width: int = 256
    """neurons per hidden layer."""
    hidden_layers: int = 3
    """hidden activations (tiny-cuda-nn meaning); hidden_layers - 1 square layers are factorised."""
    activation: Activation = "Gaussian"
    """hidden activation (Gaussian: the authors' occupancy choice; Sine: SIREN)."""
    factorise: Literal["hidden", "all"] = "hidden"
    """factorise only the square hidden layers, or every layer the rank fits."""
    fourier_frequencies: int = 0
    """Fourier-feature frequencies of xyz (0: raw coordinates)."""

    # ----- the network ------------------------------------------------------------------------
    @property
    def resolved_omega(self) -> float | Literal["auto"]:
        """``omega``, or the rank rule when it is None (a bad rank is reported by the network); "auto"
        until a fit's probe replaces it with the chosen number."""
        if self.omega == "auto":
            return "auto"
        if self.omega is not None:
            return float(self.omega)
        return shape_omega(self.rank) if self.rank >= 1 else SHAPE_OMEGA_RANK1

    @property
    def mlp(self) -> MLPConfig:
        """The coordinate MLP as a tiny-cuda-nn style ``MLPConfig`` (one logit / distance out)."""
        return MLPConfig(n_neurons=self.width, n_hidden_layers=self.hidden_layers, activation=self.activation,
                         linear=self.linear, rank=self.rank, omega=self.resolved_omega, gain=self.gain,
                         factorise=self.factorise)

    @classmethod
    def from_mlp(cls, mlp: MLPConfig, target: str = "occupancy", fourier_frequencies: int = 0) -> "FieldConfig":
        if mlp.output_activation != "None":
            raise ValueError(f"a shape field outputs raw logits / distances: output_activation must be 'None', got {mlp.output_activation!r}")
        return cls(target=target, linear=mlp.linear, rank=mlp.rank, omega=mlp.omega, gain=mlp.gain, width=mlp.n_neurons,
                   hidden_layers=mlp.n_hidden_layers, activation=mlp.activation, factorise=mlp.factorise,
                   fourier_frequencies=fourier_frequencies)

    def check(self) -> None:
        """Options that contradict each other, as ``UserError``s (checked before any training)."""
        if self.omega == "auto" and self.linear != "sine":
            raise UserError(f"--omega auto chooses the frequency of sine layers, and --linear {self.linear} has none; "
                            "use --linear sine or leave --omega out")

    def build(self) -> "ShapeField":
        """A new ``ShapeField``; an impossible combination (rank > width, ...) is a ``UserError``."""
        self.check()
        if self.omega == "auto":
            raise UserError("--omega auto is chosen by a fit's probe (sine_fields.shapes.omega) before the field is built")
        if self.fourier_frequencies < 0:
            raise UserError(f"--fourier-frequencies must be >= 0, got {self.fourier_frequencies}")
        try:
            return ShapeField(self)
        except ValueError as error:
            raise UserError(f"invalid field options: {error}") from None

    # ----- config.json ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"target": self.target, "mlp": self.mlp.to_dict(), "fourier_frequencies": self.fourier_frequencies}

    @classmethod
    def from_dict(cls, data: dict) -> "FieldConfig":
        return cls.from_mlp(MLPConfig.from_dict(data["mlp"]), data["target"], int(data["fourier_frequencies"]))

    # ----- level and sign ---------------------------------------------------------------------
    @property
    def inside_sign(self) -> float:
        """+1 when the raw output grows inside (occupancy logits), -1 when it falls (SDF)."""
        return 1.0 if self.target == "occupancy" else -1.0

    @property
    def level_units(self) -> str:
        """What a user's level means: a probability (occupancy) or a distance (SDF)."""
        return "probability" if self.target == "occupancy" else "distance"

    @property
    def surface_level(self) -> float:
        """``LEVEL`` in the user's units: probability 0.5, distance 0."""
        return 0.5 if self.target == "occupancy" else 0.0

    def raw_level(self, level: float | None = None) -> float:
        """The user's level (None: the surface) in the field's output units (logit / distance)."""
        if level is None:
            return LEVEL
        if self.target == "occupancy":
            if not 0 < level < 1:
                raise UserError(f"--level for an occupancy field is a probability in (0, 1), got {level}")
            return math.log(level / (1 - level))
        return float(level)

    def to_user_units(self, raw: np.ndarray) -> np.ndarray:
        """Raw outputs as the user reads them: probabilities (occupancy) or distances (SDF)."""
        from scipy.special import expit  # the logistic function without overflow warnings

        raw = np.asarray(raw, dtype=np.float32)
        return expit(raw) if self.target == "occupancy" else raw


def default_mlp() -> MLPConfig:
    # The paper's occupancy budget: 3 -> 256 -> 256 -> 256 -> 1, the two square hidden layers
    # factorised; at rank 1 that is 2,817 of 132,865 dense parameters (2.1 %).
    return FieldConfig(linear="dense").mlp


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
    def values(self, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Raw outputs at numpy points: ``(n, 3)`` -> ``(n,)`` float32, in chunks to bound memory."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        out = np.empty(len(points), dtype=np.float32)
        # Weights materialised once per call (sine / low-rank cost the same as dense here), with the
        # cache-sized chunking of MergedMLP; built per call so the module holds no stale copy.
        merged = MergedMLP(self.mlp)
        for start in range(0, len(points), chunk):
            batch = torch.from_numpy(points[start : start + chunk]).to(self.device)
            out[start : start + chunk] = merged(self.encoding(batch)).squeeze(-1).float().cpu().numpy()
        return out

    def inside_values(self, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """``values`` oriented to grow inside (what extraction and the inside test compare to a level)."""
        return self.config.inside_sign * self.values(points, chunk)

    def inside(self, points: np.ndarray, level: float | None = None) -> np.ndarray:
        """``(n,)`` bool: True where the field puts the point inside the level set (None: the surface)."""
        return self.inside_values(points) > self.config.inside_sign * self.config.raw_level(level)


def field_summary(config: FieldConfig) -> dict:
    """Flat description for tables: kind, rank, omega, activation, width."""
    return {
        "target": config.target,
        "linear": config.linear,
        "rank": config.rank if config.linear != "dense" else None,
        "omega": config.resolved_omega if config.linear == "sine" else None,
        "activation": config.activation,
        "width": config.width,
        "hidden_layers": config.hidden_layers,
        "fourier_frequencies": config.fourier_frequencies,
        **({"gain": config.gain} if config.gain is not None else {}),
    }
