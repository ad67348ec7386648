"""A fitted shape as one small file: the field's tensors, its configuration and the way back to the
mesh's own coordinates, in a safetensors container (``.sfz``).

safetensors is a JSON header followed by raw little-endian tensors: opening a file runs no code (unlike
a pickle) and the header holds string metadata, where the field configuration and the normalisation go
as one compact JSON string under ``METADATA_KEY``.

Every tensor is stored as integer codes with an affine map per row, ``x = offset + step * code``, the
``(offset, step)`` pairs in float32 beside them. Uniform 16-bit codes rather than float16: a sine layer
multiplies its factors' error by omega (the argument ``omega * u_i * v_j`` is tens of radians at omega = 1000),
so what matters is the absolute error of the large entries; float16 keeps 11 significant bits for every
entry, a 16-bit code 16 bits of the row's range. On a rank-1 bunny fit (300 steps, extraction at 128^3,
distances from surface samples to the other surface) float16 moved the surface by 0.00034 on average,
16-bit codes by 0.000036.

Each tensor has its own code width (``code_widths``), and the codes of all tensors are one bit stream. A
16-bit file codes everything at 16 bits. An "8-bit" file is mixed: 8-bit codes for the dense layers and
the biases, ``SINE_FACTOR_BITS`` for the factors ``U``, ``V`` of the sine layers. 8 bits everywhere moves
a rank-1 bunny's surface by about 0.013 (Chamfer-L1 to the run's own mesh) and quantisation-aware
fine-tuning only brings that to about 0.006; with every other tensor at 16 bits and the factors alone at
8 it is still 0.012, while the dense layers or the biases alone at 8 bits cost under 0.001. An 8-bit
code of a factor is off by up to 1/510 of its row's range, which omega turns into a tenth of a radian or
more of the sine's argument; two more bits cut that by four, for 256 more bytes on that field
(benchmarks/pack_precision.py measures these and the other options: finer affine groups, longer
fine-tuning, other widths). Plain low-rank and dense fields have no sine, so their 8-bit files are 8 bits
throughout. ``pack_bytes`` also takes any per-tensor widths, a block size (one pair per ``block`` entries
of a row instead of per row) and float16 pairs; the file records the widths and the block, so any such
file reads back.

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

import numpy as np
import torch
from torch import Tensor

from sine_fields.errors import UserError
from sine_fields.shapes.field import FieldConfig, ShapeField
from sine_fields.shapes.ground_truth import Normalisation

__all__ = ["BITS", "FORMAT", "PACK_SUFFIX", "SINE_FACTOR_BITS", "PackedShape", "affine_rows", "code_widths",
           "dequantise_rows", "load_packed", "pack_bytes", "quantise_rows", "sine_factor_names", "unpack_bytes"]

FORMAT = "sine-fields-shape"
FORMAT_VERSION = 2
METADATA_KEY = "sine_fields"
BITS = (16, 8)
PACK_SUFFIX = ".sfz"
MAX_CODE_BITS = 16
AFFINE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
# Code width of the sine factors in an 8-bit file: the narrowest that, with the default fine-tuning, keeps
# the rank-1 bunny within the 0.005 of its run with a margin (benchmarks/pack_precision.py).
SINE_FACTOR_BITS = 10


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


def _blocks(rows: Tensor, block: int) -> Tensor:
    """``(r, c)`` rows -> ``(r * ceil(c / block), block)``: each row cut into blocks of ``block`` entries
    (0: the whole row), the last block padded with its row's last entry (padding is cut off again)."""
    if block <= 0 or block >= rows.shape[1]:
        return rows
    per_row = -(-rows.shape[1] // block)
    padded = torch.cat([rows, rows[:, -1:].expand(-1, per_row * block - rows.shape[1])], dim=1)
    return padded.reshape(rows.shape[0] * per_row, block)


def _unblock(blocks: Tensor, shape: torch.Size) -> Tensor:
    """Invert ``_blocks`` for rows of ``shape``."""
    if blocks.shape == shape:
        return blocks
    return blocks.reshape(shape[0], -1)[:, : shape[1]]


def _round_affine(low: Tensor, high: Tensor, levels: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(offset, step)`` in ``dtype`` such that ``offset <= low`` and ``offset + levels * step >= high``,
    so that every entry is within half a step of a code (a float16 offset rounded above a row's minimum
    would clamp that minimum to code 0, a full rounding error away)."""
    offset = low.to(dtype)
    below = offset.float() > low
    offset = torch.where(below, torch.nextafter(offset, torch.full_like(offset, -torch.inf)), offset)
    step = ((high - offset.float()) / levels).to(dtype)
    step = torch.where(step > 0, step, torch.ones_like(step))  # a constant row: every code 0 gives `low` exactly
    short = offset.float() + levels * step.float() < high
    step = torch.where(short, torch.nextafter(step, torch.full_like(step, torch.inf)), step)
    return offset, step


def quantise_rows(tensor: Tensor, bits: int = 8, block: int = 0, affine_dtype: torch.dtype = torch.float32
                  ) -> tuple[Tensor, Tensor]:
    """Any float tensor -> ``(codes, affine)``: int32 codes in ``[0, 2^bits - 1]`` shaped like the rows of
    ``_as_rows``, and ``(blocks, 2)`` ``(offset, step)`` pairs in ``affine_dtype``, one per ``block``
    entries of a row (0: one per row); ``dequantise_rows`` inverts it to within ``step / 2`` per entry,
    ``step`` about ``block range / (2^bits - 1)``."""
    if not 1 <= bits <= MAX_CODE_BITS:
        raise ValueError(f"code width {bits} is not in 1..{MAX_CODE_BITS}")
    levels = (1 << bits) - 1
    rows, _ = _as_rows(tensor.detach().float().cpu())
    blocks = _blocks(rows, block)
    offset, step = _round_affine(blocks.min(dim=1).values, blocks.max(dim=1).values, levels, affine_dtype)
    codes = torch.round((blocks - offset.float()[:, None]) / step.float()[:, None]).clamp_(0, levels).to(torch.int32)
    return _unblock(codes, rows.shape).contiguous(), torch.stack([offset, step], dim=1).contiguous()


def dequantise_rows(codes: Tensor, affine: Tensor, shape: torch.Size | tuple[int, ...], block: int = 0) -> Tensor:
    """Invert ``quantise_rows`` (with the same ``block``) back to a float32 tensor of ``shape``."""
    values = codes.float()
    rows = _unblock(affine[:, :1].float() + affine[:, 1:].float() * _blocks(values, block), values.shape)
    numel = 1
    for size in shape:
        numel *= int(size)
    first = 1 if len(shape) < 2 else int(shape[0])
    if first > numel // max(first, 1):  # quantised as its transpose (see _as_rows)
        rows = rows.t()
    return rows.reshape(shape).contiguous()


def affine_rows(shape: torch.Size | tuple[int, ...], block: int = 0) -> int:
    """How many ``(offset, step)`` pairs ``quantise_rows`` gives a tensor of ``shape``."""
    rows, _ = _as_rows(torch.empty(shape, device="meta"))
    per_row = 1 if block <= 0 or block >= rows.shape[1] else -(-rows.shape[1] // block)
    return rows.shape[0] * per_row


# ----- code widths ------------------------------------------------------------------------------------
def sine_factor_names(config: FieldConfig) -> set[str]:
    """``state_dict`` names of the factors ``U``, ``V`` of the field's sine layers (whose rounding error
    the sine's omega multiplies)."""
    from sine_fields.layers import SineLowRankLinear

    with torch.device("meta"):  # names only: no memory, and the global random state is not drawn from
        field = ShapeField(config)
    return {f"{name}.{factor}" if name else factor for name, module in field.named_modules()
            if isinstance(module, SineLowRankLinear) for factor in ("U", "V")}


def code_widths(config: FieldConfig, names: list[str], bits: int, factor_bits: int | None = None) -> dict[str, int]:
    """The code width of every tensor of a file packed at ``bits``: all ``bits`` wide at 16; at 8, the sine
    factors ``factor_bits`` wide (default ``SINE_FACTOR_BITS``) and the rest 8."""
    if bits not in BITS:
        raise UserError(f"--bits must be one of {', '.join(map(str, BITS))}, got {bits}")
    factors = sine_factor_names(config) if bits == 8 else set()
    wide = SINE_FACTOR_BITS if factor_bits is None else factor_bits
    return {name: wide if name in factors else bits for name in names}


def _pack_codes(codes: list[Tensor], widths: list[int]) -> Tensor:
    """Integer codes of the given widths -> one uint8 bit stream (each code most significant bit first,
    the last byte padded with zeros)."""
    chunks = []
    for values, width in zip(codes, widths):
        big_endian = values.reshape(-1).numpy().astype(">u2")
        bits = np.unpackbits(big_endian.view(np.uint8)).reshape(-1, 16)[:, 16 - width :]
        chunks.append(bits.reshape(-1))
    return torch.from_numpy(np.packbits(np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)))


def _unpack_codes(stream: Tensor, counts: list[int], widths: list[int]) -> list[Tensor]:
    """Invert ``_pack_codes`` for tensors of ``counts`` entries; a stream of another length is a ``ValueError``."""
    total = sum(count * width for count, width in zip(counts, widths))
    if stream.dtype != torch.uint8 or stream.dim() != 1 or len(stream) != -(-total // 8):
        raise ValueError(f"{len(stream)} bytes of codes for a field of {total} code bits")
    bits, at, out = np.unpackbits(stream.numpy()), 0, []
    for count, width in zip(counts, widths):
        chunk = bits[at : at + count * width].reshape(count, width)
        padded = np.concatenate([np.zeros((count, 16 - width), np.uint8), chunk], axis=1)
        out.append(torch.from_numpy(np.packbits(padded, axis=1).view(">u2").reshape(-1).astype(np.int32)))
        at += count * width
    return out


# ----- the file ---------------------------------------------------------------------------------------
def pack_bytes(config: FieldConfig, state: dict[str, Tensor], normalisation: Normalisation, bits: int,
               widths: dict[str, int] | None = None, block: int = 0, affine_dtype: torch.dtype = torch.float32) -> bytes:
    """The packed file's content for a field's ``state_dict`` at ``bits`` (16 or 8).

    ``widths`` (default ``code_widths``) gives each tensor's code width, ``block`` the entries per
    ``(offset, step)`` pair (0: one pair per row), ``affine_dtype`` the pairs' float type (float32 or
    float16). The codes of all tensors go in as one bit stream in ``state_dict`` order, the pairs as one
    ``(n, 2)`` tensor: a field rebuilt from the configuration has the same names and shapes in the same
    order, so storing them would only add header bytes (about 70 per tensor).
    """
    from safetensors.torch import save

    widths = code_widths(config, list(state), bits) if widths is None else widths
    if list(widths) != list(state):
        raise ValueError("widths must name the state's tensors in its order")
    if affine_dtype not in AFFINE_DTYPES.values():
        raise ValueError(f"affine_dtype must be one of {', '.join(AFFINE_DTYPES)}, got {affine_dtype}")
    parts = [quantise_rows(value, widths[name], block, affine_dtype) for name, value in state.items()]
    tensors = {"codes": _pack_codes([codes for codes, _ in parts], list(widths.values())),
               "affine": torch.cat([affine for _, affine in parts])}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "bits": bits, "code_bits": list(widths.values()),
                "block": block, "field": config.to_dict(), "normalisation": normalisation.to_dict()}
    return save(tensors, metadata={METADATA_KEY: json.dumps(metadata, separators=(",", ":"))})


def _unflatten(template: dict[str, Tensor], tensors: dict[str, Tensor], widths: list[int], block: int) -> dict[str, Tensor]:
    """The bit stream and affine pairs of a packed file back into a ``state_dict`` shaped like ``template``."""
    if len(widths) != len(template) or not all(isinstance(w, int) and 1 <= w <= MAX_CODE_BITS for w in widths):
        raise ValueError(f"code_bits {widths} for a field of {len(template)} tensors")
    if not isinstance(block, int) or block < 0:
        raise ValueError(f"block {block!r} is not a count of entries")
    affine = tensors["affine"]
    if affine.dtype not in AFFINE_DTYPES.values() or affine.dim() != 2 or affine.shape[1] != 2:
        raise ValueError(f"affine pairs of dtype {affine.dtype} and shape {tuple(affine.shape)}")
    codes = _unpack_codes(tensors["codes"], [value.numel() for value in template.values()], widths)
    state, row_at = {}, 0
    for (name, value), values in zip(template.items(), codes):
        rows, _ = _as_rows(value)
        count = affine_rows(value.shape, block)
        if row_at + count > len(affine):
            raise ValueError("fewer affine pairs than the field's tensors need")
        state[name] = dequantise_rows(values.reshape(rows.shape), affine[row_at : row_at + count], tuple(value.shape), block)
        row_at += count
    if len(affine) != row_at:
        raise ValueError(f"{len(affine)} affine pairs for a field that needs {row_at}")
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
        field.load_state_dict(_unflatten(field.state_dict(), tensors, metadata["code_bits"], metadata["block"]))
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
