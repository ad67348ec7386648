"""Coordinate MLPs whose layers are dense, low-rank or sine low-rank.

A network is described by a small dict with tiny-cuda-nn's keys, so that one config reads the
same with or without CUDA::

    {"otype": "MLP", "n_neurons": 256, "n_hidden_layers": 3, "activation": "Gaussian",
     "output_activation": "None", "linear": "sine", "rank": 1, "omega": 100.0}

As in tiny-cuda-nn, ``n_hidden_layers`` counts the hidden activations: the network is
``in -> n``, ``n_hidden_layers - 1`` times ``n -> n``, then ``n -> out``. Only the ``n -> n``
layers are factorised by default, as in the authors' occupancy code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from sine_fields.layers import DEFAULT_OMEGA, LowRankLinear, SineLowRankLinear, check_rank

__all__ = ["ACTIVATIONS", "LINEAR_KINDS", "FieldMLP", "MLPConfig", "build_mlp"]

# Authors' occupancy code: Gaussian activation exp(-x^2 / (2 sigma^2)) with sigma = 0.1.
GAUSSIAN_SIGMA = 0.1
# SIREN (Sitzmann et al. 2020, Sec. 3.2): sin(w0 x) with w0 = 30.
SIREN_W0 = 30.0

Activation = Literal["ReLU", "Gaussian", "Sine", "Softplus", "Sigmoid", "None"]
LinearKind = Literal["dense", "lowrank", "sine"]
"""The layer a factorised position holds: ``nn.Linear``, ``LowRankLinear`` or ``SineLowRankLinear``."""
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
LINEAR_KINDS: tuple[str, ...] = get_args(LinearKind)


def _activation(name: str, inplace_ok: bool, x: Tensor) -> Tensor:
    if name == "ReLU":
        return x.relu_() if inplace_ok else x.relu()
    if name == "Gaussian":
        if inplace_ok:
            return x.square_().mul_(-0.5 / GAUSSIAN_SIGMA**2).exp_()
        return torch.exp(-0.5 * (x / GAUSSIAN_SIGMA) ** 2)
    if name == "Sine":
        return x.mul_(SIREN_W0).sin_() if inplace_ok else torch.sin(SIREN_W0 * x)
    if name == "Softplus":
        return nn.functional.softplus(x)
    if name == "Sigmoid":
        return x.sigmoid_() if inplace_ok else x.sigmoid()
    return x


@dataclass
class MLPConfig:
    """A field MLP; the keys match tiny-cuda-nn's network config where one exists."""

    n_neurons: int = 256
    """Width of every hidden layer."""
    n_hidden_layers: int = 3
    """Number of hidden activations (tiny-cuda-nn's meaning): n_hidden_layers - 1 square layers."""
    activation: Activation = "ReLU"
    """Hidden activation. Gaussian is the authors' choice for occupancy, Sine is SIREN."""
    output_activation: Activation = "None"
    """Activation after the last layer."""
    linear: LinearKind = "dense"
    """Kind of the factorised layers."""
    rank: int = 1
    """Rank k of the factorised layers."""
    omega: float = DEFAULT_OMEGA
    """Sine frequency of sine low-rank layers."""
    gain: float | None = None
    """Divisor of the sine matrix; None is sqrt(in_features)."""
    factorise: Literal["hidden", "all"] = "hidden"
    """Which layers use `linear`: the square hidden layers only, or every layer that the rank fits."""

    @classmethod
    def from_dict(cls, config: dict) -> "MLPConfig":
        """Read a tiny-cuda-nn style dict; ``otype`` is accepted and ignored (the torch path)."""
        known = set(cls.__dataclass_fields__)
        extra = set(config) - known - {"otype"}
        if extra:
            raise ValueError(f"unknown MLP config keys {sorted(extra)}; expected some of {sorted(known)}")
        return cls(**{k: v for k, v in config.items() if k in known})

    def to_dict(self) -> dict:
        return {"otype": "MLP", **asdict(self)}


class FieldMLP(nn.Module):
    """``in_dim -> n_neurons x n_hidden_layers -> out_dim`` with configurable layer kinds.

    Args:
        in_dim: input width (after any encoding).
        out_dim: output width.
        config: an ``MLPConfig`` or a tiny-cuda-nn style dict.
    """

    def __init__(self, in_dim: int, out_dim: int, config: MLPConfig | dict | None = None) -> None:
        super().__init__()
        if config is None:
            config = MLPConfig()
        if isinstance(config, dict):
            config = MLPConfig.from_dict(config)
        if config.linear not in LINEAR_KINDS:
            raise ValueError(f"linear must be one of {', '.join(LINEAR_KINDS)}, got linear={config.linear!r}")
        for key in ("activation", "output_activation"):
            if getattr(config, key) not in ACTIVATIONS:
                raise ValueError(f"{key} must be one of {', '.join(ACTIVATIONS)}, got {getattr(config, key)!r}")
        if config.n_hidden_layers < 1 or config.n_neurons < 1:
            raise ValueError(
                f"n_hidden_layers and n_neurons must be >= 1, got n_hidden_layers={config.n_hidden_layers}, "
                f"n_neurons={config.n_neurons}"
            )
        if config.linear != "dense":
            check_rank(config.rank, config.n_neurons, config.n_neurons)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.config = config
        widths = [in_dim] + [config.n_neurons] * config.n_hidden_layers + [out_dim]
        last = len(widths) - 2
        self.layers = nn.ModuleList(
            self._make_layer(i, widths[i], widths[i + 1], is_hidden=0 < i < last) for i in range(len(widths) - 1)
        )
        if config.activation == "Sine":
            self._siren_init()

    def _make_layer(self, index: int, fan_in: int, fan_out: int, is_hidden: bool) -> nn.Module:
        c = self.config
        factorise = c.linear != "dense" and (
            is_hidden or (c.factorise == "all" and c.rank <= min(fan_in, fan_out))
        )
        if not factorise:
            return nn.Linear(fan_in, fan_out)
        if c.linear == "lowrank":
            return LowRankLinear(fan_in, fan_out, c.rank)
        return SineLowRankLinear(fan_in, fan_out, c.rank, omega=c.omega, gain=c.gain)

    @torch.no_grad()
    def _siren_init(self) -> None:
        # SIREN's initialisation (Sec. 3.2) for the dense layers; factorised layers keep their own.
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.Linear):
                bound = 1.0 / layer.in_features if i == 0 else math.sqrt(6.0 / layer.in_features) / SIREN_W0
                layer.weight.uniform_(-bound, bound)

    def get_out_dim(self) -> int:
        return self.out_dim

    def num_parameters(self) -> int:
        """Exact parameter count (``parameters()`` yields a shared tensor once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor) -> Tensor:
        """``(*bs, in_dim) -> (*bs, out_dim)``."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"FieldMLP expected input with last dimension {self.in_dim}, got shape {tuple(x.shape)}")
        # In-place activations are safe when no graph is recorded; they halve the memory traffic
        # of inference, which is what bounds this MLP's speed on a CPU (benchmarks/layers.py).
        inplace_ok = not torch.is_grad_enabled()
        last = len(self.layers) - 1
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            h = _activation(self.config.activation if i < last else self.config.output_activation, inplace_ok, h)
        return h


def build_mlp(in_dim: int, out_dim: int, config: MLPConfig | dict | None = None) -> FieldMLP:
    """Build a ``FieldMLP`` from an ``MLPConfig`` or a tiny-cuda-nn style dict."""
    return FieldMLP(in_dim, out_dim, config)
