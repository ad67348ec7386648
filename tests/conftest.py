"""Fixtures shared by the core tests."""

import pytest
import torch


@pytest.fixture
def tiny_llama():
    """A randomly initialised 2-layer Llama (32 wide, vocabulary 64): a real causal LM with nn.Linear projections."""
    transformers = pytest.importorskip("transformers", reason="transformers is a dependency of sine-fields")

    def build():
        config = transformers.LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=32,
        )
        torch.manual_seed(0)
        return transformers.LlamaForCausalLM(config)

    return build
