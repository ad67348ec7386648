"""Fast inference of a trained ``FieldMLP``: every weight materialised once, evaluated in chunks.

A coordinate MLP at batch 64k spends as much time on bias, activation and memory traffic as on its
matrix products (benchmarks/layers.py measures both). Three changes close most of that gap on a CPU:

- sine / low-rank weights are materialised once (merged inference: the same cost as dense);
- rows go through the network in chunks small enough that the activations stay in cache;
- each layer is one ``addmm`` (bias fused into the product) into a preallocated buffer, followed
  by an in-place activation where one exists, so (almost) no tensor is allocated per layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sine_fields.fields.mlp import FieldMLP, _activation

__all__ = ["DEFAULT_CHUNK", "MergedMLP"]

# Rows per chunk. The committed sweep (benchmarks/results/layers.json, "chunk_sweep_s", written by
# benchmarks/layers.py: 3 -> 256 x 3 -> 1 ReLU field, 65,536 rows, 2 CPU cores) measured 16384 rows
# fastest (0.066 s), with 4096 and 8192 within 5 % of it (0.069 s) and 1024 25 % slower: small chunks pay
# per-call threading overhead. 4096 is kept because its two 4096 x 256 float32 buffers (4 MiB each)
# are a quarter of 16384's at almost the same speed.
DEFAULT_CHUNK = 4096


class MergedMLP(nn.Module):
    """A frozen, dense copy of a ``FieldMLP`` for inference only.

    Args:
        mlp: the trained network; its current weights are copied (later training does not show).
        chunk: rows evaluated at a time.
    """

    def __init__(self, mlp: FieldMLP, chunk: int = DEFAULT_CHUNK) -> None:
        super().__init__()
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got chunk={chunk}")
        self.in_dim = mlp.in_dim
        self.out_dim = mlp.out_dim
        self.chunk = chunk
        self.activations = [mlp.config.activation] * (len(mlp.layers) - 1) + [mlp.config.output_activation]
        with torch.no_grad():
            # Stored transposed (in, out) so that addmm reads them without a transpose flag.
            weights = [layer.weight.detach().t().contiguous() for layer in mlp.layers]
            biases = [
                layer.bias.detach().clone() if layer.bias is not None else torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)
                for layer, w in zip(mlp.layers, weights)
            ]
        self.weights = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w in weights)
        self.biases = nn.ParameterList(nn.Parameter(b, requires_grad=False) for b in biases)

    def get_out_dim(self) -> int:
        return self.out_dim

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """``(n, in_dim) -> (n, out_dim)``, no autograd."""
        if x.dim() != 2 or x.shape[-1] != self.in_dim:
            raise ValueError(f"MergedMLP expected input of shape (n, {self.in_dim}), got {tuple(x.shape)}")
        rows = x.shape[0]
        first = self.weights[0]
        out = torch.empty(rows, self.out_dim, dtype=first.dtype, device=x.device)
        if rows == 0:
            return out
        chunk = min(self.chunk, rows)
        widest = max(w.shape[1] for w in self.weights[:-1]) if len(self.weights) > 1 else self.out_dim
        # Two ping-pong buffers: layer i reads one and writes the other.
        buffers = [torch.empty(chunk, widest, dtype=first.dtype, device=x.device) for _ in range(2)]
        last = len(self.weights) - 1
        for start in range(0, rows, chunk):
            stop = min(start + chunk, rows)
            h = x[start:stop].to(first.dtype)
            for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                target = out[start:stop] if i == last else buffers[i % 2][: stop - start, : weight.shape[1]]
                torch.addmm(bias, h, weight, out=target)
                activated = _activation(self.activations[i], True, target)
                if activated is not target:
                    # Not every activation has an in-place form (Softplus returns a new tensor):
                    # its result must land in the buffer, above all in the output rows.
                    target.copy_(activated)
                h = target
        return out
