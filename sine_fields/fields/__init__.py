"""Field MLPs and input encodings built from the core layers."""

from sine_fields.fields.encodings import FourierFeatures, IdentityEncoding, build_encoding
from sine_fields.fields.merged import MergedMLP
from sine_fields.fields.mlp import ACTIVATIONS, FieldMLP, MLPConfig, build_mlp

__all__ = ["ACTIVATIONS", "FieldMLP", "FourierFeatures", "IdentityEncoding", "MLPConfig", "MergedMLP", "build_encoding", "build_mlp"]
