"""Dense vs low-rank vs sine low-rank ViT, trained from scratch on scikit-learn's handwritten digits.

    python benchmarks/vit.py            # full: omega sweep, then 4 ranks x 3 seeds (31 min measured on a busy shared 2-core machine)
    python benchmarks/vit.py --quick    # pipeline check in about a minute (writes vit_quick.json)

The attention (qkv, proj) and MLP (fc1, fc2) projections of a small timm ViT are converted with
``sine_fields.convert``; patch embedding and head stay dense. Low-rank and sine low-rank have the
same parameters at each rank (``k * (in + out)`` per projection), which the script asserts. omega is
chosen by a sweep on a validation split carved out of the training images, never on the test set.
Results: ``benchmarks/results/vit.json`` and ``vit.md`` (markdown table).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None):
    from experiments.common import OneLineParser, parse_floats, parse_ints

    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings that check the pipeline end to end")
    parser.add_argument("--ranks", type=parse_ints, help="comma-separated ranks (default 1,2,4,8; quick 1,2)")
    parser.add_argument("--seeds", type=parse_ints, help="comma-separated seeds (default 0,1,2; quick 0,1)")
    parser.add_argument("--epochs", type=int, help="training epochs per run (default 20; quick 3)")
    parser.add_argument("--omega", type=float, help="use this omega and skip the sweep")
    parser.add_argument("--sweep-omegas", type=parse_floats, help="omegas tried on the validation split (default 10,30,100,300,1000)")
    parser.add_argument("--sweep-rank", type=int, help="rank of the omega sweep (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/vit.json, quick: vit_quick.json)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.ranks = args.ranks or ([1, 2] if quick else [1, 2, 4, 8])
    args.seeds = args.seeds or ([0, 1] if quick else [0, 1, 2])
    args.epochs = args.epochs if args.epochs is not None else (3 if quick else 20)
    args.sweep_omegas = args.sweep_omegas or ([30.0, 100.0] if quick else [10.0, 30.0, 100.0, 300.0, 1000.0])
    args.sweep_rank = args.sweep_rank if args.sweep_rank is not None else 1
    args.out = args.out or RESULTS / ("vit_quick.json" if quick else "vit.json")
    if any(r < 1 for r in args.ranks) or args.sweep_rank < 1:
        parser.error("ranks must be >= 1")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.omega is not None and not (args.omega > 0 and args.omega < float("inf")):
        parser.error(f"--omega must be a finite number > 0, got {args.omega}")
    if args.out.suffix != ".json":
        parser.error(f"--out must end in .json, got {args.out}")
    return args


def summarise(runs: list[dict], group_keys: tuple[str, ...]) -> list[dict]:
    """Mean and spread of test accuracy over seeds for each (kind, rank)."""
    from experiments.common import mean_std

    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in group_keys), []).append(run)
    rows = []
    for key, members in groups.items():
        params = {m["parameters"] for m in members}
        assert len(params) == 1, f"seeds disagree on the parameter count of {key}: {params}"
        mean, std = mean_std([m["test_accuracy"] for m in members])
        rank_mean = [m["effective_rank_mean"] for m in members if m["effective_rank_mean"] is not None]
        rows.append(
            {
                **dict(zip(group_keys, key)),
                "seeds": [m["seed"] for m in members],
                "test_accuracy_mean": mean,
                "test_accuracy_std": std,
                "parameters": members[0]["parameters"],
                "projection_parameters": members[0]["projection_parameters"],
                "projection_parameters_dense": members[0]["projection_parameters_dense"],
                "effective_rank_mean": sum(rank_mean) / len(rank_mean) if rank_mean else None,
                "train_seconds_mean": sum(m["train_seconds"] for m in members) / len(members),
            }
        )
    return rows


def markdown(result: dict) -> str:
    from experiments.common import markdown_table

    dense = [r for r in result["summary"] if r["kind"] == "dense"]
    rows = []
    for rank in result["config"]["ranks"]:
        low = next(r for r in result["summary"] if r["kind"] == "lowrank" and r["rank"] == rank)
        sine = next(r for r in result["summary"] if r["kind"] == "sine" and r["rank"] == rank)
        rows.append(
            [
                rank,
                f"{low['projection_parameters']:,} ({low['projection_parameters'] / low['projection_parameters_dense']:.1%})",
                f"{low['parameters']:,}",
                f"{100 * low['test_accuracy_mean']:.2f} ± {100 * low['test_accuracy_std']:.2f}",
                f"{100 * sine['test_accuracy_mean']:.2f} ± {100 * sine['test_accuracy_std']:.2f}",
                f"{100 * (sine['test_accuracy_mean'] - low['test_accuracy_mean']):+.2f}",
                f"{low['effective_rank_mean']:.1f} / {sine['effective_rank_mean']:.1f}",
            ]
        )
    for d in dense:
        rows.append(
            [
                "dense",
                f"{d['projection_parameters']:,}",
                f"{d['parameters']:,}",
                f"{100 * d['test_accuracy_mean']:.2f} ± {100 * d['test_accuracy_std']:.2f}",
                "",
                "",
                "full",
            ]
        )
    header = [
        "rank",
        "projection params",
        "model params",
        "low-rank acc %",
        f"sine acc % (omega {result['omega']:g})",
        "sine - low-rank",
        "mean numerical rank (low / sine)",
    ]
    sweep_rows = [
        [f"{s['omega']:g}", f"{100 * s['validation_accuracy_mean']:.2f} ± {100 * s['validation_accuracy_std']:.2f}"]
        for s in result["omega_sweep"]["results"]
    ]
    text = (
        f"Test accuracy (%) on the fixed digits test split, mean ± std over seeds {result['config']['seeds']}, "
        f"{result['config']['train']['epochs']} epochs.\n\n" + markdown_table(header, rows)
    )
    if sweep_rows:
        text += (
            f"\nomega sweep (sine, rank {result['omega_sweep']['rank']}, validation split of the training images, "
            f"seeds {result['omega_sweep']['seeds']}):\n\n" + markdown_table(["omega", "validation acc %"], sweep_rows)
        )
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from experiments.common import mean_std, write_json_atomic, write_text_atomic
    from experiments.vit import TrainConfig, ViTConfig, config_dict, load_digits_split, train_vit

    torch.set_num_threads(args.threads)
    model_config = ViTConfig(depth=2) if args.quick else ViTConfig()
    train_config = replace(TrainConfig(), epochs=args.epochs)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {text}", flush=True)

    # 1. omega: chosen on a validation split of the training images (test images untouched).
    sweep_seeds = args.seeds[:1]
    sweep: dict = {"rank": args.sweep_rank, "seeds": sweep_seeds, "results": [], "chosen_by": "sweep"}
    if args.omega is not None:
        omega = args.omega
        sweep["chosen_by"] = "--omega"
    else:
        validation = load_digits_split(validation=True)
        for candidate in args.sweep_omegas:
            accs = []
            for seed in sweep_seeds:
                run = train_vit("sine", args.sweep_rank, candidate, seed, validation, model_config, train_config)
                accs.append(run["test_accuracy"])
            mean, std = mean_std(accs)
            sweep["results"].append({"omega": candidate, "validation_accuracy_mean": mean, "validation_accuracy_std": std})
            log(f"sweep omega={candidate:g}: validation accuracy {mean:.4f}")
        omega = max(sweep["results"], key=lambda s: s["validation_accuracy_mean"])["omega"]
    log(f"omega = {omega:g} ({sweep['chosen_by']})")

    # 2. the comparison on the test split, same seeds and epochs for every method.
    data = load_digits_split()
    runs = []
    plan = [("dense", 0)] + [(kind, rank) for rank in args.ranks for kind in ("lowrank", "sine")]
    for kind, rank in plan:
        for seed in args.seeds:
            run = train_vit(kind, rank, omega, seed, data, model_config, train_config)
            runs.append(run)
            log(
                f"{kind:7s} rank={rank if kind != 'dense' else '-'} seed={seed}: test accuracy {run['test_accuracy']:.4f}, "
                f"{run['parameters']:,} params, {run['train_seconds']:.1f}s"
            )
    # Same rank -> same parameters for low-rank and sine: the comparison is only fair if so.
    for rank in args.ranks:
        counts = {r["parameters"] for r in runs if r["rank"] == rank}
        if len(counts) != 1:
            raise AssertionError(f"low-rank and sine parameter counts differ at rank {rank}: {counts}")
    result = {
        "benchmark": "vit",
        "command": "python benchmarks/vit.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": {
            "name": "scikit-learn load_digits (8x8, 10 classes)",
            "train": len(data.x_train),
            "test": len(data.x_test),
            "split": "stratified, test_fraction 0.3, random_state 0",
        },
        "config": {
            **config_dict(model_config, train_config),
            "ranks": args.ranks,
            "seeds": args.seeds,
            "targets": "blocks.*.attn.qkv, attn.proj, mlp.fc1, mlp.fc2",
            "threads": args.threads,
            "quick": args.quick,
        },
        "omega": omega,
        "omega_sweep": sweep,
        "summary": summarise(runs, ("kind", "rank")),
        "runs": runs,
        "total_seconds": time.perf_counter() - started,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "processor": platform.machine()},
    }
    write_json_atomic(args.out, result)
    write_text_atomic(args.out.with_suffix(".md"), markdown(result))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
