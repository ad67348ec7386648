"""A fitted shape as one small file: the field's tensors, its configuration and the way back to the
mesh's own coordinates, in a safetensors container (``.sfz``).

safetensors is a JSON header followed by raw little-endian tensors: opening a file runs no code (unlike
a pickle) and the header holds string metadata, where the field configuration and the normalisation go
as one compact JSON string under ``METADATA_KEY``.

Both precisions store every tensor as integer codes with an affine map per row, ``x = offset + step * code``
(uint8 codes at 8 bits, 16-bit codes at 16 bits), the ``(offset, step)`` pairs in float32 beside them.
Uniform 16-bit codes rather than float16: a sine layer multiplies its factors' error by omega (the argument
``omega * u_i * v_j`` is tens of radians at omega = 1000), so what matters is the absolute error of the large
entries; float16 keeps 11 significant bits for every entry, a 16-bit code 16 bits of the row's range. On a
rank-1 bunny fit (300 steps, extraction at 128^3, distances from surface samples to the other surface)
float16 moved the surface by 0.00034 on average, 16-bit codes by 0.000036.

A "row" is taken along the tensor's longer axis (a tensor with more rows than columns is quantised as its
transpose), so there are ``min(rows, cols)`` pairs: one per rank-one factor of ``U`` (out x k) and ``V``
(k x in), one per input coordinate of the 3 -> n layer, one for a bias. Per row rather than per tensor
because the factors of a low-rank product have no common scale (``u c`` and ``v / c`` give the same
product, so training leaves each factor at its own magnitude), and the dense layers' rows differ by
orders of magnitude; one range per tensor would spend the levels of the small rows on the large ones.
Along the longer axis rather than per output neuron because a per-neuron range of a 3-wide row, or of
a rank-1 row of ``U``, would cost more bytes than the codes it describes.

The file holds no ground truth and no run folder path: ``load_packed`` rebuilds the field from it alone.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sine_fields.errors import UserError
from sine_fields.shapes.field import FieldConfig, ShapeField
from sine_fields.shapes.ground_truth import Normalisation

__all__ = ["BITS", "FORMAT", "PACK_SUFFIX", "PackedShape", "dequantise_rows", "load_packed", "pack_bytes",
           "quantise_rows", "unpack_bytes"]

FORMAT = "sine-fields-shape"
FORMAT_VERSION = 1
METADATA_KEY = "sine_fields"
BITS = (16, 8)
PACK_SUFFIX = ".sfz"


@dataclass
class PackedShape:
    """What a packed file holds, with its field rebuilt (float32, on the CPU, in eval mode)."""

    field: ShapeField
    normalisation: Normalisation
    bits: int


def _as_rows(tensor: Tensor) -> tuple[Tensor, bool]:
    """``tensor`` as a 2-D matrix whose rows run along its longer axis; True when transposed."""
    matrix = tensor.reshape(1, -1) if tensor.dim() < 2 else tensor.reshape(tensor.shape[0], -1)
    if matrix.shape[0] > matrix.shape[1]:
        return matrix.t(), True
    return matrix, False


def quantise_rows(tensor: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Any float tensor -> ``(codes, affine)``: integer codes shaped like the rows of ``_as_rows`` (uint8 at
    8 bits; int16 at 16 bits, holding ``code - 32768``) and ``(rows, 2)`` float32 ``(offset, step)``;
    ``dequantise_rows`` inverts it to within ``step / 2`` per entry, ``step = row range / (2^bits - 1)``."""
    levels = (1 << bits) - 1
    rows, _ = _as_rows(tensor.detach().float().cpu())
    low, high = rows.min(dim=1).values, rows.max(dim=1).values
    step = (high - low) / levels
    step = torch.where(step > 0, step, torch.ones_like(step))  # a constant row: every code 0 gives `low` exactly
    codes = torch.round((rows - low[:, None]) / step[:, None]).clamp_(0, levels).to(torch.int32)
    codes = codes.to(torch.uint8) if bits == 8 else (codes - 32768).to(torch.int16)
    return codes.contiguous(), torch.stack([low, step], dim=1).contiguous()


def dequantise_rows(codes: Tensor, affine: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Invert ``quantise_rows`` back to a float32 tensor of ``shape``."""
    values = codes.to(torch.int32) + (32768 if codes.dtype == torch.int16 else 0)
    rows = affine[:, :1].float() + affine[:, 1:].float() * values.float()
    numel = 1
    for size in shape:
        numel *= int(size)
    first = 1 if len(shape) < 2 else int(shape[0])
    if first > numel // max(first, 1):  # quantised as its transpose (see _as_rows)
        rows = rows.t()
    return rows.reshape(shape).contiguous()


def pack_bytes(config: FieldConfig, state: dict[str, Tensor], normalisation: Normalisation, bits: int) -> bytes:
    """The packed file's content for a field's ``state_dict`` at ``bits`` (16 or 8).

    The codes go in as one flat vector in ``state_dict`` order (``codes``, then the ``affine`` rows): a
    field rebuilt from the configuration has the same names and shapes in the same order, so storing
    them would only add header bytes (about 70 per tensor).
    """
    from safetensors.torch import save

    if bits not in BITS:
        raise UserError(f"--bits must be one of {', '.join(map(str, BITS))}, got {bits}")
    parts = [quantise_rows(value, bits) for value in state.values()]
    tensors = {"codes": torch.cat([codes.reshape(-1) for codes, _ in parts]),
               "affine": torch.cat([affine for _, affine in parts])}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "bits": bits, "field": config.to_dict(),
                "normalisation": normalisation.to_dict()}
    return save(tensors, metadata={METADATA_KEY: json.dumps(metadata, separators=(",", ":"))})


def _unflatten(template: dict[str, Tensor], tensors: dict[str, Tensor], bits: int) -> dict[str, Tensor]:
    """The flat codes of a packed file back into a ``state_dict`` shaped like ``template``."""
    expected = torch.uint8 if bits == 8 else torch.int16
    if tensors["codes"].dtype != expected or tensors["affine"].dtype != torch.float32:
        raise ValueError(f"codes {tensors['codes'].dtype} / affine {tensors['affine'].dtype} for {bits}-bit codes")
    state, at, row_at = {}, 0, 0
    for name, value in template.items():
        rows, _ = _as_rows(value)
        count = value.numel()
        codes = tensors["codes"][at : at + count]
        affine = tensors["affine"][row_at : row_at + rows.shape[0]]
        if len(codes) != count or len(affine) != rows.shape[0]:
            raise ValueError("fewer codes or affine rows than the field's parameters")
        state[name] = dequantise_rows(codes.reshape(rows.shape), affine, tuple(value.shape))
        row_at += rows.shape[0]
        at += count
    if len(tensors["codes"]) != at or len(tensors["affine"]) != row_at:
        raise ValueError(f"{len(tensors['codes'])} stored codes for a field of {at} parameters")
    return state


def _header(data: bytes, name: str) -> dict:
    """The safetensors JSON header: 8 bytes of little-endian length, then that many bytes of JSON."""
    if len(data) < 8:
        raise UserError(f"{name}: not a packed shape (only {len(data)} bytes)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise UserError(f"{name}: not a packed shape, or truncated (header of {length} bytes in a {len(data)}-byte file)")
    try:
        return json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{name}: not a packed shape (its header is not safetensors JSON)") from None


def unpack_bytes(data: bytes, name: str = "packed shape") -> PackedShape:
    """Rebuild the field from a packed file's content; anything malformed is a one-line ``UserError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    header = _header(data, name)
    try:
        metadata = json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "null"))
    except (AttributeError, json.JSONDecodeError):
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise UserError(f"{name}: a safetensors file but not a packed shape (no {METADATA_KEY!r} metadata); "
                        "write one with `sine-fields pack`")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{name}: packed-shape format_version {metadata.get('format_version')!r}, "
                        f"this version reads {FORMAT_VERSION}")
    try:
        tensors = load(data)
    except SafetensorError as error:
        raise UserError(f"{name}: corrupt packed shape ({error})") from None
    try:
        config = FieldConfig.from_dict(metadata["field"])
        field = ShapeField(config)
        bits = int(metadata["bits"])
        if bits not in BITS:
            raise ValueError(f"bits {bits} is not one of {BITS}")
        field.load_state_dict(_unflatten(field.state_dict(), tensors, bits))
        normalisation = Normalisation.from_dict(metadata["normalisation"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        # RuntimeError: load_state_dict's missing/unexpected keys or shape mismatches, on one line.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{name}: corrupt packed shape ({reason})") from None
    field.eval()
    return PackedShape(field, normalisation, bits)


def load_packed(path: Path) -> PackedShape:
    """``unpack_bytes`` of a file; a missing file is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    return unpack_bytes(path.read_bytes(), str(path))
