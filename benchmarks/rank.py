"""Numerical rank of the sine low-rank matrix against omega and k (the paper's Fig. 1, measured).

    .venv/bin/python benchmarks/rank.py     # a few seconds; writes benchmarks/results/rank.json

A 256 x 256 ``SineLowRankLinear`` weight with the authors' initialisation, seed 0; the rank is
``torch.linalg.matrix_rank`` in float32 (the weight's own precision). ``LowRankLinear`` stays at k.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sine_fields import LowRankLinear, SineLowRankLinear
from sine_fields.io import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "rank.json"
OMEGAS = (1.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
RANKS = (1, 2, 4, 8, 16)
WIDTH = 256


def measure() -> dict:
    rows = []
    for rank in RANKS:
        torch.manual_seed(0)
        layer = SineLowRankLinear(WIDTH, WIDTH, rank)
        plain = LowRankLinear(WIDTH, WIDTH, rank)
        row = {"rank": rank, "lowrank": int(torch.linalg.matrix_rank(plain.weight.detach()))}
        for omega in OMEGAS:
            layer.omega = omega
            row[f"sine_omega_{omega:g}"] = int(torch.linalg.matrix_rank(layer.weight.detach()))
        rows.append(row)
    return {"width": WIDTH, "omegas": list(OMEGAS), "rows": rows}


def markdown(result: dict) -> str:
    header = "| k | low-rank | " + " | ".join(f"sine, omega {o:g}" for o in result["omegas"]) + " |"
    lines = [header, "|" + "---|" * (2 + len(result["omegas"]))]
    for row in result["rows"]:
        cells = [str(row[f"sine_omega_{o:g}"]) for o in result["omegas"]]
        lines.append(f"| {row['rank']} | {row['lowrank']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    result = measure()
    atomic_write_json(RESULTS, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
