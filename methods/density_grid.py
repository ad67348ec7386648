"""A field's density cached on a regular grid over the scene box, used to place a NeRF's samples.

Vanilla NeRF places its samples with a second network: a coarse field evaluated at stratified points
gives each ray a weight distribution, and the fine field is evaluated where that distribution is large.
On a CPU the coarse pass costs as much arithmetic per sample as the fine one and its samples are
thrown away. Instant-NGP and nerfacc's occupancy grid replace it with a cache of the field's own
density on a grid; here the cache is read the way the coarse field would be read: densities at many
cheap candidate points along each ray (trilinear lookups, no network) give rendering weights, and the
field is evaluated only at points drawn from them. Every field evaluation then lies near what the field
currently believes is the first surface along the ray, or in the small share drawn uniformly so that
new matter can still be found.

The cache follows the field: ``update`` evaluates the field's density at one jittered point in every
cell and keeps ``max(decay * old, new)`` (instant-NGP's rule), so a cell the field fills is seen at
once and a cell it empties fades over a few updates. With ``parts > 1`` an update after the first
evaluates only one of ``parts`` interleaved sets of cells (every ``parts``-th cell, in turn), so each
cell is refreshed once every ``parts`` updates at ``1 / parts`` of the cost per update: evaluating a
64^3 grid costs as much field arithmetic as several training steps, and the field moves little
between two updates. The grid is a buffer, not a parameter: it is
never trained, it is saved in checkpoints so that a reloaded model samples as it did in training, and
it could always be rebuilt from the field.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["DensityGrid"]

DensityFn = Callable[[Tensor], Tensor]
"""``(n, 3)`` points -> ``(n, 1)`` densities (a nerfstudio ``Field.density_fn``)."""


class DensityGrid(nn.Module):
    """``resolution^3`` densities over the axis-aligned box ``aabb`` (``(2, 3)``: min corner, max corner)."""

    def __init__(self, aabb: Tensor, resolution: int, decay: float, parts: int = 1) -> None:
        super().__init__()
        self.check_settings(resolution, decay, parts)
        self.resolution = int(resolution)
        self.decay = float(decay)
        self.parts = int(parts)
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).clone())
        self.register_buffer("density", torch.zeros((resolution,) * 3))
        # How many times the grid has been filled; 0 means it still holds no field values.
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @staticmethod
    def check_settings(resolution: int, decay: float, parts: int) -> None:
        """Raise ``ValueError`` for settings no grid can have (the lite config checks its flags with this)."""
        if resolution < 2:
            raise ValueError(f"density grid resolution must be at least 2, got {resolution}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"density grid decay must lie in [0, 1], got {decay}")
        if not 1 <= parts <= resolution**3:
            raise ValueError(f"density grid parts must lie in [1, resolution^3], got {parts}")

    def cell_points(self, jitter: bool) -> Tensor:
        """One point per cell, ``(resolution^3, 3)`` in C order of the cell index (x slowest):
        the cell centres, or a uniformly random point inside each cell."""
        r = self.resolution
        device = self.density.device
        axis = torch.arange(r, device=device, dtype=torch.float32)
        index = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        offset = torch.rand_like(index) if jitter else torch.full_like(index, 0.5)
        unit = (index + offset) / r
        low, high = self.aabb[0], self.aabb[1]
        return low + unit * (high - low)

    @torch.no_grad()
    def update(self, density_fn: DensityFn, chunk: int = 65536) -> None:
        """Evaluate the field's density at a random point of every cell (the first time) or of this
        update's share of the cells (afterwards), and fold it into the cache."""
        points = self.cell_points(jitter=True)
        flat = self.density.view(-1)
        if int(self.updates) == 0:
            cells = torch.arange(len(points), device=points.device)
        else:
            cells = torch.arange((int(self.updates) - 1) % self.parts, len(points), self.parts, device=points.device)
        chosen = points[cells]
        fresh = torch.cat([density_fn(chosen[i : i + chunk]).reshape(-1) for i in range(0, len(chosen), chunk)])
        fresh = fresh.to(flat.dtype)
        if int(self.updates) == 0:
            flat.copy_(fresh)
        else:
            flat[cells] = torch.maximum(flat[cells] * self.decay, fresh)
        self.updates += 1

    def forward(self, positions: Tensor) -> Tensor:
        """Trilinearly interpolated cached density at ``positions`` (``(..., 3)`` -> ``(..., 1)``);
        points outside the box read the nearest border cell."""
        low, high = self.aabb[0], self.aabb[1]
        normalised = (positions.reshape(-1, 3) - low) / (high - low) * 2.0 - 1.0
        # grid_sample reads its last coordinate as the first volume axis: the volume is indexed
        # [x, y, z], so the coordinates go in as (z, y, x).
        grid = normalised.flip(-1).reshape(1, -1, 1, 1, 3).to(self.density.dtype)
        values = nn.functional.grid_sample(
            self.density[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        return values.reshape(*positions.shape[:-1], 1).to(positions.dtype)
