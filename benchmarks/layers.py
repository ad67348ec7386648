"""Speed and memory of dense, low-rank and sine low-rank MLPs, measured as ratios in one run.

    .venv/bin/python benchmarks/layers.py            # full run, writes benchmarks/results/layers.json
    .venv/bin/python benchmarks/layers.py --quick    # smaller, for a smoke test

What is measured (all float32, on the device of the run):
- the machine's own float32 matmul rate (a large square product), as the reference for field inference;
- a training step (forward + backward) of a 4-layer MLP at width 256 and 1024, batch 4k and 64k, for
  dense, low-rank (rank 8) and sine low-rank (rank 8) hidden layers; the memory autograd keeps for
  backward (exact, from saved-tensor hooks) and, on CUDA, the allocator's peak;
- inference after ``to_dense()`` (merged) against dense inference;
- field inference of a 3 -> 256 x 3 -> 1 ReLU MLP at batch 64k: plain ``nn.Module`` forward under
  ``inference_mode`` and ``MergedMLP``, as a fraction of the matmul rate.
Times are medians of repeated runs after a warm-up.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sine_fields import FieldMLP, MLPConfig, count_parameters
from sine_fields.fields.merged import MergedMLP
from sine_fields.io import atomic_write_json

RESULTS = Path(__file__).parent / "results" / "layers.json"
KINDS = ("dense", "lowrank", "sine")
RANK = 8


def median_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(device: torch.device, sync, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 square product: the ceiling a dense MLP can approach."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = median_seconds(lambda: a @ b, repeats, sync)
    return 2 * size**3 / seconds / 1e9


def make_mlp(kind: str, width: int, device) -> FieldMLP:
    # 64 -> width x 4 -> 64: three square hidden layers that carry the kind.
    config = MLPConfig(n_neurons=width, n_hidden_layers=4, activation="ReLU", linear=kind, rank=RANK)
    return FieldMLP(64, 64, config).to(device)


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward in one forward pass (distinct storages counted once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    return sum(storages.values())


def train_step_stats(kind: str, width: int, batch: int, device, sync, repeats: int) -> dict:
    torch.manual_seed(0)
    model = make_mlp(kind, width, device)
    x = torch.randn(batch, 64, device=device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimiser.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimiser.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = median_seconds(step, repeats, sync)
    row = {
        "kind": kind,
        "width": width,
        "batch": batch,
        "parameters": count_parameters(model),
        "train_step_s": seconds,
        "saved_for_backward_bytes": saved_bytes(model, x),
    }
    if device.type == "cuda":
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    with torch.inference_mode():
        row["inference_s"] = median_seconds(lambda: model(x), repeats, sync)
    merged = model
    for i, layer in enumerate(model.layers):
        if hasattr(layer, "to_dense"):
            merged.layers[i] = layer.to_dense()
    with torch.inference_mode():
        row["merged_inference_s"] = median_seconds(lambda: merged(x), repeats, sync)
    return row


def field_inference(device, sync, batch: int, repeats: int) -> dict:
    """3 -> 256 x 3 -> 1 ReLU field (two square hidden layers), as in the issue."""
    torch.manual_seed(0)
    mlp = FieldMLP(3, 1, MLPConfig(n_neurons=256, n_hidden_layers=3, activation="ReLU")).to(device)
    x = torch.rand(batch, 3, device=device)
    flops = 2 * batch * sum(layer.in_features * layer.out_features for layer in mlp.layers)
    with torch.inference_mode():
        plain = median_seconds(lambda: mlp(x), repeats, sync)
    merged = MergedMLP(mlp)
    fast = median_seconds(lambda: merged(x), repeats, sync)
    chunks = {}
    for chunk in (1024, 2048, 4096, 8192, 16384):
        merged.chunk = chunk
        chunks[str(chunk)] = median_seconds(lambda: merged(x), repeats, sync)
    return {
        "batch": batch,
        "gflop": flops / 1e9,
        "plain_s": plain,
        "merged_s": fast,
        "plain_gflops": flops / plain / 1e9,
        "merged_gflops": flops / fast / 1e9,
        "chunk_sweep_s": chunks,
    }


def markdown(result: dict) -> str:
    # The reference is measured at the start and at the end of the run; a busy or throttled machine
    # shows as a difference, so ratios to the matmul rate are given against both.
    rates = (result["matmul_gflops"], result.get("matmul_gflops_end", result["matmul_gflops"]))
    lines = [
        f"float32 matmul: {rates[0]:.0f} GFLOP/s at the start of the run, {rates[1]:.0f} at the end "
        f"({result['device']}, {result['threads']} threads)",
        "",
        "| width | batch | kind | params | train step (ms) | vs dense | saved for backward (MiB) | merged inference vs dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dense = {(r["width"], r["batch"]): r for r in result["train"] if r["kind"] == "dense"}
    for r in result["train"]:
        d = dense[(r["width"], r["batch"])]
        lines.append(
            f"| {r['width']} | {r['batch']} | {r['kind']} | {r['parameters']:,} | {1e3 * r['train_step_s']:.1f} | "
            f"{r['train_step_s'] / d['train_step_s']:.2f}x | {r['saved_for_backward_bytes'] / 2**20:.1f} | "
            f"{r['merged_inference_s'] / d['inference_s']:.2f}x |"
        )
    f = result["field_inference"]
    lines += [
        "",
        f"Field inference (3 -> 256 x 3 -> 1, batch {f['batch']}): plain `nn.Module` forward "
        f"{f['plain_gflops']:.0f} GFLOP/s ({f['plain_gflops'] / max(rates):.0%} to {f['plain_gflops'] / min(rates):.0%} "
        f"of the matmul rate), MergedMLP {f['merged_gflops']:.0f} GFLOP/s ({f['merged_gflops'] / max(rates):.0%} to "
        f"{f['merged_gflops'] / min(rates):.0%}), {f['plain_s'] / f['merged_s']:.2f}x faster than plain.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        print(f"error: --device {args.device!r} is not usable here: {error}", file=sys.stderr)
        return 2
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    widths, batches, repeats = ((256,), (4096,), 3) if args.quick else ((256, 1024), (4096, 65536), 7)
    field_batch = 8192 if args.quick else 65536

    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "quick": args.quick,
        "rank": RANK,
        "matmul_gflops": matmul_rate(device, sync),
        "train": [],
    }
    for width in widths:
        for batch in batches:
            for kind in KINDS:
                row = train_step_stats(kind, width, batch, device, sync, repeats)
                result["train"].append(row)
                print(f"width {width} batch {batch} {kind}: train {1e3 * row['train_step_s']:.1f} ms", flush=True)
    result["field_inference"] = field_inference(device, sync, field_batch, repeats)
    # Measure the reference again at the end: other load on the machine shows as a difference.
    result["matmul_gflops_end"] = matmul_rate(device, sync)
    atomic_write_json(args.output, result)
    print(markdown(result))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
