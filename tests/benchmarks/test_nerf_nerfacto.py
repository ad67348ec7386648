"""benchmarks/nerf_nerfacto.py: the parameter split of sine-nerfacto and its dense twin, against closed forms."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("nerfstudio")

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_nerf_nerfacto_under_test", ROOT / "benchmarks" / "nerf_nerfacto.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build(linear):
    from nerfstudio.data.scene_box import SceneBox

    from sine_fields.methods.sine_nerfacto import SineNerfactoModelConfig

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return SineNerfactoModelConfig(linear=linear, rank=4).setup(scene_box=box, num_train_data=4, metadata={})


def linear_params(shapes, rank=None):
    """Weights + biases of layers (in, out): dense, or rank-k U V (k (in + out)) where k fits."""
    total = 0
    for fan_in, fan_out in shapes:
        factorised = rank is not None and rank <= min(fan_in, fan_out)
        total += (rank * (fan_in + fan_out) if factorised else fan_in * fan_out) + fan_out
    return total


def test_parameter_split_closed_form():
    bench = load_benchmark()
    dense, sine = bench.parameter_split(build("dense")), bench.parameter_split(build("sine"))
    # nerfacto's field MLPs: base 32 -> 64 -> 16 (hash features to density + 15 geometry features);
    # head (16 SH direction + 15 geometry + 32 appearance = 63) -> 64 -> 64 -> 3.
    layers = [(32, 64), (64, 16), (63, 64), (64, 64), (64, 3)]
    assert dense["field_mlps"] == linear_params(layers)
    assert sine["field_mlps"] == linear_params(layers, rank=4)  # the 64 -> 3 layer stays dense (k > 3)
    for split in (dense, sine):
        assert split["hash_grids"] + split["field_mlps"] + split["other"] == split["total"]
    assert dense["hash_grids"] == sine["hash_grids"] and dense["other"] == sine["other"]
    # the claim the docs make: the grids hold nearly everything, so factorising the MLPs cannot matter
    assert dense["field_mlps"] < 0.001 * dense["total"]
