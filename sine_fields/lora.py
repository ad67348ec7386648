"""Sine-LoRA: a mergeable sine-activated low-rank adapter around a frozen ``nn.Linear``.

``delta_W = (alpha / r) * sin(omega * B @ A) / gain`` (Ji et al., ICLR 2025, Sec. 4.3), with ``A``
kaiming-uniform and ``B`` zero so that the adapted layer starts equal to the base layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sine_fields.layers import DEFAULT_OMEGA, _check_input, check_gain, check_omega, check_rank, sine_weight

__all__ = ["SineLoRALinear"]


class SineLoRALinear(nn.Module):
    """Wraps ``base_layer`` (frozen) and adds a sine low-rank update to its weight.

    Args:
        base_layer: the pretrained ``nn.Linear``; its parameters are frozen, not copied.
        rank: r, the inner dimension of ``B @ A``.
        alpha: LoRA scaling numerator; the update is scaled by ``alpha / rank``.
        omega: sine frequency; larger omega gives a higher-rank update (README: choosing omega).
        gain: divisor of the sine matrix; ``None`` means ``sqrt(in_features)``.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        alpha: float = 1.0,
        omega: float = DEFAULT_OMEGA,
        gain: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ValueError(f"base_layer must be an nn.Linear, got {type(base_layer).__name__}")
        in_features, out_features = base_layer.in_features, base_layer.out_features
        check_rank(rank, in_features, out_features)
        self.omega = check_omega(omega)
        self.gain = check_gain(gain, in_features)
        alpha = float(alpha)
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number, got alpha={alpha!r}")
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def get_delta_weight(self) -> Tensor:
        """The ``(out, in)`` update; the only place it is computed (forward, merge, unmerge)."""
        return sine_weight(self.lora_B, self.lora_A, self.omega, self.gain) * self.scaling

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_features, "SineLoRALinear")
        if self.merged:
            return self.base_layer(x)
        # One (out, in) addition instead of a second matmul: the delta is a full-rank matrix, so
        # the LoRA trick of x A^T B^T does not apply.
        weight = self.base_layer.weight + self.get_delta_weight().to(self.base_layer.weight.dtype)
        return F.linear(x, weight, self.base_layer.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the base weight (inference at dense cost)."""
        if self.merged:
            return
        self.base_layer.weight.add_(self.get_delta_weight().to(self.base_layer.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update from the base weight again."""
        if not self.merged:
            return
        self.base_layer.weight.sub_(self.get_delta_weight().to(self.base_layer.weight.dtype))
        self.merged = False

    def merge_and_unload(self) -> nn.Linear:
        """Merge and return the base ``nn.Linear`` (the adapter is dropped)."""
        self.merge()
        return self.base_layer

    def extra_repr(self) -> str:
        trainable = self.lora_A.numel() + self.lora_B.numel()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"alpha={self.alpha:g}, omega={self.omega:g}, gain={self.gain:.4g}, merged={self.merged}, "
            f"trainable_params={trainable}"
        )
