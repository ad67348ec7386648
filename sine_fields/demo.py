"""``make demo``: a layer demo (replaced by the shape-fit demo once the shape pipeline lands)."""

from __future__ import annotations

from pathlib import Path

import torch

from sine_fields.layers import LowRankLinear, SineLowRankLinear


def main(output: Path = Path("runs/demo")) -> None:
    """Print the numerical rank and parameter count of dense, low-rank and sine low-rank 256 x 256 layers.

    Args:
        output: folder for the report (unused by the layer demo).
    """
    torch.manual_seed(0)
    dense = torch.nn.Linear(256, 256)
    for name, layer in (("dense", dense), ("lowrank k=4", LowRankLinear(256, 256, 4)), ("sine k=4", SineLowRankLinear(256, 256, 4))):
        rank = torch.linalg.matrix_rank(layer.weight.detach()).item()
        params = sum(p.numel() for p in layer.parameters())
        print(f"{name:<12} params {params:>6}  numerical rank {rank}")
