"""The packed shape file: quantiser bounds, the container round trip, the CLI contract, and a rank-1
bunny fit that packs into a few kilobytes and unpacks to the run's own surface."""

import json
import re
import shutil
import struct

import pytest
import torch
import trimesh

from sine_fields import cli
from sine_fields.shapes import run as run_module
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.ground_truth import Normalisation
from sine_fields.shapes.metrics import METRIC_KEYS
from sine_fields.shapes.pack_commands import surface_chamfer
from sine_fields.shapes.pack import (SINE_FACTOR_BITS, _pack_codes, _unpack_codes, affine_rows, code_widths,
                                     dequantise_rows, pack_bytes, quantise_rows, sine_factor_names, unpack_bytes)

# Shapes of every tensor kind of a field: U (out x k), V (k x in), the 3 -> n layer, a bias, one scalar.
SHAPES = [(256, 1), (1, 256), (64, 4), (4, 64), (256, 3), (256,), (1,)]


def _rows(tensor):
    """The quantiser's rows: along the longer axis (a 1-D tensor is one row)."""
    if tensor.dim() < 2:
        return tensor.reshape(1, -1)
    return tensor.t() if tensor.shape[0] > tensor.shape[1] else tensor


@pytest.mark.parametrize("shape", SHAPES)
def test_8_bit_rows_are_within_half_a_step(shape):
    torch.manual_seed(0)
    # Columns of very different scales: the case per-row ranges are for.
    tensor = torch.randn(shape) * torch.logspace(-3, 0, shape[-1])
    codes, affine = quantise_rows(tensor, 8)
    rows = _rows(tensor)
    assert codes.shape == rows.shape and affine.shape == (min(rows.shape), 2) == (affine_rows(shape), 2)
    assert codes.min() >= 0 and codes.max() <= 255
    back = dequantise_rows(codes, affine, shape)
    assert back.shape == tensor.shape
    back_rows, step = _rows(back), affine[:, 1:]
    # Each entry is off by at most half its row's step (plus float32 rounding of offset + step * code).
    assert ((rows - back_rows).abs() <= step / 2 + 1e-6).all()
    # Every row's minimum is its offset, exactly, and its maximum is code 255.
    assert torch.equal(back_rows.amin(1), rows.amin(1)) and (codes.amax(1) == 255).all() or shape == (1,)


@pytest.mark.parametrize("block", [16, 64, 100])
@pytest.mark.parametrize("affine_dtype", [torch.float32, torch.float16])
def test_blocks_of_a_row_each_get_their_own_range(block, affine_dtype):
    torch.manual_seed(0)
    # Each block of 16 entries 10 times the scale of the one before: one range per row would flatten the first blocks.
    row = torch.randn(1, 200) * torch.logspace(-3, 1, 200).reshape(1, -1)
    codes, affine = quantise_rows(row, 8, block, affine_dtype)
    per_row = -(-200 // block) if block < 200 else 1
    assert affine.dtype == affine_dtype and affine.shape == (per_row, 2) == (affine_rows((1, 200), block), 2)
    back = dequantise_rows(codes, affine, (1, 200), block)
    # Every entry within half of its own block's step, also with a float16 offset and step (rounded outwards).
    step = affine[:, 1].float().repeat_interleave(block)[:200] if block < 200 else affine[:, 1].float().expand(200)
    assert ((back - row).abs()[0] <= step / 2 * (1 + 1e-3) + 1e-7).all()
    # Smaller blocks of the growing row: finer steps for its small entries.
    assert step[0] <= step[-1]


def test_a_constant_row_comes_back_exactly():
    codes, affine = quantise_rows(torch.full((1, 8), 0.25))
    assert torch.equal(dequantise_rows(codes, affine, (1, 8)), torch.full((1, 8), 0.25))


@pytest.mark.parametrize("config", [FieldConfig(rank=1, width=64), FieldConfig(linear="lowrank", rank=4, width=32, target="sdf"),
                                    FieldConfig(linear="dense", width=16, fourier_frequencies=2)])
@pytest.mark.parametrize("bits", [16, 8])
def test_container_round_trip(config, bits):
    torch.manual_seed(0)
    field = config.build()
    normalisation = Normalisation((1.0, -2.0, 0.5), 0.25)
    state = field.state_dict()
    packed = unpack_bytes(pack_bytes(config, state, normalisation, bits))
    assert packed.normalisation == normalisation and packed.field.config.to_dict() == config.to_dict() and packed.bits == bits
    assert packed.field.num_parameters() == field.num_parameters()
    widths = code_widths(config, list(state), bits)
    for name, value in packed.field.state_dict().items():
        # Every entry within half a step of its row: range / (2^width - 1) / 2.
        rows = _rows(state[name])
        half_step = (rows.amax(1) - rows.amin(1)).max() / ((1 << widths[name]) - 1) / 2
        assert (value - state[name]).abs().max() <= half_step * (1 + 1e-3) + 1e-7, name


def test_8_bit_files_code_only_the_sine_factors_wider():
    sine, plain = FieldConfig(rank=2, width=32), FieldConfig(linear="lowrank", rank=2, width=32)
    names = list(sine.build().state_dict())
    assert sine_factor_names(sine) == {"mlp.layers.1.U", "mlp.layers.1.V", "mlp.layers.2.U", "mlp.layers.2.V"}
    assert sine_factor_names(plain) == set() and sine_factor_names(FieldConfig(linear="dense", width=8)) == set()
    assert code_widths(sine, names, 8) == {n: SINE_FACTOR_BITS if n in sine_factor_names(sine) else 8 for n in names}
    assert set(code_widths(plain, names, 8).values()) == {8} and set(code_widths(sine, names, 16).values()) == {16}
    # Naming the factors builds nothing real: the global random stream is not drawn from.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    sine_factor_names(FieldConfig())
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("widths", [[8], [16], [1, 3, 9], [10, 8, 13, 16, 2]])
def test_codes_of_any_width_round_trip_through_one_bit_stream(widths):
    generator = torch.Generator().manual_seed(0)
    counts = [7, 256, 1, 33, 5][: len(widths)]
    codes = [torch.randint(0, 1 << w, (n,), generator=generator, dtype=torch.int32) for n, w in zip(counts, widths)]
    stream = _pack_codes(codes, widths)
    # Exactly the bits asked for, rounded up to whole bytes.
    assert stream.dtype == torch.uint8 and len(stream) == -(-sum(n * w for n, w in zip(counts, widths)) // 8)
    back = _unpack_codes(stream, counts, widths)
    assert all(torch.equal(a, b) for a, b in zip(codes, back))
    with pytest.raises(ValueError, match="bytes of codes"):
        _unpack_codes(stream[:-1], counts, widths)


def test_the_rank1_field_file_holds_the_bytes_its_widths_say():
    """The paper's network at rank 1: 2,817 parameters, 1,024 of them sine factors."""
    config = FieldConfig(rank=1)
    data = pack_bytes(config, config.build().state_dict(), Normalisation((0.0, 0.0, 0.0), 1.0), 8)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    sizes = {name: entry["data_offsets"][1] - entry["data_offsets"][0] for name, entry in header.items() if name != "__metadata__"}
    # Codes: 1,793 at 8 bits and 1,024 at SINE_FACTOR_BITS; affine: one float32 pair per row, 12 rows.
    assert sizes == {"codes": -(-(1793 * 8 + 1024 * SINE_FACTOR_BITS) // 8), "affine": 12 * 8}
    assert len(data) == 8 + length + sum(sizes.values())


def test_16_bit_codes_are_finer_than_8_bit_codes():
    torch.manual_seed(0)
    tensor = torch.randn(4, 256)
    errors = {bits: (dequantise_rows(*quantise_rows(tensor, bits), tensor.shape) - tensor).abs().max() for bits in (8, 16)}
    # 255 vs 65,535 levels over the same range: 257 times finer.
    assert errors[16] < errors[8] / 100


def test_pack_rejects_other_bit_widths():
    config = FieldConfig(rank=1, width=16)
    with pytest.raises(Exception, match="--bits must be one of 16, 8"):
        pack_bytes(config, config.build().state_dict(), Normalisation((0.0, 0.0, 0.0), 1.0), 4)


def _valid_file(tmp_path):
    config = FieldConfig(rank=1, width=16)
    path = tmp_path / "ok.sfz"
    path.write_bytes(pack_bytes(config, config.build().state_dict(), Normalisation((0.0, 0.0, 0.0), 1.0), 16))
    return path


def _with_metadata(data: bytes, **changes) -> bytes:
    """``data`` with entries of its packed-shape metadata replaced (the same tensors)."""
    from safetensors.torch import load, save

    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(json.loads(data[8 : 8 + length])["__metadata__"]["sine_fields"])
    return save(load(data), metadata={"sine_fields": json.dumps({**metadata, **changes})})


def test_a_file_of_another_format_version_is_refused_in_one_line(tmp_path):
    from sine_fields.errors import UserError

    old = _with_metadata(_valid_file(tmp_path).read_bytes(), format_version=1)
    with pytest.raises(UserError, match=r"format_version 1, this version reads 2"):
        unpack_bytes(old, "old.sfz")


def _corruptions(tmp_path):
    good = _valid_file(tmp_path).read_bytes()
    (length,) = struct.unpack("<Q", good[:8])
    from safetensors.torch import save

    cases = {
        "missing.sfz": None,
        "empty.sfz": b"",
        "text.sfz": b"this is not a packed shape at all",
        "truncated.sfz": good[: len(good) // 2],
        "no-metadata.sfz": save({"codes": torch.zeros(3, dtype=torch.int16)}),
        "short-values.sfz": good[: 8 + length] + good[8 + length : -2],
        "garbled-header.sfz": good[:8] + b"{" * length + good[8 + length :],
        "version-1.sfz": _with_metadata(good, format_version=1),
        "wrong-code-bits.sfz": _with_metadata(good, code_bits=[16, 16]),
        "wide-code-bits.sfz": _with_metadata(good, code_bits=[17] * 10),
        "negative-block.sfz": _with_metadata(good, block=-1),
    }
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / name
        if data is not None:
            paths[name].write_bytes(data)
    return paths


def test_unpack_of_a_missing_or_corrupt_file_is_one_line_and_exit_code_2(tmp_path, capsys):
    for name, path in _corruptions(tmp_path).items():
        assert cli.main(["unpack", str(path), "--output", str(tmp_path / "m.ply"), "--resolution", "32"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1 and str(path) in err, (name, err)
        assert not (tmp_path / "m.ply").exists()


def test_unpack_refuses_an_unknown_mesh_format_and_an_existing_output(tmp_path, capsys):
    packed = _valid_file(tmp_path)
    assert cli.main(["unpack", str(packed), "--output", str(tmp_path / "m.xyz")]) == 2
    assert "unsupported mesh format" in capsys.readouterr().err
    (tmp_path / "m.ply").write_text("mine")
    assert cli.main(["unpack", str(packed), "--output", str(tmp_path / "m.ply"), "--resolution", "32"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "m.ply").read_text() == "mine"


# ----- a real fit: the rank-1 bunny ---------------------------------------------------------------
BUNNY_FIT = ["--rank", "1", "--steps", "200", "--batch-size", "4096", "--samples", "100000", "--resolution", "128",
             "--device", "cpu"]


@pytest.fixture(scope="module")
def bunny_run(tmp_path_factory):
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the bunny recipe uses `npm pack`")
    with pytest.MonkeyPatch.context() as patch:
        # Scoring with 100k points per set is the metrics' job; 20k keep this test quick.
        patch.setattr(run_module, "IOU_POINTS", 20_000)
        patch.setattr(run_module, "SCORE_SURFACE_SAMPLES", 20_000)
        torch.set_num_threads(max(torch.get_num_threads(), 1))
        root = tmp_path_factory.mktemp("pack")
        run = root / "bunny-k1"
        assert cli.main(["fit", "--mesh", "bunny", "--output", str(run), *BUNNY_FIT]) == 0
        yield root, run


def _chamfer_to_run(run, mesh_path, samples=50_000):
    """Chamfer-L1 between a mesh file and the run's own mesh.ply, in the run's normalised frame (surface to
    surface: see ``surface_chamfer``)."""
    normalisation = Normalisation.from_dict(json.loads((run / "config.json").read_text())["normalisation"])

    def load(path):
        mesh = trimesh.load(path, force="mesh", process=False)
        return trimesh.Trimesh(normalisation.apply(mesh.vertices), mesh.faces, process=False)

    return surface_chamfer(load(mesh_path), load(run / "mesh.ply"), samples)


def test_surface_chamfer_is_zero_for_the_same_mesh_and_the_offset_for_a_shifted_one():
    sphere = trimesh.creation.icosphere(4)
    bigger = trimesh.Trimesh(sphere.vertices * 1.01, sphere.faces)
    assert surface_chamfer(sphere, sphere, 2000) < 1e-6
    # Every point of the radius-1.01 sphere is 0.01 from the unit sphere, and the other way round.
    assert surface_chamfer(bigger, sphere, 2000) == pytest.approx(0.01, rel=0.05)
    assert surface_chamfer(trimesh.Trimesh(), sphere, 10) == float("inf")


def _pack_and_unpack(root, run, bits, capsys):
    packed = root / f"bunny{bits}.sfz"
    assert cli.main(["pack", str(run), "--output", str(packed), "--bits", str(bits), "--device", "cpu"]) == 0
    size = packed.stat().st_size
    assert f"{size} bytes" in capsys.readouterr().out  # the exact byte count is printed
    mesh = root / f"bunny{bits}.ply"
    assert cli.main(["unpack", str(packed), "--output", str(mesh), "--resolution", "128", "--device", "cpu"]) == 0
    return size, _chamfer_to_run(run, mesh)


@pytest.mark.slow
def test_rank1_bunny_packs_into_8_kib_at_16_bits_and_unpacks_to_the_runs_surface(bunny_run, capsys):
    root, run = bunny_run
    size, chamfer = _pack_and_unpack(root, run, 16, capsys)
    assert size <= 8 * 1024 and chamfer <= 0.002, (size, chamfer)
    # Written once; a second pack to the same file needs --overwrite.
    assert cli.main(["pack", str(run), "--output", str(root / "bunny16.sfz")]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_rank1_bunny_packs_smaller_at_8_bits_and_unpacks_near_the_runs_surface(bunny_run, capsys):
    root, run = bunny_run
    size16 = (root / "bunny16.sfz").stat().st_size if (root / "bunny16.sfz").exists() else None
    size, chamfer = _pack_and_unpack(root, run, 8, capsys)
    if size16 is not None:
        assert size <= 0.65 * size16, (size, size16)
    assert chamfer <= 0.005, chamfer


def test_eval_of_a_packed_file_on_a_small_run(tmp_path, capsys):
    """`eval SHAPE.sfz --mesh GT` end to end on a tiny sphere fit; without --mesh, one line and exit code 2."""
    from .conftest import sphere_mesh

    mesh = tmp_path / "sphere.ply"
    mesh.write_bytes(sphere_mesh(3).export(file_type="ply"))
    run, packed = tmp_path / "run", tmp_path / "s.sfz"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "IOU_POINTS", 5000)
        patch.setattr(run_module, "SCORE_SURFACE_SAMPLES", 5000)
        assert cli.main(["fit", "--mesh", str(mesh), "--output", str(run), "--width", "32", "--steps", "100",
                         "--batch-size", "1024", "--samples", "10000", "--resolution", "32", "--rank", "2",
                         "--omega", "30", "--lr", "3e-3", "--device", "cpu"]) == 0
        assert cli.main(["pack", str(run), "--output", str(packed)]) == 0
        capsys.readouterr()
        assert cli.main(["eval", str(packed), "--mesh", str(mesh), "--resolution", "32", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    run_metrics = json.loads((run / "metrics.json").read_text())
    # 16-bit codes: the run's field to within rounding, scored on the same point sets.
    printed = re.search(r"\biou ([0-9.e-]+),", out)
    assert out.strip().startswith(str(packed)) and printed and abs(float(printed[1]) - run_metrics["iou"]) < 0.01
    assert cli.main(["eval", str(packed)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--mesh" in err


@pytest.mark.slow
def test_eval_of_a_packed_file_scores_what_unpacks(bunny_run, capsys):
    root, run = bunny_run
    packed = root / "eval16.sfz"
    assert cli.main(["pack", str(run), "--output", str(packed)]) == 0
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "IOU_POINTS", 20_000)
        patch.setattr(run_module, "SCORE_SURFACE_SAMPLES", 20_000)
        from sine_fields.shapes.pack import load_packed
        from sine_fields.shapes.pack_commands import score_packed

        metrics = score_packed(load_packed(packed), "bunny", resolution=128)
        assert cli.main(["eval", str(packed), "--mesh", "bunny", "--resolution", "128", "--device", "cpu"]) == 0
    assert tuple(metrics) == METRIC_KEYS
    run_metrics = json.loads((run / "metrics.json").read_text())
    # float16 weights: the same shape as the run, measured the same way.
    assert abs(metrics["iou"] - run_metrics["iou"]) < 0.01 and abs(metrics["chamfer_l1"] - run_metrics["chamfer_l1"]) < 0.002
    assert f"iou {metrics['iou']:.4g}" in capsys.readouterr().out
    # Without the ground truth: one line, exit code 2.
    assert cli.main(["eval", str(packed)]) == 2
    assert "--mesh" in capsys.readouterr().err
