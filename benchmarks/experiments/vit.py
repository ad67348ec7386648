"""A small timm ViT on scikit-learn's bundled 8x8 handwritten digits, with its projections made
dense, low-rank or sine low-rank by ``sine_fields.convert``.

The digits (1,797 images, 16 grey levels) ship inside scikit-learn, so the benchmark needs no
network. A 4x4 patch turns an 8x8 image into 4 tokens, pooled by their mean.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sine_fields.convert import convert, count_parameters
from sine_fields.layers import LowRankLinear, SineLowRankLinear

__all__ = ["VIT_TARGETS", "DigitsSplit", "TrainConfig", "ViTConfig", "build_vit", "load_digits_split", "train_vit"]

# Every attention and MLP projection of every block, as the paper converts ViT-Base (Sec. 4.2);
# the patch embedding (a conv) and the 10-way head stay dense.
VIT_TARGETS = r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"


@dataclass(frozen=True)
class ViTConfig:
    """timm ``VisionTransformer`` arguments, sized for 8x8 images on a 2-core CPU."""

    patch_size: int = 4
    """Pixels per patch side: 4 gives 4 tokens of 16 pixels (2x2 patches trained several times
    slower here: 74 % test accuracy after 30 epochs against 97 % after 10 with 4x4)."""
    embed_dim: int = 64
    """Token width (the 64 x 192 qkv, 64 x 64 proj, 64 x 256 / 256 x 64 MLP projections)."""
    depth: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width over embed_dim."""
    global_pool: str = "avg"
    """``avg`` (mean of the patch tokens, no class token: trained faster here) or ``token``."""


@dataclass(frozen=True)
class TrainConfig:
    """Same for every method: only the projections' parameterisation changes between runs."""

    epochs: int = 20
    """Passes over the training images."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (cosine decay to 0 after a 5 % linear warm-up)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    shift: int = 0
    """Random translation of up to this many pixels. Off by default: with 4x4 patches a one-pixel
    shift moves a quarter of each patch and cost every method 10 to 20 points in a pilot run."""


@dataclass
class DigitsSplit:
    """Images scaled to [-1, 1], shape ``(n, 1, 8, 8)``, and integer labels."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_split(validation: bool = False, test_fraction: float = 0.3, split_seed: int = 0) -> DigitsSplit:
    """The fixed stratified train/test split of scikit-learn's digits.

    With ``validation`` the *training* part is split again (20 %) and its held-out part is returned
    as the test set: the omega sweep chooses on it, so the test images are never used for choosing.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    if validation:
        x_train, x_test, y_train, y_test = train_test_split(
            x_train, y_train, test_size=0.2, stratify=y_train, random_state=split_seed
        )

    def as_images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a)[:, None]

    return DigitsSplit(as_images(x_train), torch.from_numpy(y_train), as_images(x_test), torch.from_numpy(y_test))


def build_vit(config: ViTConfig = ViTConfig(), num_classes: int = 10, image_size: int = 8) -> nn.Module:
    """A randomly initialised timm ViT (no pretrained weights: nothing is downloaded)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=image_size,
        patch_size=config.patch_size,
        in_chans=1,
        num_classes=num_classes,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        global_pool=config.global_pool,
        class_token=config.global_pool == "token",
    )


def _random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by its own integer offset in [-shift, shift]^2, filling with background."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift), value=-1.0)  # -1 is the digits' blank background
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, :, None].expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, :].expand(n, h, w)
    batch = torch.arange(n)[:, None, None].expand(n, h, w)
    return padded[batch, 0, rows, cols][:, None]


def _lr_lambda(total_steps: int):
    warmup = max(1, int(0.05 * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + float(np.cos(np.pi * progress)))

    return factor


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int((model(x[start : start + batch_size]).argmax(-1) == y[start : start + batch_size]).sum())
    return correct / len(x)


@torch.no_grad()
def converted_ranks(model: nn.Module) -> list[int]:
    """Numerical rank of each converted projection's effective weight (shows what the sine buys)."""
    ranks = []
    for module in model.modules():
        if isinstance(module, (LowRankLinear, SineLowRankLinear)):
            weight = module.weight.detach()
            # Tolerance of float32 (the weights' dtype): U @ V in float32 carries rounding noise
            # that a float64 tolerance would count as extra rank.
            rtol = max(weight.shape) * torch.finfo(weight.dtype).eps
            ranks.append(int(torch.linalg.matrix_rank(weight, rtol=rtol)))
    return ranks


def make_model(kind: str, rank: int, omega: float, config: ViTConfig, seed: int) -> tuple[nn.Module, dict]:
    """Build the ViT under ``seed`` and convert its projections; returns the model and its counts."""
    torch.manual_seed(seed)
    model = build_vit(config)
    dense_params = count_parameters(model)
    projection_params_dense = sum(
        p.numel() for name, p in model.named_parameters() if _is_target(name)
    )
    changed: list[str] = []
    if kind != "dense":
        summary = convert(model, kind, rank, omega=omega, target_modules=VIT_TARGETS)
        if summary.skipped:
            raise ValueError(f"rank {rank} does not fit every projection: {summary.skipped}")
        changed = summary.changed
    counts = {
        "parameters": count_parameters(model),
        "parameters_dense_model": dense_params,
        "projection_parameters": sum(p.numel() for name, p in model.named_parameters() if _is_target(name)),
        "projection_parameters_dense": projection_params_dense,
        "converted_layers": len(changed),
    }
    return model, counts


def _is_target(parameter_name: str) -> bool:
    module_name = parameter_name.rsplit(".", 1)[0]
    return re.fullmatch(VIT_TARGETS, module_name) is not None


def train_vit(
    kind: str,
    rank: int,
    omega: float,
    seed: int,
    data: DigitsSplit,
    model_config: ViTConfig = ViTConfig(),
    train_config: TrainConfig = TrainConfig(),
) -> dict:
    """Train one ViT from scratch and return its metrics, counts and timing as a JSON-ready dict."""
    model, counts = make_model(kind, rank, omega, model_config, seed)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(data.x_train) // train_config.batch_size)
    total_steps = steps_per_epoch * train_config.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps))
    started = time.perf_counter()
    losses: list[float] = []
    for _ in range(train_config.epochs):
        model.train()
        order = torch.randperm(len(data.x_train), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(order), train_config.batch_size):
            index = order[start : start + train_config.batch_size]
            images = _random_shift(data.x_train[index], train_config.shift, generator)
            loss = F.cross_entropy(model(images), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item() * len(index)
        losses.append(epoch_loss / len(order))
    seconds = time.perf_counter() - started
    ranks = converted_ranks(model)
    return {
        "kind": kind,
        "rank": rank if kind != "dense" else None,
        "omega": omega if kind == "sine" else None,
        "seed": seed,
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "train_accuracy": accuracy(model, data.x_train, data.y_train),
        "final_train_loss": losses[-1],
        "loss_curve": losses,
        "effective_rank_mean": float(np.mean(ranks)) if ranks else None,
        "train_seconds": seconds,
        **counts,
    }


def config_dict(model_config: ViTConfig, train_config: TrainConfig) -> dict:
    return {"model": asdict(model_config), "train": asdict(train_config)}
