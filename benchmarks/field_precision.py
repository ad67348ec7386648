"""Speed of the lite NeRF field in float32 and in bfloat16 (``--pipeline.model.precision``), as ratios in one run.

    .venv/bin/python benchmarks/field_precision.py --output benchmarks/results/field_precision.json
    .venv/bin/python benchmarks/field_precision.py --quick --output /tmp/field_precision.json   # CI: seconds

What is timed, on the CPU, for each precision (float32 and bfloat16 via ``field_autocast``), interleaved so
that a change of machine load hits both alike:
- one 32,768 x 256 by 256 x 256 product (the shape of the field's hidden layers at a step's samples);
- a forward and backward pass of the `sine-nerf-lite` field (sine, rank 5) and of its dense twin at
  ``--samples`` random points and view directions, the arithmetic of one training step.
Times are medians of repeats after a warm-up; the JSON keeps the load average before and after and which
bfloat16 units the CPU has, AMX tiles or AVX512-BF16 (``precision auto`` picks bfloat16 only where there are
some). Also recorded: how far the bfloat16 field's outputs are from the float32 ones on the same weights
(the rounding the products add).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def lite_field(linear: str):
    """The field of the registered `sine-nerf-lite` config (or its twin), on the box [-1, 1]^3."""
    from nerfstudio.plugins.registry import discover_methods

    from sine_fields.methods.common import model_in_unit_box

    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"]).pipeline.model
    config.linear = linear
    return model_in_unit_box(config).field


def samples_at(count: int, seed: int = 0):
    """``count`` nerfstudio ray samples at random points of the box, with random directions."""
    from nerfstudio.cameras.rays import Frustums, RaySamples

    generator = torch.Generator().manual_seed(seed)
    origins = torch.rand(count, 3, generator=generator) * 2 - 1
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    zeros = torch.zeros(count, 1)
    frustums = Frustums(origins=origins, directions=directions, starts=zeros, ends=zeros + 1e-3,
                        pixel_area=torch.ones(count, 1))
    return RaySamples(frustums=frustums, camera_indices=torch.zeros(count, 1, dtype=torch.long))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and oneDNN kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(samples: int, repeats: int) -> dict:
    from nerfstudio.field_components.field_heads import FieldHeadNames

    from sine_fields.methods.precision import field_autocast

    cpu = torch.device("cpu")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    x = torch.randn(samples, 256)
    w = torch.randn(256, 256)
    ray_samples = samples_at(samples)
    fields = {linear: lite_field(linear) for linear in ("sine", "dense")}
    times: dict[str, dict[str, list[float]]] = {}

    def product(dtype):
        a, b = x.to(dtype), w.to(dtype)
        return lambda: a @ b

    def field_step(field, dtype):
        def step():
            field.zero_grad(set_to_none=True)
            with field_autocast(dtype, cpu):
                outputs = field.forward(ray_samples)
            (outputs[FieldHeadNames.RGB].float().sum() + outputs[FieldHeadNames.DENSITY].float().sum()).backward()
        return step

    cases = {"product 32768x256 @ 256x256": product}
    cases.update({f"{linear} field forward + backward": partial(field_step, field) for linear, field in fields.items()})
    for _ in range(3):  # rounds: float32 and bfloat16 alternate within each, so load drifts hit both
        for case, make in cases.items():
            for name, dtype in dtypes.items():
                times.setdefault(case, {}).setdefault(name, []).append(median_seconds(make(dtype), repeats))
    rows = []
    for case, by_dtype in times.items():
        fp32, bf16 = min(by_dtype["float32"]), min(by_dtype["bfloat16"])
        rows.append({"case": case, "float32_seconds": fp32, "bfloat16_seconds": bf16, "speedup": fp32 / bf16})
    with torch.no_grad():
        field = fields["sine"]
        with field_autocast(torch.float32, cpu):
            full = field.forward(ray_samples)
        with field_autocast(torch.bfloat16, cpu):
            low = field.forward(ray_samples)
    rgb_error = (low[FieldHeadNames.RGB].float() - full[FieldHeadNames.RGB]).abs().max().item()
    density = full[FieldHeadNames.DENSITY]
    density_error = ((low[FieldHeadNames.DENSITY].float() - density).abs() / density.clamp_min(1e-3)).max().item()
    return {"rows": rows, "bfloat16_max_rgb_error": rgb_error, "bfloat16_max_relative_density_error": density_error}


def markdown(data: dict) -> str:
    rows = ["| what (CPU) | float32 (ms) | bfloat16 (ms) | bfloat16 speed-up |", "|---|---|---|---|"]
    for r in data["rows"]:
        rows.append(f"| {r['case']} | {1e3 * r['float32_seconds']:.1f} | {1e3 * r['bfloat16_seconds']:.1f} | "
                    f"{r['speedup']:.1f}x |")
    m = data["machine"]
    rows.append("")
    # files written before AVX512-BF16 counted recorded only whether the CPU had AMX tiles: without them,
    # such a file cannot say the CPU had no bfloat16 units at all
    units = (m["bfloat16_units"] if "bfloat16_units" in m
             else "AMX tiles" if m["bfloat16_tiles"] else "no AMX tiles (AVX512-BF16 not checked)")
    cpu = f"CPU: {m['cpu']}; " if m.get("cpu") else ""
    rows.append(f"{data['samples']:,} samples; {cpu}bfloat16 units: {units or 'none'}; "
                f"{m['threads']} threads; load average {m['load_average_before']:.2f} before, "
                f"{m['load_average_after']:.2f} after. bfloat16 field against float32 on the same weights: "
                f"colour within {data['bfloat16_max_rgb_error']:.3f}, density within "
                f"{100 * data['bfloat16_max_relative_density_error']:.1f} %.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32768, help="field samples per timed pass (a step's worth)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="CI: 2,048 samples, 2 repeats")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.repeats = 2048, 2
    if args.samples < 1 or args.repeats < 1:
        print(f"error: --samples and --repeats must be >= 1, got {args.samples}, {args.repeats}", file=sys.stderr)
        return 2
    from experiments.common import cpu_model
    from sine_fields.io import atomic_write_json
    from sine_fields.methods.precision import cpu_bfloat16_units

    load_before = _load()
    result = measure(args.samples, args.repeats)
    data = {
        "command": " ".join(["benchmarks/field_precision.py", *(argv if argv is not None else sys.argv[1:])]),
        "samples": args.samples, "repeats": args.repeats, "quick": args.quick, **result,
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "bfloat16_units": cpu_bfloat16_units(),
                    "load_average_before": load_before, "load_average_after": _load()},
    }
    atomic_write_json(args.output, data)
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
