"""Sine-LoRA and Sine-DoRA through Hugging Face PEFT.

A Sine-LoRA adapter is a PEFT LoRA adapter whose update is ``scaling * sin(omega * B @ A) / gain``
(Ji et al., ICLR 2025, Sec. 4.3) instead of ``scaling * B @ A``. It is built on PEFT's own
machinery, so that ``get_peft_model``, ``merge_adapter``, ``set_adapter``, ``merge_and_unload`` and
``save_pretrained`` work unchanged:

- the config is a :class:`SineLoraConfig`, a ``LoraConfig`` with one more field, ``sine_lora``
  (omega and gain of that adapter). The field is declared a *LoRA variant*, PEFT's registry for
  changed LoRA updates (DoRA is one): a layer resolves the variant of each adapter from its config,
  so omega and gain are per adapter, and a PEFT layer that does not know the variant refuses the
  adapter instead of running it as a plain LoRA;
- the layer, :class:`PeftSineLoRALinear`, is PEFT's ``lora.Linear`` whose variants are Sine-LoRA
  and Sine-DoRA. It wraps ``nn.Linear`` and GPT-2's ``Conv1D`` (``fan_in_fan_out``); every other
  target type is refused, naming the module;
- the saved ``adapter_config.json`` says ``"peft_type": "SINE_LORA"``: stock PEFT (and anything else
  that dispatches on ``peft_type``) fails on it at once instead of loading a plain LoRA that ignores
  the sine. :func:`load_sine_lora` reads it back. :func:`to_plain_lora` writes a standard LoRA (SVD
  of each sine update) for tools that only know LoRA.

::

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    register_sine_lora(config, omega=30.0)        # the config becomes a SineLoraConfig, in place
    model = get_peft_model(base_model, config)
    ...
    model.save_pretrained("adapter/")             # or save_sine_lora(model, "adapter/")
    model = load_sine_lora(fresh_base_model, "adapter/")

This module imports peft; ``import sine_fields`` does not import this module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from peft import LoraConfig, PeftModel, PeftType
from peft.tuners.lora.layer import LoraVariant
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from torch import nn
from torch.nn import functional as F

from sine_fields.io import atomic_write_bytes
from sine_fields.layers import DEFAULT_OMEGA, check_gain, check_omega, sine_weight

__all__ = [
    "CONFIG_NAME",
    "SINE_PEFT_TYPE",
    "PeftSineLoRALinear",
    "SineLoraConfig",
    "adapter_folder",
    "energy_rank",
    "load_sine_lora",
    "plain_rank_report",
    "register_sine_lora",
    "save_sine_lora",
    "to_plain_lora",
]


def _check_peft_has_lora_variants(layer_cls: type = PeftLoraLinear, config_cls: type = LoraConfig) -> None:
    # Older PEFT ignores a layer's lora_variants and the config's variant tags: the layers would run
    # as plain LoRA without a word. Check for the registry itself rather than a version number.
    use_dora = next((f for f in dataclasses.fields(config_cls) if f.name == "use_dora"), None)
    tagged = use_dora is not None and use_dora.metadata.get("is_lora_variant")
    if not hasattr(layer_cls, "resolve_lora_variant") or not tagged:
        import peft

        raise ImportError(
            f"sine_fields.peft_lora needs PEFT's LoRA-variant registry (peft >= 0.21); peft {peft.__version__} "
            "is installed: pip install -U peft"
        )


_check_peft_has_lora_variants()

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
# The peft_type written to adapter_config.json. It is not a PeftType, so PEFT's config lookup raises
# ``KeyError: 'SINE_LORA'`` instead of loading the folder as a plain LoRA without the sine.
SINE_PEFT_TYPE = "SINE_LORA"
_FORMAT = 1


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is optional for PEFT; without it there is no Conv1D to adapt
        return None
    return Conv1D


def _check_settings(settings: Any) -> dict:
    """``{"omega": float, "gain": float | None}``, validated; raises ``ValueError`` naming the bad key."""
    if not isinstance(settings, dict) or "omega" not in settings:
        raise ValueError(f"sine_lora must be a dict with an 'omega' (and optional 'gain'), got {settings!r}")
    unknown = sorted(set(settings) - {"omega", "gain", "format"})
    if unknown:
        raise ValueError(f"sine_lora has unknown keys {unknown}; expected 'omega' and 'gain'")
    omega = check_omega(settings["omega"])
    if omega == 0:
        raise ValueError("omega must be non-zero: sin(0 * B @ A) is a zero update")
    gain = settings.get("gain")
    if gain is not None:
        gain = check_gain(gain, 1)
    return {"omega": omega, "gain": gain, "format": _FORMAT}


@dataclass
class SineLoraConfig(LoraConfig):
    """``LoraConfig`` plus the sine settings of this adapter. Build it with :func:`register_sine_lora`."""

    sine_lora: Optional[dict] = field(
        default=None,
        metadata={
            "help": "Sine-LoRA settings of this adapter: {'omega': float, 'gain': float or None (sqrt(in_features))}.",
            # PEFT resolves a layer's LoRA variant from the config fields tagged like this one.
            "is_lora_variant": True,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _prepare(self)

    def to_dict(self) -> dict:
        """The fields PEFT saves, with ``peft_type`` set to ``SINE_LORA`` (stock PEFT refuses it)."""
        data = super().to_dict()
        data["peft_type"] = SINE_PEFT_TYPE
        return data


def _prepare(config: SineLoraConfig) -> None:
    config.sine_lora = _check_settings(config.sine_lora)
    if getattr(config, "target_parameters", None):
        raise ValueError(
            f"Sine-LoRA adapts whole nn.Linear / Conv1D modules; target_parameters={config.target_parameters!r} "
            "is not supported"
        )
    custom = getattr(config, "_custom_modules", None) or {}
    if any(factory is not _create_sine_layer for factory in custom.values()):
        raise ValueError(
            "this LoraConfig already maps custom modules "
            f"({', '.join(t.__name__ for t in custom)}); Sine-LoRA needs to build every adapted layer itself"
        )
    # PEFT's hook for building a custom LoRA layer: called for every matched target module. The key
    # nn.Module matches every type, so that unsupported ones reach _create_sine_layer and are refused.
    config._register_custom_module({nn.Module: _create_sine_layer})


def register_sine_lora(config: LoraConfig, omega: float = DEFAULT_OMEGA, gain: float | None = None) -> SineLoraConfig:
    """Make ``get_peft_model(model, config)`` build Sine-LoRA layers (Sine-DoRA with ``use_dora=True``).

    Args:
        config: a PEFT ``LoraConfig`` (``r``, ``lora_alpha``, ``target_modules``, ``use_dora``,
            ``lora_bias``... apply as usual). It is changed in place into a :class:`SineLoraConfig`,
            so code that ignores the return value still builds Sine-LoRA, never a plain LoRA.
        omega: sine frequency of this adapter (the LoRA benchmark's sweep chose 30 at rank 8).
        gain: sine divisor, ``None`` for ``sqrt(in_features)`` of each layer.

    Returns:
        The same config object.
    """
    if not isinstance(config, LoraConfig):
        raise ValueError(f"config must be a peft.LoraConfig, got {type(config).__name__}")
    if type(config) not in (LoraConfig, SineLoraConfig):
        raise ValueError(f"config must be a plain peft.LoraConfig, got the subclass {type(config).__name__}")
    settings = _check_settings({"omega": omega, "gain": gain})
    # In place, so that the caller's object is the Sine-LoRA config: SineLoraConfig adds one field
    # with a default and no state of its own, so switching the class of a LoraConfig is safe.
    config.__class__ = SineLoraConfig
    config.sine_lora = settings
    _prepare(config)
    return config


def _create_sine_layer(target: nn.Module, adapter_name: str, config: SineLoraConfig, **kwargs: Any) -> nn.Module:
    """Build the Sine-LoRA layer for ``target``, or refuse a target type the sine update does not cover."""
    base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
    where = kwargs.get("target_name") or type(base).__name__
    conv1d = _conv1d_type()
    is_conv1d = conv1d is not None and isinstance(base, conv1d)
    if kwargs.get("parameter_name"):
        raise ValueError(f"Sine-LoRA cannot target the parameter {kwargs['parameter_name']!r} of {where!r}")
    if not (isinstance(base, nn.Linear) or is_conv1d):
        raise ValueError(
            f"Sine-LoRA adapts nn.Linear and transformers' Conv1D only: target module {where!r} is a "
            f"{type(base).__module__}.{type(base).__qualname__}; remove it from target_modules"
        )
    if type(base.weight) not in (nn.Parameter, torch.Tensor) or not base.weight.is_floating_point():
        raise ValueError(
            f"Sine-LoRA needs a floating-point weight to merge into: {where!r} holds a "
            f"{type(base.weight).__name__} of dtype {base.weight.dtype} (a quantised layer?)"
        )
    # Conv1D stores its weight as (in, out): PEFT's fan_in_fan_out. Same correction (and warning) as
    # PEFT's default dispatcher.
    if config.fan_in_fan_out != is_conv1d:
        warnings.warn(
            f"fan_in_fan_out is set to {is_conv1d} for {where!r} ({type(base).__name__}), "
            f"the config said {config.fan_in_fan_out}",
            stacklevel=2,
        )
        config.fan_in_fan_out = is_conv1d
    return PeftSineLoRALinear(target, adapter_name, config=config, is_target_conv_1d_layer=is_conv1d, **kwargs)


def _out_in(module: PeftLoraLinear, weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as (out, in): Conv1D stores (in, out)."""
    return weight.t() if module.fan_in_fan_out else weight


def _sine_delta(module: PeftSineLoRALinear, adapter: str) -> torch.Tensor:
    """The ``(out, in)`` Sine-LoRA update of ``adapter`` (float32 sine inside ``sine_weight``)."""
    weight_A = module.lora_A[adapter].weight
    weight_B = module.lora_B[adapter].weight
    gain = check_gain(module.sine_gain[adapter], module.in_features)
    return sine_weight(weight_B, weight_A, module.sine_omega[adapter], gain) * module.scaling[adapter]


def _at_least_float32(tensor: torch.Tensor) -> torch.dtype:
    # Norms and merges of half-precision weights in float32; float64 stays float64.
    return torch.promote_types(tensor.dtype, torch.float32)


def _lora_bias(module: PeftLoraLinear, adapter: str) -> torch.Tensor | None:
    # PEFT's merge adds lora_B.bias * scaling to the base bias; the unmerged forward adds the same.
    if not module.lora_bias.get(adapter):
        return None
    return module.lora_B[adapter].bias * module.scaling[adapter]


class SineLoraVariant(LoraVariant):
    """Sine-LoRA: ``W0 + scaling * sin(omega * B @ A) / gain``, in forward, merge and unmerge alike."""

    @staticmethod
    def init(module: PeftSineLoRALinear, adapter_name: str, config: SineLoraConfig, **kwargs: Any) -> None:
        module.sine_omega[adapter_name] = config.sine_lora["omega"]
        module.sine_gain[adapter_name] = config.sine_lora["gain"]

    @staticmethod
    def merge_safe(module: PeftSineLoRALinear, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: PeftSineLoRALinear, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module: PeftSineLoRALinear, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight.data - module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def forward(
        module: PeftSineLoRALinear, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        # The sine update is full rank: one (out, in) matmul, not LoRA's x A^T B^T.
        delta = _sine_delta(module, active_adapter)
        h = module.lora_dropout[active_adapter](x)
        bias = _lora_bias(module, active_adapter)
        return result + F.linear(h.to(delta.dtype), delta, bias).to(result.dtype)


class SineDoraVariant(SineLoraVariant):
    """Sine-DoRA: ``m * V / ||V||`` with ``V = W0 + scaling * sin(omega * B @ A) / gain``.

    ``m`` (one value per output) starts at ``||W0||``; the norm is over each output's input weights
    (DoRA's column norm in its (in, out) convention), treated as a constant in backward as in DoRA
    (Liu et al., 2024, Sec. 4.3). Forward and merge compute the same matrix, so merged and unmerged
    models agree.
    """

    @staticmethod
    def init(module: PeftSineLoRALinear, adapter_name: str, config: SineLoraConfig, **kwargs: Any) -> None:
        from peft.tuners.lora.dora import DoraLinearLayer

        SineLoraVariant.init(module, adapter_name, config)
        base = _out_in(module, module.get_base_layer().weight)
        dtype = _at_least_float32(base)
        with torch.no_grad():
            magnitude = torch.linalg.vector_norm(base.to(dtype) + _sine_delta(module, adapter_name).to(dtype), dim=1)
        # PEFT's DoRA holder: the same state-dict key (lora_magnitude_vector.<adapter>.weight) as stock DoRA.
        holder = DoraLinearLayer(fan_in_fan_out=module.fan_in_fan_out)
        holder.weight = nn.Parameter(magnitude.to(module.lora_A[adapter_name].weight.dtype))
        module.lora_magnitude_vector[adapter_name] = holder

    @staticmethod
    def _factor(
        module: PeftSineLoRALinear, adapter: str, base_out_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-output factor ``m / ||W0 + delta||``, delta): (out,) and (out, in), at least float32."""
        dtype = _at_least_float32(base_out_in)
        delta = _sine_delta(module, adapter).to(dtype)
        norm = torch.linalg.vector_norm(base_out_in.to(dtype) + delta, dim=1).detach()
        return module.lora_magnitude_vector[adapter].weight.to(dtype) / norm, delta

    @staticmethod
    def _refuse_stacked(module: PeftSineLoRALinear, adapter: str) -> None:
        if module.merged_adapters:
            raise ValueError(
                f"Sine-DoRA adapter {adapter!r} cannot be merged on top of the merged adapters "
                f"{module.merged_adapters}: its norm is of the unmerged base weight; unmerge them first"
            )

    @staticmethod
    def merge_safe(module: PeftSineLoRALinear, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        SineDoraVariant._refuse_stacked(module, active_adapter)
        base = _out_in(module, orig_weight)
        factor, delta = SineDoraVariant._factor(module, active_adapter, base)
        module._cache_store(f"{active_adapter}-sine-dora-factor", factor)
        merged = factor[:, None] * (base.to(delta.dtype) + delta)
        return _out_in(module, merged).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: PeftSineLoRALinear, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data = SineDoraVariant.merge_safe(module, active_adapter, orig_weight.data)

    @staticmethod
    def unmerge(module: PeftSineLoRALinear, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        factor = module._cache_pop(f"{active_adapter}-sine-dora-factor")
        delta = _sine_delta(module, active_adapter).to(factor.dtype)
        base = _out_in(module, orig_weight.data).to(factor.dtype) / factor[:, None] - delta
        return _out_in(module, base).to(orig_weight.dtype)

    @staticmethod
    def forward(
        module: PeftSineLoRALinear, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        base = _out_in(module, module.get_base_layer().weight)
        factor, delta = SineDoraVariant._factor(module, active_adapter, base)
        h = module.lora_dropout[active_adapter](x)
        dtype = x.dtype
        # result = x W0^T + b0 (+ other adapters); this adapter turns x W0^T into factor * (x W0^T + h delta^T).
        base_out = F.linear(x, base.to(dtype))
        update = (factor.to(dtype) - 1) * base_out + factor.to(dtype) * F.linear(h.to(dtype), delta.to(dtype))
        return result + update.to(result.dtype)

    def supports_lora_conversion(self) -> bool:
        # PEFT's convert_to_lora keeps only the delta and would drop the magnitude; to_plain_lora keeps it.
        return False


class PeftSineLoRALinear(PeftLoraLinear):
    """PEFT ``lora.Linear`` whose adapters are Sine-LoRA (or Sine-DoRA) variants.

    PEFT's default init (A kaiming-uniform, B zero) is exactly the authors' Sine-LoRA init, so the
    adapted model starts equal to the base model. omega and gain are kept per adapter.
    """

    # delete_adapter() drops an adapter's entries from every dict named here.
    other_param_names = PeftLoraLinear.other_param_names + ("sine_omega", "sine_gain")

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: SineLoraConfig, **kwargs: Any) -> None:
        self.sine_omega: dict[str, float] = {}
        self.sine_gain: dict[str, float | None] = {}
        super().__init__(base_layer, adapter_name, config=config, **kwargs)

    @property
    def lora_variants(self) -> dict:
        return {("sine_lora",): SineLoraVariant, ("sine_lora", "use_dora"): SineDoraVariant}

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: LoraConfig, **kwargs: Any) -> None:
        if not isinstance(config, SineLoraConfig):
            where = kwargs.get("target_name") or "this layer"
            raise ValueError(
                f"{where} holds Sine-LoRA adapters; adapter {adapter_name!r} has a plain LoraConfig. "
                "Pass it through register_sine_lora(config, omega=...) first"
            )
        super().update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """The Sine-LoRA update of ``adapter`` in the base weight's layout ((in, out) for Conv1D).

        For a Sine-DoRA adapter this is the update before the magnitude rescaling, like PEFT's DoRA.
        """
        return _out_in(self, _sine_delta(self, adapter))

    def extra_repr(self) -> str:
        settings = ", ".join(
            f"{name}: omega={self.sine_omega[name]:g}, gain={check_gain(self.sine_gain[name], self.in_features):.4g}"
            for name in self.sine_omega
        )
        return settings

    def __repr__(self) -> str:
        return "sine_lora." + nn.Module.__repr__(self)


def _sine_configs(model: PeftModel, adapter_names: list[str] | None = None) -> dict[str, SineLoraConfig]:
    names = list(model.peft_config) if adapter_names is None else adapter_names
    configs = {}
    for name in names:
        if name not in model.peft_config:
            raise ValueError(f"the model has no adapter {name!r}; it has {sorted(model.peft_config)}")
        config = model.peft_config[name]
        if not isinstance(config, SineLoraConfig):
            raise ValueError(
                f"adapter {name!r} is a {type(config).__name__}, not a Sine-LoRA adapter (register_sine_lora)"
            )
        configs[name] = config
    return configs


def save_sine_lora(model: PeftModel, path: str | Path, **save_kwargs: Any) -> Path:
    """``model.save_pretrained(path)``, after checking that every adapter saved is Sine-LoRA.

    PEFT writes the ``"default"`` adapter into ``path`` and any other into ``path/<name>``.
    """
    _sine_configs(model, save_kwargs.get("selected_adapters"))
    model.save_pretrained(str(path), **save_kwargs)
    return Path(path)


def adapter_folder(path: str | Path, adapter_name: str = "default") -> Path:
    """The folder holding ``adapter_name``'s config and weights under a folder PEFT saved into.

    PEFT's ``save_pretrained`` writes the ``"default"`` adapter into ``path`` and another adapter
    into ``path/<name>``; a folder that itself holds ``adapter_config.json`` is taken as it is.
    """
    path = Path(path)
    if adapter_name != "default" and (path / adapter_name / CONFIG_NAME).is_file():
        return path / adapter_name
    return path


def _read_config(folder: Path) -> SineLoraConfig:
    file = folder / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {folder} is not an adapter folder written by save_pretrained")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file} is not valid JSON: {error}") from None
    if data.get("peft_type") != SINE_PEFT_TYPE:
        raise ValueError(
            f"{file} has peft_type {data.get('peft_type')!r}, not {SINE_PEFT_TYPE!r}: it is not a Sine-LoRA "
            "adapter (a plain LoRA loads with peft.PeftModel.from_pretrained)"
        )
    data["peft_type"] = PeftType.LORA
    data.pop("runtime_config", None)
    names = {f.name for f in dataclasses.fields(SineLoraConfig) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        # PEFT's own rule for configs written by a newer PEFT: warn and drop the unknown keys.
        warnings.warn(f"{file}: ignoring keys this PEFT does not know: {unknown}", stacklevel=3)
    kwargs = SineLoraConfig.check_kwargs(**{k: v for k, v in data.items() if k in names})
    return SineLoraConfig(**kwargs)


def load_sine_lora(
    model: nn.Module, path: str | Path, adapter_name: str = "default", is_trainable: bool = False
) -> PeftModel:
    """Load a Sine-LoRA adapter saved by ``save_pretrained`` / :func:`save_sine_lora`.

    Args:
        model: the base model (a new ``PeftModel`` is returned), or a ``PeftModel`` to add the adapter to.
        path: the folder passed to ``save_pretrained``, or the adapter's own folder.
        adapter_name: the adapter's name; config and weights are both read from
            :func:`adapter_folder` ``(path, adapter_name)``.
        is_trainable: load with gradients enabled (to continue training).
    """
    folder = adapter_folder(path, adapter_name)
    config = _read_config(folder)
    config.inference_mode = not is_trainable
    if isinstance(model, PeftModel):
        if adapter_name in model.peft_config:
            raise ValueError(f"the model already has an adapter {adapter_name!r}")
        model.add_adapter(adapter_name, config)
        # The adapter now has its Sine-LoRA config, so load_adapter only reads the weights.
        model.load_adapter(str(folder), adapter_name, is_trainable=is_trainable)
        if is_trainable:
            model.set_requires_grad(adapter_name)
        return model
    return PeftModel.from_pretrained(
        model, str(folder), adapter_name=adapter_name, is_trainable=is_trainable, config=config
    )


# ---------------------------------------------------------------------------------------------
# Export to a standard LoRA


def _sine_layers(model: PeftModel, adapter_name: str) -> list[tuple[str, PeftSineLoRALinear]]:
    _sine_configs(model, [adapter_name])
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, PeftSineLoRALinear) and adapter_name in module.sine_omega
    ]
    if not layers:
        raise ValueError(f"adapter {adapter_name!r} has no Sine-LoRA layers")
    return layers


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest k whose top-k singular values hold ``energy`` of the squared Frobenius norm (0 for a zero matrix)."""
    squares = singular_values.double() ** 2
    total = float(squares.sum())
    if total == 0:
        return 0
    kept = torch.cumsum(squares, 0) / total
    # 1e-12: the cumulative sum of the last terms can round just below ``energy`` = 1.
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=kept.dtype))) + 1


def _check_energy(energy: float) -> float:
    energy = float(energy)
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got energy={energy!r}")
    return energy


def _module_key(name: str) -> str:
    # PEFT's target keys (rank_pattern, target_modules) are relative to the wrapped model.
    return name.removeprefix("base_model.model.")


@torch.no_grad()
def plain_rank_report(model: PeftModel, adapter_name: str = "default", energy: float = 0.99) -> list[dict]:
    """Per Sine-LoRA layer: the rank a plain LoRA needs to keep ``energy`` of the update's squared
    Frobenius norm (``rank_for_energy``), next to the adapter's own rank r.

    A plain rank-r LoRA update has at most r non-zero singular values; a ``rank_for_energy`` above r
    is the extra rank the sine bought with the same parameters.
    """
    energy = _check_energy(energy)
    rows = []
    for name, module in _sine_layers(model, adapter_name):
        delta = _sine_delta(module, adapter_name)
        delta = delta.to(_at_least_float32(delta))  # no SVD in half precision
        singular_values = torch.linalg.svdvals(delta)
        rows.append(_rank_row(name, module, adapter_name, delta, energy, energy_rank(singular_values, energy)))
    return rows


def _rank_row(name: str, module, adapter_name: str, delta: torch.Tensor, energy: float, needed: int) -> dict:
    """The per-layer record that ``plain_rank_report`` returns and ``to_plain_lora`` extends."""
    return {
        "module": _module_key(name),
        "shape": list(delta.shape),
        "rank": module.r[adapter_name],
        "omega": module.sine_omega[adapter_name],
        "energy": energy,
        "rank_for_energy": needed,
    }


@torch.no_grad()
def to_plain_lora(
    model: PeftModel,
    path: str | Path,
    rank: int | None = None,
    energy: float = 0.99,
    adapter_name: str = "default",
    overwrite: bool = False,
) -> list[dict]:
    """Write ``adapter_name`` as a standard PEFT LoRA (DoRA for Sine-DoRA) that stock PEFT loads.

    Each Sine-LoRA update ``delta`` (out x in) is replaced by its truncated SVD ``U_k S_k V_k^T``:
    ``lora_B = U_k S_k``, ``lora_A = V_k^T``, with ``lora_alpha = r`` so that PEFT's scaling is 1.
    Sine-DoRA magnitudes, ``lora_bias`` and ``modules_to_save`` are copied unchanged.

    Args:
        model: a ``PeftModel`` with a Sine-LoRA adapter.
        path: output folder (``adapter_config.json`` and ``adapter_model.safetensors``).
        rank: the plain rank of every layer (at most ``min(out, in)``); ``None`` gives each layer its
            ``rank_for_energy`` through PEFT's ``rank_pattern`` (some servers want one rank for all
            layers: pass an int then).
        energy: the share of each update's squared Frobenius norm that picks ``rank_for_energy``.
        adapter_name: the adapter to export.
        overwrite: replace an adapter already in ``path``.

    Returns:
        Per layer: ``module``, ``shape``, ``rank`` (sine), ``rank_for_energy``, ``exported_rank``,
        ``kept_energy`` and ``relative_error`` (Frobenius) of the exported update.
    """
    from safetensors.torch import save as safetensors_bytes

    energy = _check_energy(energy)
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise ValueError(f"rank must be None or an integer >= 1, got rank={rank!r}")
    path = Path(path)
    if not overwrite and ((path / CONFIG_NAME).exists() or (path / WEIGHTS_NAME).exists()):
        raise FileExistsError(f"{path} already holds an adapter; pass overwrite=True to replace it")
    layers = _sine_layers(model, adapter_name)
    source = model.peft_config[adapter_name]
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)

    report, rank_pattern = [], {}
    for name, module in layers:
        delta = _sine_delta(module, adapter_name)
        delta = delta.to(_at_least_float32(delta))  # no SVD in half precision
        if rank is not None and rank > min(delta.shape):
            raise ValueError(f"rank={rank} is larger than min(out, in) = {min(delta.shape)} of {_module_key(name)}")
        U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
        needed = energy_rank(S, energy)
        k = rank if rank is not None else max(needed, 1)
        total = float((S.double() ** 2).sum())
        kept = float((S[:k].double() ** 2).sum()) / total if total > 0 else 1.0
        dtype = module.lora_A[adapter_name].weight.dtype
        state[f"{name}.lora_A.weight"] = Vh[:k].to(dtype).contiguous()
        state[f"{name}.lora_B.weight"] = (U[:, :k] * S[:k]).to(dtype).contiguous()
        rank_pattern[_module_key(name)] = k
        row = _rank_row(name, module, adapter_name, delta, energy, needed)
        row.update(exported_rank=k, kept_energy=kept, relative_error=math.sqrt(max(0.0, 1.0 - kept)))
        report.append(row)

    fields = {f.name: copy.deepcopy(getattr(source, f.name)) for f in dataclasses.fields(LoraConfig) if f.init}
    fields.update(peft_type=PeftType.LORA, use_rslora=False, init_lora_weights=True)
    if rank is not None:
        fields.update(r=rank, lora_alpha=rank, rank_pattern={}, alpha_pattern={})
    else:
        top = max(rank_pattern.values())
        fields.update(r=top, lora_alpha=top, rank_pattern=dict(rank_pattern), alpha_pattern=dict(rank_pattern))
    plain = LoraConfig(**fields)

    path.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    atomic_write_bytes(path / WEIGHTS_NAME, safetensors_bytes(tensors, metadata={"format": "pt"}))
    plain.save_pretrained(str(path))
    return report
