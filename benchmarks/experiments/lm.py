"""A small byte-level Llama (Hugging Face ``transformers``, randomly initialised), pre-trained on one
corpus and fine-tuned on another with PEFT LoRA or Sine-LoRA.

Llama is the architecture family of the paper's LoRA experiment (LLaMA-3-8B, Sec. 4.3), scaled down
to what a shared 2-core CPU trains in minutes. Its projections are ``nn.Linear``.
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from sine_fields.convert import count_parameters

__all__ = [
    "LM_TARGETS",
    "PLAIN_RANK_ENERGY",
    "LMConfig",
    "adapter_plain_ranks",
    "batch_windows",
    "build_lm",
    "evaluate_loss",
    "finetune",
    "pretrain",
]

# Every projection of every block, as in the commonsense LoRA setup the paper follows (Sec. 4.3).
LM_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = ("lora", "sine", "full")
# Share of each adapter update's squared Frobenius norm that the plain-rank measurement keeps.
PLAIN_RANK_ENERGY = 0.99


@dataclass(frozen=True)
class LMConfig:
    """The model and the context length; vocabulary is the 256 byte values."""

    hidden_size: int = 64
    """Residual width."""
    intermediate_size: int = 176
    """SwiGLU hidden width (about 8/3 of hidden_size, as Llama)."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    seq_len: int = 64
    """Bytes of context per training window."""


def build_lm(config: LMConfig, seed: int) -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` (no weights are downloaded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    hf_config = LlamaConfig(
        vocab_size=256,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.seq_len,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(hf_config)


def batch_windows(stream: Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> Tensor:
    """``(batch, seq_len)`` random windows of a byte stream, as ``long`` token ids."""
    starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=generator)
    return torch.stack([stream[s : s + seq_len] for s in starts.tolist()]).long()


def eval_windows(stream: Tensor, seq_len: int, max_windows: int) -> Tensor:
    """The first ``max_windows`` non-overlapping windows: the same bytes for every method and seed."""
    n = min(max_windows, len(stream) // seq_len)
    return stream[: n * seq_len].view(n, seq_len).long()


@torch.no_grad()
def evaluate_loss(model: nn.Module, windows: Tensor, batch_size: int = 64) -> float:
    """Mean next-byte cross-entropy (nats per byte) over ``windows``."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        ids = windows[start : start + batch_size]
        loss = model(input_ids=ids, labels=ids).loss
        total += float(loss) * len(ids)
        count += len(ids)
    return total / count


def _cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train(
    model: nn.Module, stream: Tensor, steps: int, lr: float, batch_size: int, seq_len: int, seed: int, log_every: int = 0
) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = _cosine(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for step in range(steps):
        ids = batch_windows(stream, batch_size, seq_len, generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"  step {step + 1}/{steps}: train loss {sum(losses[-log_every:]) / log_every:.3f}", flush=True)
    return losses


def pretrain(
    config: LMConfig, stream: Tensor, steps: int, lr: float, batch_size: int, seed: int = 0, log_every: int = 0
) -> tuple[nn.Module, list[float]]:
    """Train the base model from scratch on ``stream`` (all parameters)."""
    model = build_lm(config, seed)
    losses = _train(model, stream, steps, lr, batch_size, config.seq_len, seed, log_every)
    return model, losses


def _peft_model(base: nn.Module, method: str, rank: int, omega: float):
    from peft import LoraConfig, get_peft_model

    # alpha = 2 r for both methods, the commonsense-reasoning LoRA setting the paper reuses.
    lora_config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(LM_TARGETS))
    if method == "sine":
        from sine_fields.peft_lora import register_sine_lora

        register_sine_lora(lora_config, omega=omega)
    return get_peft_model(base, lora_config)


@torch.no_grad()
def merge_check(model, windows: Tensor, method: str, base_for_reload: nn.Module | None) -> dict:
    """Max |logit difference| of the merged and unmerged-again adapter against the unmerged one,
    and (Sine-LoRA) of the adapter saved with ``save_sine_lora`` and loaded on a fresh base."""
    model.eval()
    ids = windows[:8]
    unmerged = model(input_ids=ids).logits
    model.merge_adapter()
    merged = model(input_ids=ids).logits
    model.unmerge_adapter()
    again = model(input_ids=ids).logits
    scale = float(unmerged.abs().max())
    check = {
        "logit_scale": scale,
        "merged_max_abs_diff": float((merged - unmerged).abs().max()),
        "unmerged_again_max_abs_diff": float((again - unmerged).abs().max()),
    }
    if method == "sine" and base_for_reload is not None:
        from sine_fields.peft_lora import load_sine_lora, save_sine_lora

        with tempfile.TemporaryDirectory() as folder:
            save_sine_lora(model, folder)
            reloaded = load_sine_lora(base_for_reload, folder)
            check["reloaded_max_abs_diff"] = float((reloaded(input_ids=ids).logits - unmerged).abs().max())
    # float32 rounding of a merged weight: 1e-4 of the logit scale is far above it and far below a
    # real mismatch (the adapter's trained delta changes logits by about 1e-1 of the scale).
    tolerance = 1e-4 * max(scale, 1.0)
    check["tolerance"] = tolerance
    check["merged_equals_unmerged"] = all(
        check[k] <= tolerance for k in ("merged_max_abs_diff", "unmerged_again_max_abs_diff", "reloaded_max_abs_diff") if k in check
    )
    return check


@torch.no_grad()
def adapter_plain_ranks(model, energy: float = PLAIN_RANK_ENERGY, adapter_name: str = "default") -> dict:
    """Per adapted layer, the rank a plain LoRA needs to keep ``energy`` of the layer's update.

    Works for LoRA (rank at most r by construction) and Sine-LoRA alike: both layers compute their
    update in ``get_delta_weight``.
    """
    from peft.tuners.lora.layer import LoraLayer

    from sine_fields.peft_lora import energy_rank

    layers = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            delta = module.get_delta_weight(adapter_name).float()
            layers.append(
                {
                    "module": name.removeprefix("base_model.model."),
                    "shape": list(delta.shape),
                    "rank_for_energy": energy_rank(torch.linalg.svdvals(delta), energy),
                }
            )
    ranks = [layer["rank_for_energy"] for layer in layers]
    return {
        "energy": energy,
        "median": statistics.median(ranks) if ranks else None,
        "max": max(ranks, default=None),
        "layers": layers,
    }


def finetune(
    base: nn.Module,
    method: str,
    rank: int,
    omega: float,
    train_stream: Tensor,
    eval_ids: Tensor,
    steps: int,
    lr: float,
    batch_size: int,
    seq_len: int,
    seed: int,
    check_merge: bool = True,
) -> dict:
    """Fine-tune a copy of ``base`` (``lora``, ``sine``: adapters only; ``full``: every weight)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    torch.manual_seed(seed)  # adapter init (A kaiming-uniform) depends on the seed
    if method == "full":
        model = copy.deepcopy(base)
    else:
        model = _peft_model(copy.deepcopy(base), method, rank, omega)
    trainable = count_parameters(model, trainable_only=True)
    started = time.perf_counter()
    losses = _train(model, train_stream, steps, lr, batch_size, seq_len, seed)
    seconds = time.perf_counter() - started
    loss = evaluate_loss(model, eval_ids)
    result = {
        "method": method,
        "rank": rank if method != "full" else None,
        "omega": omega if method == "sine" else None,
        "seed": seed,
        "lr": lr,
        "eval_loss": loss,
        "eval_perplexity": math.exp(loss),
        "eval_bits_per_byte": loss / math.log(2),
        "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
        "trainable_parameters": trainable,
        "train_seconds": seconds,
    }
    if method != "full":
        result["plain_rank"] = adapter_plain_ranks(model)
    if check_merge and method != "full":
        result["merge_check"] = merge_check(model, eval_ids, method, copy.deepcopy(base))
    return result


def config_dict(config: LMConfig) -> dict:
    return asdict(config)
