"""Fixtures and helpers shared by the core tests."""

import pytest
import torch

# Token ids every language-model test feeds (vocabulary 64, as ``tiny_llama``): fixed, so that outputs of
# two models can be compared entry by entry.
IDS = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))


def logits(model):
    """``model``'s logits on ``IDS`` in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


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
