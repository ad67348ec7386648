"""Linear layers with a dense, rank-k or sine-activated rank-k weight.

The sine low-rank weight is ``W = sin(omega * U @ V) / gain`` (Ji et al., ICLR 2025, Sec. 3): the
same ``k * (in + out)`` parameters as a rank-k factorisation, but the elementwise sine lifts the
rank of ``W`` far above k once ``omega`` is large.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "DEFAULT_OMEGA",
    "LowRankLinear",
    "SineLowRankLinear",
    "check_rank",
    "sine_weight",
]

# The authors' occupancy code uses omega = 100 with rank 1; our own sweep
# (benchmarks/shapes.py --omega-sweep) is what the README quotes for choosing it.
DEFAULT_OMEGA = 100.0


def check_rank(rank: int, in_features: int, out_features: int) -> None:
    """Raise ``ValueError`` unless ``1 <= rank <= min(in_features, out_features)``."""
    if in_features < 1 or out_features < 1:
        raise ValueError(
            f"in_features and out_features must be >= 1, got in_features={in_features}, "
            f"out_features={out_features}"
        )
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got rank={rank!r}")
    if rank > min(in_features, out_features):
        raise ValueError(
            f"rank must be <= min(in_features, out_features) = {min(in_features, out_features)}, "
            f"got rank={rank}"
        )


def check_omega(omega: float) -> float:
    """Return ``omega`` as a float, or raise ``ValueError`` if it is not a finite number."""
    try:
        value = float(omega)
    except (TypeError, ValueError):
        raise ValueError(f"omega must be a finite number, got omega={omega!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"omega must be a finite number, got omega={omega!r}")
    return value


def check_gain(gain: float | None, in_features: int) -> float:
    """Return the gain to divide by: ``sqrt(in_features)`` when ``None`` (the authors' choice)."""
    if gain is None:
        return math.sqrt(in_features)
    try:
        value = float(gain)
    except (TypeError, ValueError):
        raise ValueError(f"gain must be a finite number > 0, got gain={gain!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"gain must be a finite number > 0, got gain={gain!r}")
    return value


class _SineWeight(torch.autograd.Function):
    """``sin(omega * U @ V) / gain`` that saves only the factors.

    Plain autograd would keep ``omega * U @ V`` (out x in) for the sine's backward on top of the
    weight that ``F.linear`` keeps; recomputing the cosine in backward leaves one out x in buffer
    per layer (the weight saved by ``F.linear``) for a cost of one rank-k product and a cosine.
    """

    @staticmethod
    def forward(ctx, U: Tensor, V: Tensor, omega: float, gain: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(U, V)
        ctx.omega = omega
        ctx.gain = gain
        # omega folded into the small factor (out x k) and the sine taken in place: two passes over
        # the out x in matrix instead of four.
        return torch.mm(U * omega, V).sin_().div_(gain)

    @staticmethod
    def backward(ctx, grad_weight: Tensor):  # type: ignore[override]
        U, V = ctx.saved_tensors
        omega, gain = ctx.omega, ctx.gain
        # d/dZ of sin(omega Z) / gain is omega cos(omega Z) / gain, Z = U V; the constant factor is
        # applied to the small (out x k, k x in) results rather than to the out x in matrix.
        grad_z = torch.mm(U * omega, V).cos_().mul_(grad_weight)
        scale = omega / gain
        grad_u = torch.mm(grad_z, V.t()).mul_(scale) if ctx.needs_input_grad[0] else None
        grad_v = torch.mm(U.t(), grad_z).mul_(scale) if ctx.needs_input_grad[1] else None
        return grad_u, grad_v, None, None


def sine_weight(U: Tensor, V: Tensor, omega: float, gain: float) -> Tensor:
    """The sine low-rank matrix ``sin(omega * U @ V) / gain``, computed in (at least) float32.

    The argument ``omega * U @ V`` reaches tens or hundreds: in bfloat16 (8 significant bits) its
    rounding error is a sizeable part of the sine's period, so the product and the sine are taken
    in at least float32 with autocast off, whatever the factors' dtype or the autocast state, and
    the result is cast back to the factors' dtype.

    Args:
        U: ``(out, k)`` left factor.
        V: ``(k, in)`` right factor.
        omega: frequency; larger omega gives a higher-rank matrix (paper, Sec. 3.2).
        gain: divisor that keeps the matrix's scale independent of width.

    Returns:
        ``(out, in)`` matrix in ``U``'s dtype, differentiable in ``U`` and ``V``.
    """
    dtype = U.dtype
    compute = torch.promote_types(dtype, torch.float32)  # float64 stays float64
    with torch.autocast(device_type=U.device.type, enabled=False):
        weight = _SineWeight.apply(U.to(compute), V.to(compute), omega, gain)
    return weight.to(dtype)


def _init_factors(U: Tensor, V: Tensor) -> None:
    # The authors initialise both factors like nn.Linear's weight: kaiming-uniform, a = sqrt(5).
    nn.init.kaiming_uniform_(U, a=math.sqrt(5))
    nn.init.kaiming_uniform_(V, a=math.sqrt(5))


def _init_bias(bias: Tensor | None, in_features: int) -> None:
    if bias is not None:
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(bias, -bound, bound)


def _check_input(x: Tensor, in_features: int, layer: str) -> None:
    if x.shape[-1] != in_features:
        raise ValueError(
            f"{layer} expected input with last dimension in_features={in_features}, "
            f"got shape {tuple(x.shape)}"
        )


class _FactoredLinear(nn.Module):
    """Shared parameters and helpers of the two rank-k layers: ``U`` (out x k), ``V`` (k x in)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_rank(rank, in_features, out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        factory = {"device": device, "dtype": dtype}
        self.U = nn.Parameter(torch.empty(out_features, rank, **factory))
        self.V = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_factors(self.U, self.V)
        _init_bias(self.bias, self.in_features)

    @property
    def weight(self) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dense(self) -> nn.Linear:
        """An ``nn.Linear`` computing the same function, with the weight materialised once."""
        dense = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.U.device,
            dtype=self.U.dtype,
        )
        with torch.no_grad():
            dense.weight.copy_(self.weight)
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        return dense

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SineLowRankLinear(_FactoredLinear):
    """``y = x @ W.T + b`` with ``W = sin(omega * U @ V) / gain``.

    Args:
        in_features: input width.
        out_features: output width.
        rank: k, the inner dimension of ``U @ V`` (``1 <= k <= min(in, out)``).
        omega: frequency of the sine (paper: 100 for occupancy at rank 1).
        gain: divisor of the sine matrix; ``None`` means ``sqrt(in_features)`` (authors' code).
        bias: learn an additive bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        omega: float = DEFAULT_OMEGA,
        gain: float | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        omega = check_omega(omega)
        gain = check_gain(gain, in_features)
        super().__init__(in_features, out_features, rank, bias=bias, device=device, dtype=dtype)
        self.omega = omega
        self.gain = gain

    @property
    def weight(self) -> Tensor:
        """The effective dense ``(out, in)`` weight."""
        return sine_weight(self.U, self.V, self.omega, self.gain)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_features, "SineLowRankLinear")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"omega={self.omega:g}, gain={self.gain:.4g}, bias={self.bias is not None}, "
            f"params={self.num_parameters()}"
        )


class LowRankLinear(_FactoredLinear):
    """``y = x @ (U @ V).T + b``: a plain rank-k factorised linear layer.

    Args:
        in_features: input width.
        out_features: output width.
        rank: k, the inner dimension of ``U @ V`` (``1 <= k <= min(in, out)``).
        bias: learn an additive bias.
    """

    @property
    def weight(self) -> Tensor:
        """The effective dense ``(out, in)`` weight (rank at most k)."""
        return self.U @ self.V

    def _factored_is_cheaper(self, rows: int) -> bool:
        # Multiply-adds: x V^T U^T costs rows*k*(in+out); materialising costs out*in*k + rows*in*out.
        factored = rows * self.rank * (self.in_features + self.out_features)
        dense = self.out_features * self.in_features * (self.rank + rows)
        return factored < dense

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_features, "LowRankLinear")
        rows = x.numel() // self.in_features
        if self._factored_is_cheaper(rows):
            return F.linear(F.linear(x, self.V), self.U, self.bias)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"bias={self.bias is not None}, params={self.num_parameters()}"
        )
