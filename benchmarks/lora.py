"""LoRA vs Sine-LoRA (through PEFT) on a small byte-level Llama: pre-trained on English fortune
cookies, fine-tuned on German ones.

    python benchmarks/lora.py           # full: pre-train, sweep, ranks 4, 8, 16 x 3 seeds
    python benchmarks/lora.py --quick   # pipeline check in about a minute (writes lora_quick.json)

The corpora are Debian's ``fortunes`` (English) and ``fortunes-de`` (German), fetched once with
``apt-get download`` into ``$SINE_FIELDS_CACHE`` (default ``~/.cache/sine-fields``) and checked by
sha256. Steps, in order, all on the same pre-trained base model:

1. pre-train the base on the English training cookies (every weight, from random init);
2. choose the learning rate for LoRA, then omega for Sine-LoRA at that learning rate, both on the
   German *validation* cookies at one rank and seed (the test cookies are not used for choosing);
3. fine-tune with LoRA and Sine-LoRA at each rank and seed on the German training cookies and
   report held-out loss (nats per byte) and perplexity on the German test cookies. Both methods
   have the same trainable parameters at each rank (asserted); each adapter's merged output is
   compared with its unmerged output, and each Sine-LoRA adapter is saved and reloaded;
4. for every trained adapter (LoRA and Sine-LoRA), the plain LoRA rank each layer needs to keep 99 %
   of its update's squared Frobenius norm (SVD, as ``sine_fields.peft_lora.to_plain_lora`` exports):
   the number behind "the sine raises the rank" (median and max over layers and seeds).

Full fine-tuning (every weight, same steps) and the base model without fine-tuning are reported as
references. Results: ``benchmarks/results/lora.json`` and ``lora.md``.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None):
    from experiments.common import OneLineParser, parse_floats, parse_ints

    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings that check the pipeline end to end")
    parser.add_argument("--ranks", type=parse_ints, help="comma-separated LoRA ranks (default 4,8,16; quick 4,8)")
    parser.add_argument("--seeds", type=parse_ints, help="comma-separated fine-tuning seeds (default 0,1,2; quick 0)")
    parser.add_argument("--pretrain-steps", type=int, help="base-model steps on English (default 1500; quick 30)")
    parser.add_argument("--finetune-steps", type=int, help="steps per fine-tuning run on German (default 200; quick 10)")
    parser.add_argument("--omega", type=float, help="use this omega and skip the omega sweep")
    parser.add_argument("--lr", type=float, help="use this fine-tuning learning rate and skip the lr sweep")
    parser.add_argument("--sweep-omegas", type=parse_floats, help="Sine-LoRA omegas tried (default 10,30,100,300)")
    parser.add_argument("--sweep-lrs", type=parse_floats, help="LoRA learning rates tried (default 0.003,0.01,0.03)")
    parser.add_argument("--sweep-rank", type=int, default=8, help="rank of the sweeps (default 8)")
    parser.add_argument("--no-full", action="store_true", help="skip the full fine-tuning reference")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/lora.json, quick: lora_quick.json)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.ranks = args.ranks or ([4, 8] if quick else [4, 8, 16])
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2])
    args.pretrain_steps = args.pretrain_steps if args.pretrain_steps is not None else (30 if quick else 1500)
    args.finetune_steps = args.finetune_steps if args.finetune_steps is not None else (10 if quick else 200)
    args.sweep_omegas = args.sweep_omegas or ([30.0, 100.0] if quick else [10.0, 30.0, 100.0, 300.0])
    args.sweep_lrs = args.sweep_lrs or ([3e-3] if quick else [3e-3, 1e-2, 3e-2])
    args.out = args.out or RESULTS / ("lora_quick.json" if quick else "lora.json")
    if any(r < 1 for r in args.ranks) or args.sweep_rank < 1:
        parser.error("ranks must be >= 1")
    if args.pretrain_steps < 1 or args.finetune_steps < 1:
        parser.error("--pretrain-steps and --finetune-steps must be >= 1")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    for name in ("omega", "lr"):
        value = getattr(args, name)
        if value is not None and not (0 < value < math.inf):
            parser.error(f"--{name} must be a finite number > 0, got {value}")
    if args.out.suffix != ".json":
        parser.error(f"--out must end in .json, got {args.out}")
    return args


def summarise(runs: list[dict]) -> list[dict]:
    import statistics

    from experiments.common import mean_std

    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["method"], run["rank"]), []).append(run)
    rows = []
    for (method, rank), members in groups.items():
        mean, std = mean_std([m["eval_loss"] for m in members])
        rows.append(
            {
                "method": method,
                "rank": rank,
                "seeds": [m["seed"] for m in members],
                "eval_loss_mean": mean,
                "eval_loss_std": std,
                "eval_perplexity_mean": sum(m["eval_perplexity"] for m in members) / len(members),
                "trainable_parameters": members[0]["trainable_parameters"],
                "merged_equals_unmerged": all(m.get("merge_check", {}).get("merged_equals_unmerged", True) for m in members),
                "train_seconds_mean": sum(m["train_seconds"] for m in members) / len(members),
            }
        )
        # Plain rank needed per layer, pooled over the layers of every seed's adapter.
        plain = [layer["rank_for_energy"] for m in members if "plain_rank" in m for layer in m["plain_rank"]["layers"]]
        if plain:
            rows[-1].update(
                plain_rank_energy=members[0]["plain_rank"]["energy"],
                plain_rank_median=statistics.median(plain),
                plain_rank_max=max(plain),
                plain_rank_min=min(plain),
                plain_rank_layers=len(plain),
                max_rank=min(min(layer["shape"]) for m in members for layer in m["plain_rank"]["layers"]),
            )
    return rows


def _lora_and_sine(summary: list[dict], rank: int) -> tuple[dict, dict]:
    """The LoRA and Sine-LoRA summary rows of one adapter rank."""
    return tuple(next(r for r in summary if r["method"] == method and r["rank"] == rank) for method in ("lora", "sine"))


def plain_rank_markdown(result: dict) -> str:
    """Plain LoRA rank each adapted layer needs to keep the energy share of its trained update."""
    from experiments.common import markdown_table

    summary = [r for r in result["summary"] if "plain_rank_median" in r]
    if not summary:
        return ""
    rows = []
    for rank in result["config"]["ranks"]:
        lora, sine = _lora_and_sine(summary, rank)
        rows.append(
            [
                rank,
                f"{lora['plain_rank_median']:g} / {lora['plain_rank_max']}",
                f"{sine['plain_rank_median']:g} / {sine['plain_rank_max']}",
                f"{sine['plain_rank_median'] / rank:.1f}x",
                sine["max_rank"],
            ]
        )
    energy = summary[0]["plain_rank_energy"]
    layers = summary[0]["plain_rank_layers"]
    header = [
        "adapter rank r",
        "LoRA: plain rank median / max",
        f"Sine-LoRA (omega {result['omega']:g}): plain rank median / max",
        "Sine median / r",
        "full rank",
    ]
    return (
        f"Plain LoRA rank needed to keep {energy:.0%} of each trained update's squared Frobenius norm "
        f"(SVD of the update, as `to_plain_lora` exports it), over the {layers} adapted layers of seeds "
        f"{result['config']['seeds']}; {result['config']['finetune_steps']} fine-tuning steps at lr "
        f"{result['lr']:g}.\n\n" + markdown_table(header, rows)
    )


def markdown(result: dict) -> str:
    from experiments.common import markdown_table

    summary = result["summary"]
    rows = []
    for rank in result["config"]["ranks"]:
        lora, sine = _lora_and_sine(summary, rank)
        rows.append(
            [
                rank,
                f"{lora['trainable_parameters']:,}",
                f"{lora['eval_loss_mean']:.4f} ± {lora['eval_loss_std']:.4f} ({lora['eval_perplexity_mean']:.3f})",
                f"{sine['eval_loss_mean']:.4f} ± {sine['eval_loss_std']:.4f} ({sine['eval_perplexity_mean']:.3f})",
                f"{sine['eval_loss_mean'] - lora['eval_loss_mean']:+.4f}",
                "yes" if lora["merged_equals_unmerged"] and sine["merged_equals_unmerged"] else "NO",
            ]
        )
    for ref in summary:
        if ref["method"] == "full":
            rows.append(
                ["full FT", f"{ref['trainable_parameters']:,}", f"{ref['eval_loss_mean']:.4f} ± {ref['eval_loss_std']:.4f} ({ref['eval_perplexity_mean']:.3f})", "", "", ""]
            )
    base = result["base_model"]
    rows.append(["no FT (base)", "0", f"{base['german_test_loss']:.4f} ({math.exp(base['german_test_loss']):.3f})", "", "", ""])
    header = [
        "rank",
        "trainable params",
        "LoRA loss ± std (ppl)",
        f"Sine-LoRA loss ± std (ppl), omega {result['omega']:g}",
        "Sine - LoRA",
        "merged == unmerged",
    ]
    text = (
        f"German held-out loss in nats per byte (perplexity per byte), mean ± std over seeds "
        f"{result['config']['seeds']}, {result['config']['finetune_steps']} fine-tuning steps at lr {result['lr']:g}; "
        f"lower is better.\n\n" + markdown_table(header, rows)
    )
    plain = plain_rank_markdown(result)
    if plain:
        text += "\n" + plain
    sweep = result["sweep"]
    if sweep["lr"]:
        text += f"\nLoRA learning-rate sweep (rank {sweep['rank']}, German validation cookies, seed {sweep['seed']}):\n\n"
        text += markdown_table(["lr", "LoRA validation loss"], [[f"{s['lr']:g}", f"{s['validation_loss']:.4f}"] for s in sweep["lr"]])
    if sweep["omega"]:
        text += f"\nSine-LoRA omega sweep (rank {sweep['rank']}, lr {result['lr']:g}, German validation cookies, seed {sweep['seed']}):\n\n"
        if all("plain_rank_median" in s for s in sweep["omega"]):
            # Sweeps recorded since the plain-rank measurement also show how omega moves the update's rank.
            header = ["omega", "Sine-LoRA validation loss", f"plain rank for {sweep['omega'][0]['plain_rank_energy']:.0%} (median / max)"]
            rows = [
                [f"{s['omega']:g}", f"{s['validation_loss']:.4f}", f"{s['plain_rank_median']:g} / {s['plain_rank_max']}"]
                for s in sweep["omega"]
            ]
            text += markdown_table(header, rows)
        else:
            text += markdown_table(["omega", "Sine-LoRA validation loss"], [[f"{s['omega']:g}", f"{s['validation_loss']:.4f}"] for s in sweep["omega"]])
    return text


def omega_rank_markdown(result: dict) -> str:
    """The omega sweep with each omega's validation loss and plain rank (sweeps recorded with plain ranks)."""
    from experiments.common import markdown_table

    sweep = result["sweep"]
    rows = [
        [f"{s['omega']:g}", f"{s['validation_loss']:.4f}", f"{s['plain_rank_median']:g} / {s['plain_rank_max']}"]
        for s in sweep["omega"]
    ]
    energy = sweep["omega"][0]["plain_rank_energy"]
    return (
        f"Sine-LoRA at rank {sweep['rank']}, seed {sweep['seed']}, lr {result['lr']:g}, "
        f"{result['config']['finetune_steps']} steps: German validation loss and the plain LoRA rank that keeps "
        f"{energy:.0%} of each layer's update (median / max over the adapted layers; full rank "
        f"{min(min(layer['shape']) for run in result['runs'] for layer in run.get('plain_rank', {}).get('layers', []))}).\n\n"
        + markdown_table(["omega", "validation loss", "plain rank median / max"], rows)
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from experiments.common import write_json_atomic, write_text_atomic
    from experiments.lm import LMConfig, config_dict, eval_windows, evaluate_loss, finetune, pretrain
    from experiments.text import CORPORA, DataError, load_corpus

    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {text}", flush=True)

    try:
        english, german = load_corpus("en"), load_corpus("de")
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = LMConfig()
    batch_size = 16
    pretrain_lr = 3e-3
    # Fixed held-out windows (same bytes for every run): 256 x 64 = 16 kB of German test text.
    n_windows = 32 if args.quick else 256
    test_ids = eval_windows(german.test, config.seq_len, n_windows)
    validation_ids = eval_windows(german.validation, config.seq_len, n_windows)

    log(f"pre-training the base model on English ({args.pretrain_steps} steps)")
    base, pretrain_losses = pretrain(
        config, english.train, args.pretrain_steps, pretrain_lr, batch_size, seed=0, log_every=0 if args.quick else 250
    )
    base_info = {
        "pretrain_steps": args.pretrain_steps,
        "pretrain_lr": pretrain_lr,
        "pretrain_seconds": time.perf_counter() - started,
        "pretrain_final_train_loss": sum(pretrain_losses[-20:]) / len(pretrain_losses[-20:]),
        "english_test_loss": evaluate_loss(base, eval_windows(english.test, config.seq_len, n_windows)),
        "german_test_loss": evaluate_loss(base, test_ids),
        "parameters": sum(p.numel() for p in base.parameters()),
    }
    log(f"base model: English test loss {base_info['english_test_loss']:.4f}, German {base_info['german_test_loss']:.4f}")

    common = dict(batch_size=batch_size, seq_len=config.seq_len, steps=args.finetune_steps)
    sweep_seed = args.seeds[0]
    sweep: dict = {"rank": args.sweep_rank, "seed": sweep_seed, "lr": [], "omega": []}
    if args.lr is not None:
        lr = args.lr
    else:
        for candidate in args.sweep_lrs:
            run = finetune(base, "lora", args.sweep_rank, 0.0, german.train, validation_ids, lr=candidate, seed=sweep_seed, check_merge=False, **common)
            sweep["lr"].append({"lr": candidate, "validation_loss": run["eval_loss"]})
            log(f"lr sweep: LoRA lr={candidate:g} validation loss {run['eval_loss']:.4f}")
        lr = min(sweep["lr"], key=lambda s: s["validation_loss"])["lr"]
    if args.omega is not None:
        omega = args.omega
    else:
        for candidate in args.sweep_omegas:
            run = finetune(base, "sine", args.sweep_rank, candidate, german.train, validation_ids, lr=lr, seed=sweep_seed, check_merge=False, **common)
            plain = run["plain_rank"]
            sweep["omega"].append(
                {
                    "omega": candidate,
                    "validation_loss": run["eval_loss"],
                    "plain_rank_median": plain["median"],
                    "plain_rank_max": plain["max"],
                    "plain_rank_energy": plain["energy"],
                }
            )
            log(f"omega sweep: Sine-LoRA omega={candidate:g} validation loss {run['eval_loss']:.4f}")
        omega = min(sweep["omega"], key=lambda s: s["validation_loss"])["omega"]
    log(f"lr = {lr:g}, omega = {omega:g}")

    runs = []
    plan = [(method, rank) for rank in args.ranks for method in ("lora", "sine")]
    if not args.no_full:
        plan.append(("full", 0))
    for method, rank in plan:
        for seed in args.seeds:
            run = finetune(base, method, rank, omega, german.train, test_ids, lr=lr, seed=seed, **common)
            runs.append(run)
            merge = run.get("merge_check", {})
            log(
                f"{method:4s} rank={rank if method != 'full' else '-'} seed={seed}: German test loss {run['eval_loss']:.4f}, "
                f"{run['trainable_parameters']:,} trainable, merged==unmerged {merge.get('merged_equals_unmerged', '-')}, "
                f"{run['train_seconds']:.1f}s"
            )
    for rank in args.ranks:
        counts = {r["trainable_parameters"] for r in runs if r["rank"] == rank}
        if len(counts) != 1:
            raise AssertionError(f"LoRA and Sine-LoRA trainable parameters differ at rank {rank}: {counts}")
    result = {
        "benchmark": "lora",
        "command": "python benchmarks/lora.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": {
            key: {
                "package": CORPORA[key].package.filename,
                "sha256": CORPORA[key].package.sha256,
                "language": CORPORA[key].language,
                "cookies": split.cookies,
                "bytes": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
            }
            for key, split in (("en", english), ("de", german))
        },
        "config": {
            "model": config_dict(config),
            "batch_size": batch_size,
            "finetune_steps": args.finetune_steps,
            "ranks": args.ranks,
            "seeds": args.seeds,
            "lora_alpha": "2 * rank",
            "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "eval_windows": len(test_ids),
            "threads": args.threads,
            "quick": args.quick,
        },
        "base_model": base_info,
        "lr": lr,
        "omega": omega,
        "sweep": sweep,
        "summary": summarise(runs),
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
