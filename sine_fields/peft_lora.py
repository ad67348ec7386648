"""Sine-LoRA through Hugging Face PEFT.

PEFT's supported hook for a custom LoRA layer is ``LoraConfig._register_custom_module`` (its
"custom models" guide): it maps a target layer type to a LoRA layer class that PEFT then builds,
saves, loads, merges and unloads like its own. We register a subclass of PEFT's ``lora.Linear``
whose one ``get_delta_weight`` is the sine update, ``(alpha / r) * sin(omega * B @ A) / gain``.

PEFT serialises only ``LoraConfig``'s own fields, so omega and gain travel in a small sidecar file
(``sine_lora.json``) next to PEFT's ``adapter_config.json``::

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    register_sine_lora(config, omega=100.0)
    model = get_peft_model(base_model, config)
    ...
    save_sine_lora(model, "adapter/")
    model = load_sine_lora(fresh_base_model, "adapter/")

This module imports peft; ``import sine_fields`` does not import this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn
from torch.nn import functional as F

from sine_fields.io import atomic_write_json
from sine_fields.layers import DEFAULT_OMEGA, check_gain, check_omega, sine_weight

__all__ = ["SIDECAR", "PeftSineLoRALinear", "load_sine_lora", "register_sine_lora", "save_sine_lora"]

SIDECAR = "sine_lora.json"
_OMEGA_ATTR = "_sine_lora_omega"
_GAIN_ATTR = "_sine_lora_gain"


class PeftSineLoRALinear(PeftLoraLinear):
    """PEFT ``lora.Linear`` whose update is ``scaling * sin(omega * B @ A) / gain``.

    PEFT's default init (A kaiming-uniform, B zero) is exactly the authors' Sine-LoRA init, so the
    adapted model starts equal to the base model. omega and gain are read from the ``LoraConfig``
    that ``register_sine_lora`` prepared.
    """

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: LoraConfig, **kwargs: Any) -> None:
        self.sine_omega = check_omega(getattr(config, _OMEGA_ATTR, DEFAULT_OMEGA))
        self.sine_gain = getattr(config, _GAIN_ATTR, None)
        super().__init__(base_layer, adapter_name, config=config, **kwargs)

    def _gain(self) -> float:
        return check_gain(self.sine_gain, self.in_features)

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """The ``(out, in)`` update of ``adapter``: the only place it is computed."""
        weight_A = self.lora_A[adapter].weight
        weight_B = self.lora_B[adapter].weight
        dtype = weight_B.dtype
        # sin(omega * .) of a half-precision product loses most of its digits: compute in float32.
        low_precision = dtype in (torch.float16, torch.bfloat16)
        if low_precision:
            weight_A, weight_B = weight_A.float(), weight_B.float()
        delta = sine_weight(weight_B, weight_A, self.sine_omega, self._gain()) * self.scaling[adapter]
        if self.fan_in_fan_out:
            delta = delta.t()
        return delta.to(dtype) if low_precision else delta

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("adapter_names") is not None:
            raise ValueError("Sine-LoRA does not support mixed-adapter batches (adapter_names=...)")
        if self.disable_adapters or self.merged or not any(a in self.lora_A for a in self.active_adapters):
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        for adapter in self.active_adapters:
            if adapter not in self.lora_A:
                continue
            # The sine update is full rank: one (out, in) matmul, not LoRA's x A^T B^T.
            delta = self.get_delta_weight(adapter)
            if self.fan_in_fan_out:
                delta = delta.t()
            h = self._cast_input_dtype(self.lora_dropout[adapter](x), delta.dtype)
            result = result + F.linear(h, delta).to(result.dtype)
        return result

    def extra_repr(self) -> str:
        return f"omega={self.sine_omega:g}, gain={self._gain():.4g}"

    def __repr__(self) -> str:
        return "sine_lora." + nn.Module.__repr__(self)


def register_sine_lora(config: LoraConfig, omega: float = DEFAULT_OMEGA, gain: float | None = None) -> LoraConfig:
    """Make ``get_peft_model(model, config)`` build Sine-LoRA layers for ``nn.Linear`` targets.

    Args:
        config: a PEFT ``LoraConfig`` (its ``r``, ``lora_alpha``, ``target_modules``... apply as usual).
        omega: sine frequency.
        gain: sine divisor, ``None`` for ``sqrt(in_features)``.

    Returns:
        The same config, changed in place.
    """
    if not isinstance(config, LoraConfig):
        raise ValueError(f"config must be a peft.LoraConfig, got {type(config).__name__}")
    setattr(config, _OMEGA_ATTR, check_omega(omega))
    if gain is not None:
        check_gain(gain, 1)
    setattr(config, _GAIN_ATTR, gain)
    config._register_custom_module({nn.Linear: PeftSineLoRALinear})
    return config


def save_sine_lora(model: PeftModel, path: str | Path, **save_kwargs: Any) -> Path:
    """``model.save_pretrained(path)`` plus the sidecar with omega and gain of every adapter."""
    path = Path(path)
    model.save_pretrained(str(path), **save_kwargs)
    adapters = {}
    for name, config in model.peft_config.items():
        if getattr(config, _OMEGA_ATTR, None) is None:
            raise ValueError(f"adapter {name!r} was not registered with register_sine_lora")
        adapters[name] = {"omega": getattr(config, _OMEGA_ATTR), "gain": getattr(config, _GAIN_ATTR, None)}
    # PEFT writes a non-default adapter into a sub-folder named after it; the sidecar sits at the top.
    atomic_write_json(path / SIDECAR, {"format": 1, "adapters": adapters})
    return path


def load_sine_lora(
    base_model: nn.Module, path: str | Path, adapter_name: str = "default", is_trainable: bool = False
) -> PeftModel:
    """Load a Sine-LoRA adapter written by ``save_sine_lora`` onto ``base_model``."""
    path = Path(path)
    sidecar = path / SIDECAR
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} not found: {path} is not a Sine-LoRA adapter saved by save_sine_lora")
    meta = json.loads(sidecar.read_text())
    if adapter_name not in meta.get("adapters", {}):
        raise ValueError(f"{sidecar} has no adapter {adapter_name!r}; it has {sorted(meta.get('adapters', {}))}")
    settings = meta["adapters"][adapter_name]
    config_dir = path if adapter_name == "default" else path / adapter_name
    config = LoraConfig.from_pretrained(str(config_dir))
    register_sine_lora(config, omega=settings["omega"], gain=settings["gain"])
    return PeftModel.from_pretrained(
        base_model, str(path), adapter_name=adapter_name, is_trainable=is_trainable, config=config
    )
