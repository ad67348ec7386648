"""Swap the ``nn.Linear`` layers of any model for dense, low-rank or sine low-rank ones, or wrap them
with Sine-LoRA adapters.

Module names are matched like PEFT's ``target_modules``: a list of strings matches a module whose
qualified name equals one of them or ends with ``"." + name``; a single string is a regular
expression that must match the whole qualified name.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from torch import nn

from sine_fields.layers import DEFAULT_OMEGA, LowRankLinear, SineLowRankLinear, check_gain, check_omega
from sine_fields.lora import SineLoRALinear

__all__ = ["ConversionSummary", "LinearKind", "add_sine_lora", "convert", "count_parameters"]

LinearKind = Literal["dense", "lowrank", "sine"]
LINEAR_KINDS: tuple[str, ...] = ("dense", "lowrank", "sine")

Patterns = str | Sequence[str] | None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Exact number of (trainable) parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class ConversionSummary:
    """What ``convert`` / ``add_sine_lora`` changed."""

    kind: str
    """Layer kind written (``dense``, ``lowrank``, ``sine`` or ``sine-lora``)."""
    changed: list[str] = field(default_factory=list)
    """Qualified names of the layers replaced or wrapped."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Matching layers left alone, with the reason: the rank does not fit, or a subclass of ``nn.Linear``
    overrides ``forward``, or (for adapters) may be read through ``.weight``."""
    parameters_before: int = 0
    """All parameters of the model before the change."""
    parameters_after: int = 0
    """All parameters of the model after the change."""
    trainable_after: int = 0
    """Trainable parameters after the change."""

    def __str__(self) -> str:
        ratio = self.parameters_after / max(self.parameters_before, 1)
        text = (
            f"{self.kind}: {len(self.changed)} layers changed, parameters {self.parameters_before:,} -> "
            f"{self.parameters_after:,} ({ratio:.1%}), trainable {self.trainable_after:,}"
        )
        if self.skipped:
            reasons = "; ".join(f"{name} ({reason})" for name, reason in self.skipped.items())
            text += f", {len(self.skipped)} skipped: {reasons}"
        return text


def _name_matches(name: str, patterns: Patterns) -> bool:
    if patterns is None:
        return True
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def _subclass_reason(module: nn.Linear, wrapping: bool) -> str | None:
    """Why a subclass of ``nn.Linear`` must be left alone (None when it is safe to replace or wrap).

    A subclass can change what the layer computes, or exist only to mark the layer for its parent.
    ``nn.MultiheadAttention.out_proj`` is such a marker (``NonDynamicallyQuantizableLinear``, which
    keeps dynamic quantisation away from it): the attention never calls it, it passes
    ``out_proj.weight`` and ``out_proj.bias`` to its functional forward (and to its fused fast path).
    ``LowRankLinear`` and ``SineLowRankLinear`` expose exactly these two: ``.weight`` is the effective
    ``(out, in)`` matrix, recomputed from the factors on every read so gradients reach them, and
    ``.bias`` the bias Parameter; so a parent reading them computes what the new layer computes.
    ``SineLoRALinear`` has no ``.weight``, so wrapping such a layer would break its parent.
    """
    cls = type(module)
    if cls is nn.Linear:
        return None
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.forward is not nn.Linear.forward:
        return f"{name} overrides forward, so it may compute more than x W^T + b; replacing it would change the model"
    if wrapping:
        return (f"{name} is a subclass of nn.Linear whose parent may read its .weight directly "
                "(as nn.MultiheadAttention does), which a SineLoRALinear wrapper does not have")
    return None


def _selected_linears(
    model: nn.Module, target_modules: Patterns, exclude: Patterns, wrapping: bool, skipped: dict[str, str]
) -> Iterable[tuple[str, nn.Linear]]:
    """The matching linear layers that can be changed; the others that match go into ``skipped``."""
    if isinstance(model, nn.Linear):
        raise ValueError("model is a single nn.Linear: pass a module that contains it")
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        if not _name_matches(name, target_modules):
            continue
        if exclude is not None and _name_matches(name, exclude):
            continue
        reason = _subclass_reason(module, wrapping)
        if reason is not None:
            skipped[name] = reason
            continue
        yield name, module


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _fits(module: nn.Linear, rank: int) -> str | None:
    """Why a rank-k layer cannot replace ``module`` (None when it can)."""
    smallest = min(module.in_features, module.out_features)
    if rank > smallest:
        return f"rank {rank} > min(in, out) = {smallest}"
    return None


def convert(
    model: nn.Module,
    kind: LinearKind,
    rank: int,
    omega: float = DEFAULT_OMEGA,
    target_modules: Patterns = None,
    exclude: Patterns = None,
    gain: float | None = None,
) -> ConversionSummary:
    """Replace the matching ``nn.Linear`` layers of ``model`` in place.

    Subclasses of ``nn.Linear`` that keep its ``forward`` (``nn.MultiheadAttention.out_proj``) are
    replaced too; the others are skipped and listed with the reason.

    Args:
        model: any module; its linear layers are found by ``named_modules``.
        kind: ``dense`` (kept as ``nn.Linear``, freshly initialised), ``lowrank`` or ``sine``.
        rank: k of the factorisation; a layer with ``min(in, out) < k`` is skipped and listed.
        omega: sine frequency (``sine`` only).
        target_modules: which layers (see the module docstring); ``None`` means all.
        exclude: layers to leave alone, same syntax.
        gain: sine divisor, ``None`` for ``sqrt(in_features)`` (``sine`` only).

    Returns:
        A ``ConversionSummary``. New layers are freshly initialised (training from scratch), on
        the device and dtype of the layer they replace.
    """
    if kind not in LINEAR_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LINEAR_KINDS)}, got kind={kind!r}")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got rank={rank!r}")
    omega = check_omega(omega)
    summary = ConversionSummary(kind=kind, parameters_before=count_parameters(model))
    for name, module in _selected_linears(model, target_modules, exclude, wrapping=False, skipped=summary.skipped):
        factory = {"device": module.weight.device, "dtype": module.weight.dtype}
        has_bias = module.bias is not None
        if kind == "dense" and type(module) is not nn.Linear:
            # A fresh layer of the same subclass keeps whatever the class marks (e.g. that dynamic
            # quantisation must leave MultiheadAttention's out_proj alone); its constructor is unknown.
            new: nn.Module = copy.deepcopy(module)
            new.reset_parameters()
        elif kind == "dense":
            new = nn.Linear(module.in_features, module.out_features, bias=has_bias, **factory)
        else:
            reason = _fits(module, rank)
            if reason is not None:
                summary.skipped[name] = reason
                continue
            if kind == "lowrank":
                new = LowRankLinear(module.in_features, module.out_features, rank, bias=has_bias, **factory)
            else:
                check_gain(gain, module.in_features)
                new = SineLowRankLinear(
                    module.in_features, module.out_features, rank, omega=omega, gain=gain, bias=has_bias, **factory
                )
        _set_submodule(model, name, new)
        summary.changed.append(name)
    summary.parameters_after = count_parameters(model)
    summary.trainable_after = count_parameters(model, trainable_only=True)
    return summary


def add_sine_lora(
    model: nn.Module,
    rank: int,
    alpha: float = 1.0,
    omega: float = DEFAULT_OMEGA,
    target_modules: Patterns = None,
    exclude: Patterns = None,
    gain: float | None = None,
    freeze_base: bool = True,
) -> ConversionSummary:
    """Wrap the matching ``nn.Linear`` layers with ``SineLoRALinear`` in place.

    Only exact ``nn.Linear`` layers are wrapped: every matching subclass is skipped and listed with
    the reason (a parent such as ``nn.MultiheadAttention`` reads its ``.weight``, which the wrapper lacks).

    With ``freeze_base`` every other parameter of the model is frozen too, so that only the
    adapters train (as PEFT does); pass ``False`` to keep e.g. a classifier head trainable.
    """
    omega = check_omega(omega)
    summary = ConversionSummary(kind="sine-lora", parameters_before=count_parameters(model))
    if freeze_base:
        model.requires_grad_(False)
    for name, module in _selected_linears(model, target_modules, exclude, wrapping=True, skipped=summary.skipped):
        reason = _fits(module, rank)
        if reason is not None:
            summary.skipped[name] = reason
            continue
        _set_submodule(model, name, SineLoRALinear(module, rank, alpha=alpha, omega=omega, gain=gain))
        summary.changed.append(name)
    summary.parameters_after = count_parameters(model)
    summary.trainable_after = count_parameters(model, trainable_only=True)
    return summary
