"""Quantisation-aware fine-tuning: a few hundred steps with the quantiser of ``pack`` in the loop.

Post-training quantisation of a sine low-rank field to 8 bits loses IoU because the sine multiplies
the factors' rounding error by omega: an entry's argument is ``omega * u_i * v_j``, tens of radians at
omega = 1000, so a relative error of 1/510 (half a step of 255) moves it by a tenth of a radian.
Fine-tuning with the quantiser in the forward pass (straight-through gradients, as in Jacob et al.
2018, Sec. 3) moves the float weights to where their quantised values fit the shape.

Every parameter is quantised as the packed file codes it (its own width, ``block`` and pair type), so the
returned field's latent float weights give, through ``quantise_rows``, exactly the values the fine-tuning
saw: packing it with the same widths reproduces the fine-tuned quantised field.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from sine_fields.shapes.field import ShapeField
from sine_fields.shapes.pack import dequantise_rows, quantise_rows

__all__ = ["FakeQuantise", "finetune_quantised"]


class FakeQuantise(nn.Module):
    """A parametrisation: the value ``quantise_rows`` codes (``bits`` wide, ``block`` entries per pair)
    forward, the identity backward."""

    def __init__(self, bits: int = 8, block: int = 0, affine_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.bits, self.block, self.affine_dtype = bits, block, affine_dtype

    def forward(self, weight: Tensor) -> Tensor:
        with torch.no_grad():
            codes, affine = quantise_rows(weight, self.bits, self.block, self.affine_dtype)
            quantised = dequantise_rows(codes, affine, tuple(weight.shape), self.block).to(weight)
        return weight + (quantised - weight).detach()


def finetune_quantised(field: ShapeField, points: Tensor, target: Tensor, loss_fn, steps: int, batch_size: int,
                       lr: float, widths: dict[str, int], seed: int = 0, block: int = 0,
                       affine_dtype: torch.dtype = torch.float32) -> list[float]:
    """Fine-tune ``field`` in place with every parameter fake-quantised as ``pack_bytes`` codes it.

    Args:
        field: a trained field (its device is used).
        points: ``(n, 3)`` training points, normalised frame, on the field's device.
        target: ``(n,)`` occupancy in {0, 1} or signed distance, as the fit used.
        loss_fn: ``loss_fn(field, points, target) -> scalar`` (the fit's loss).
        steps: optimiser steps (0 leaves the field unchanged).
        lr: Adam's learning rate, decayed to zero on a cosine.
        widths: code width of every parameter (``code_widths``); ``block``, ``affine_dtype``: as ``pack_bytes``.
    Returns the loss every 10 steps.
    """
    if steps <= 0:
        return []
    names = [name for name, _ in field.named_parameters()]
    modules = dict(field.named_modules())
    for name in names:
        owner, _, attribute = name.rpartition(".")
        parametrize.register_parametrization(modules[owner], attribute, FakeQuantise(widths[name], block, affine_dtype))
    optimiser = torch.optim.Adam(field.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    losses = []
    field.train()
    try:
        for step in range(steps):
            index = torch.randint(len(points), (batch_size,), generator=generator).to(points.device)
            loss = loss_fn(field, points[index], target[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if step % 10 == 9 or step == steps - 1:
                losses.append(loss.item())
    finally:
        for name in names:
            owner, _, attribute = name.rpartition(".")
            # Keep the latent float weights (not their quantised values): packing quantises them again.
            parametrize.remove_parametrizations(modules[owner], attribute, leave_parametrized=False)
        field.eval()
    return losses
