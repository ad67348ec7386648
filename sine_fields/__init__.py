"""sine-fields: sine-activated low-rank layers, adapters and neural fields.

``W = sin(omega * U @ V) / gain`` (Ji et al., ICLR 2025) has the parameters of a rank-k
factorisation and a much higher effective rank. This package keeps its import light: only torch.
"""

from sine_fields.convert import ConversionSummary, add_sine_lora, convert, count_parameters
from sine_fields.fields import FieldMLP, FourierFeatures, MLPConfig, build_mlp
from sine_fields.layers import DEFAULT_OMEGA, LowRankLinear, SineLowRankLinear, sine_weight
from sine_fields.lora import SineLoRALinear

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_OMEGA",
    "ConversionSummary",
    "FieldMLP",
    "FourierFeatures",
    "LowRankLinear",
    "MLPConfig",
    "SineLoRALinear",
    "SineLowRankLinear",
    "add_sine_lora",
    "build_mlp",
    "convert",
    "count_parameters",
    "sine_weight",
]
