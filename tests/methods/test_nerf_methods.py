"""The nerfstudio methods: registration, parameter counts, a few-iteration CPU train of every method
this package registers, and checkpoint reload through nerfstudio's own loader (weights-only)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.fields.vanilla_nerf_field import NeRFField
from nerfstudio.plugins.registry import discover_methods
from nerfstudio.plugins.types import MethodSpecification

from sine_fields.data.scenes import RenderOptions, render_scene
from sine_fields.methods import config as entry_module
from sine_fields.methods.common import _numpy_globals as checkpoint_globals
from sine_fields.methods.common import alexnet_weights_path, factorise_mlps

# Every method this package registers: the train test below runs all of them (no list to forget).
OURS = sorted(ep.name for ep in entry_points(group="nerfstudio.method_configs") if ep.value.startswith("sine_fields."))


def test_entry_points_register_the_five_methods():
    assert OURS == ["lowrank-nerf", "lowrank-nerf-lite", "sine-nerf", "sine-nerf-lite", "sine-nerfacto"]
    methods, descriptions = discover_methods()
    for name in OURS:
        config = methods[name]
        assert config.method_name == name, "ns-train lists a method under its config's method_name"
        assert descriptions[name]
        assert config.vis != "wandb"  # needs an account
        assert config.viewer.websocket_host == "127.0.0.1"
        assert config.machine.device_type in ("cuda", "cpu", "mps")


@pytest.mark.parametrize("sine_name, lowrank_name", [("sine-nerf", "lowrank-nerf"), ("sine-nerf-lite", "lowrank-nerf-lite")])
def test_variants_differ_only_in_their_layers(sine_name, lowrank_name):
    methods, _ = discover_methods()
    sine, lowrank = methods[sine_name], methods[lowrank_name]
    assert (sine.pipeline.model.linear, lowrank.pipeline.model.linear) == ("sine", "lowrank")
    different = {k for k in vars(sine.pipeline.model) if getattr(sine.pipeline.model, k) != getattr(lowrank.pipeline.model, k)}
    assert different == {"linear"}
    # the whole recipe (rays, optimiser, schedule, iterations) is shared too
    assert sine.pipeline.datamanager == lowrank.pipeline.datamanager
    assert sine.optimizers == lowrank.optimizers and sine.max_num_iterations == lowrank.max_num_iterations


def test_nerf_and_nerfacto_share_one_definition_of_the_layer_options():
    from dataclasses import fields

    from sine_fields.methods.common import FactorisedMLPOptions
    from sine_fields.methods.sine_nerf import SineNeRFModelConfig
    from sine_fields.methods.sine_nerfacto import SineNerfactoModelConfig

    shared = {f.name for f in fields(FactorisedMLPOptions)}
    assert shared == {"linear", "rank", "omega", "factorise"}
    for config in (SineNeRFModelConfig, SineNerfactoModelConfig):
        assert issubclass(config, FactorisedMLPOptions) and shared <= {f.name for f in fields(config)}
    # the only per-model difference: nerfacto's MLPs are 64 wide, so its default rank is 4
    assert (SineNeRFModelConfig().rank, SineNerfactoModelConfig().rank) == (5, 4)


def test_split_factors_u_takes_each_rank_k_layers_u_and_leaves_the_rest_in_order():
    from sine_fields.layers import LowRankLinear, SineLowRankLinear
    from sine_fields.methods.common import split_factors_u

    sine, lowrank, dense = SineLowRankLinear(8, 6, rank=2), LowRankLinear(6, 4, rank=2), torch.nn.Linear(4, 2)
    rest, factors_u = split_factors_u(torch.nn.Sequential(sine, lowrank, dense))
    assert [id(p) for p in factors_u] == [id(sine.U), id(lowrank.U)]
    expected = [sine.V, sine.bias, lowrank.V, lowrank.bias, dense.weight, dense.bias]
    assert [id(p) for p in rest] == [id(p) for p in expected]
    assert split_factors_u(dense) == ([dense.weight, dense.bias], [])


@pytest.mark.parametrize("linear", ["sine", "lowrank", "dense"])
def test_lite_u_factors_learn_at_the_recipes_multiple_of_the_fields_rate_through_the_schedule(linear):
    from nerfstudio.engine.optimizers import Optimizers

    from sine_fields.methods.sine_nerf_lite import FACTORS_U_LR_SCALE

    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"])
    config.pipeline.model.linear = linear
    model = _build_model(config)
    groups = model.get_param_groups()
    trained = [p for group in groups.values() for p in group]
    assert sorted(map(id, trained)) == sorted(id(p) for p in model.field.parameters())  # each field parameter once
    if linear == "dense":  # nothing to split: one group, and the configured factors_u optimiser is unused
        assert list(groups) == ["fields"]
        return
    assert [p.shape[1] for p in groups["factors_u"]] == [5] * 5  # the U (out x k) of the five layers
    optimizers = Optimizers(config.optimizers, groups)
    for step in range(3):
        rates = {name: o.param_groups[0]["lr"] for name, o in optimizers.optimizers.items()}
        assert rates["factors_u"] == pytest.approx(FACTORS_U_LR_SCALE * rates["fields"])
        optimizers.scheduler_step_all(step)
    assert rates["fields"] < 5e-3  # the schedule decays both


@pytest.mark.parametrize("method", ["sine-nerf-lite", "lowrank-nerf-lite"])
def test_lite_schedules_span_the_run_length_asked_on_the_command_line(method):
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    def schedules(*args):
        config = tyro.cli(AnnotatedBaseConfigUnion, args=[method, *args])
        return {name: group["scheduler"].max_steps for name, group in config.optimizers.items()}

    assert schedules() == {"fields": 2300, "factors_u": 2300}
    assert schedules("--max-num-iterations", "3000") == {"fields": 3000, "factors_u": 3000}
    kept = schedules("--max-num-iterations", "3000", "--schedules-follow-iterations", "False",
                     "--optimizers.fields.scheduler.max-steps", "100")
    assert kept == {"fields": 100, "factors_u": 2300}
    assert schedules() == {"fields": 2300, "factors_u": 2300}  # the registered default was not changed


def _build_model(config):
    """The model of a trainer config, on the box [-1, 1]^3."""
    return _setup_model(config.pipeline.model)


def _setup_model(model_config):
    from sine_fields.methods.common import model_in_unit_box

    return model_in_unit_box(model_config, num_train_data=4)


# The factorised layers per field (coarse and fine alike) that docs/radiance-fields.md states: vanilla
# NeRF's 8 base + 2 head MLP layers, the lite field's 4 base + 1 head.
LAYERS_PER_FIELD = {"sine-nerf": 10, "lowrank-nerf": 10, "sine-nerf-lite": 5, "lowrank-nerf-lite": 5}


@pytest.mark.parametrize("name", sorted(LAYERS_PER_FIELD))
def test_registered_models_hold_the_stated_factorised_layers(name):
    from sine_fields.layers import LowRankLinear, SineLowRankLinear

    methods, _ = discover_methods()
    model = _build_model(methods[name])
    kind, other = (SineLowRankLinear, LowRankLinear) if name.startswith("sine") else (LowRankLinear, SineLowRankLinear)
    # vanilla NeRF renders a coarse and a fine field; the lite model one field that a density grid samples
    field_names = ("field",) if name.endswith("-lite") else ("field_coarse", "field_fine")
    for field_name in field_names:
        field = getattr(model, field_name)
        assert sum(isinstance(m, kind) for m in field.modules()) == LAYERS_PER_FIELD[name]
        assert not any(isinstance(m, other) for m in field.modules())
        # only the 1-output density and 3-output RGB heads stay dense
        dense = [m for m in field.modules() if type(m) is torch.nn.Linear]
        assert sorted(m.out_features for m in dense) == [1, 3]


def test_lite_recipe_is_about_five_percent_of_its_dense_twin():
    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"])
    sine_model = _build_model(config)
    sine = sum(p.numel() for p in sine_model.parameters())
    assert sine == sum(p.numel() for p in sine_model.field.parameters())  # the grid is a buffer, not trained
    config.pipeline.model.linear = "dense"
    dense = sum(p.numel() for p in _build_model(config).parameters())
    # closed form (docs/radiance-fields.md): position 3 + 3 x 2 x 5 = 33 inputs, direction 3 + 3 x 2 x 2 = 15;
    # base 33 -> 256 -> 256 -> 256 -> 256, head 256 + 15 -> 128, dense heads 256 -> 1 and 128 -> 3
    layers = [(33, 256), (256, 256), (256, 256), (256, 256), (271, 128)]
    heads = (256 + 1) + (128 * 3 + 3)
    assert dense == sum(i * o + o for i, o in layers) + heads == 241_540
    assert sine == sum(5 * (i + o) + o for i, o in layers) + heads == 12_916
    assert 0.04 <= sine / dense <= 0.065


def _ray_along_x():
    """One ray from x = 4 towards the origin: it enters the box [-1, 1]^3 at t = 3 and leaves at t = 5."""
    from nerfstudio.cameras.rays import RayBundle

    return RayBundle(
        origins=torch.tensor([[4.0, 0.0, 0.0]]), directions=torch.tensor([[-1.0, 0.0, 0.0]]),
        pixel_area=torch.ones(1, 1), camera_indices=torch.zeros(1, 1, dtype=torch.long),
    )


def test_lite_density_is_a_shifted_softplus_and_samples_stay_in_the_scene_box():
    from nerfstudio.field_components.field_heads import FieldHeadNames
    from nerfstudio.model_components.scene_colliders import AABBBoxCollider

    methods, _ = discover_methods()
    model = _build_model(methods["sine-nerf-lite"])
    activation = model.field.field_output_density.activation
    raw = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    # softplus(raw - 1) = log(1 + e^(raw - 1)), mip-NeRF's density
    assert torch.allclose(activation(raw), torch.log1p(torch.exp(raw - 1.0)))
    assert isinstance(model.collider, AABBBoxCollider)
    bundle = model.collider(_ray_along_x())
    assert torch.allclose(bundle.nears, torch.tensor([[3.0]]), atol=1e-4)
    assert torch.allclose(bundle.fars, torch.tensor([[5.0]]), atol=1e-4)
    model.train()
    # before its first refresh the grid holds nothing: the ray is an empty one, sampled sparsely
    [(rays, samples)] = model.sample(bundle)
    assert rays.tolist() == [True]
    assert samples.frustums.starts.shape == (1, model.config.empty_ray_samples, 1)
    model.density_grid.update(model.field.density_fn)  # the untrained field: softplus(raw - 1) > 0 everywhere
    [(rays, samples)] = model.sample(bundle)
    assert samples.frustums.starts.shape == (1, model.config.num_samples, 1)
    assert samples.frustums.starts.min() >= 3.0 - 1e-4 and samples.frustums.ends.max() <= 5.0 + 1e-4
    assert FieldHeadNames.DENSITY in model.field.forward(samples)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("uniform_share", 1.0, "uniform-share must lie in [0, 1)"),
        ("empty_ray_samples", 0, "num-samples and empty-ray-samples must be at least 1"),
        ("empty_ray_opacity", -0.1, "empty-ray-opacity must lie in [0, 1)"),
        ("grid_update_every", 0, "grid-update-every must be at least 1"),
        ("grid_refresh_parts", 0, "density grid parts must lie in [1, resolution^3]"),
        ("grid_decay", 2.0, "density grid decay must lie in [0, 1]"),
    ],
)
def test_lite_config_refuses_out_of_range_options_when_built(option, value, message):
    from sine_fields.methods.sine_nerf_lite import SineNeRFLiteModelConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        SineNeRFLiteModelConfig(**{option: value})


def test_a_bad_lite_flag_is_one_error_from_ns_train_not_a_traceback(tmp_path):
    """tyro builds the model config from the flags: the range check runs there, before any data is read."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ns-train"), "sine-nerf-lite", "--data", str(tmp_path / "none"),
         "--machine.device-type", "cpu", "--pipeline.model.empty-ray-samples", "0"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 2
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", done.stderr).split())  # rich's box, wrapped at any width
    assert "empty-ray-samples must be at least 1, got 32, 0" in text
    assert "Traceback" not in done.stderr


def test_lite_field_in_bfloat16_renders_float32_close_to_its_float32_self():
    """``--pipeline.model.precision bfloat16`` rounds the field's products only: the same weights give
    float32 outputs within bfloat16's rounding of the float32 ones, and float32 gradients."""
    from nerfstudio.field_components.field_heads import FieldHeadNames

    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"]).pipeline.model
    config.precision = "float32"
    torch.manual_seed(0)
    model = _setup_model(config)
    model.train()
    [(_, samples)] = model.sample(model.collider(_ray_along_x()))
    full = model.evaluate_field(samples)
    model.config.precision = "bfloat16"
    model._field_dtype.clear()
    low = model.evaluate_field(samples)
    for name in (FieldHeadNames.DENSITY, FieldHeadNames.RGB):
        assert low[name].dtype is torch.float32
        assert torch.allclose(low[name], full[name], rtol=0.05, atol=0.01)
    assert not torch.equal(low[FieldHeadNames.RGB], full[FieldHeadNames.RGB])  # the products really were rounded
    low[FieldHeadNames.RGB].sum().backward()
    assert all(p.grad is None or p.grad.dtype is torch.float32 for p in model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("uniform_share", [0.05, 0.2])
def test_lite_samples_go_to_the_first_surface_the_grid_holds(uniform_share):
    """A grid holding a solid ball of radius 0.5: along the x axis from x = 4 the first surface is at
    t = 3.5. Apart from the uniform share, every sample lies within a grid cell or two of it, none
    behind the ball's far side, and a ray that misses the ball is sampled uniformly."""
    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"]).pipeline.model
    config.uniform_share = uniform_share
    config.num_samples = 200  # many samples: the shares below are then close to their expectations
    model = _setup_model(config)
    model.train()
    model.density_grid.update(lambda p: (p.norm(dim=-1, keepdim=True) < 0.5).float() * 100.0)
    torch.manual_seed(0)
    [(_, samples)] = model.sample(model.collider(_ray_along_x()))
    mid = ((samples.frustums.starts + samples.frustums.ends) / 2).flatten()
    cell = 2.0 / config.grid_resolution
    near_surface = ((mid - 3.5).abs() < 2 * cell).float().mean().item()
    assert near_surface >= 1.0 - uniform_share - 0.05
    assert near_surface <= 1.0 - uniform_share + 0.05 + 4 * cell / 2.0  # the uniform share is really spread
    # a ray that passes beside the ball: nothing to find, samples spread over the whole chord
    from nerfstudio.cameras.rays import RayBundle

    beside = RayBundle(
        origins=torch.tensor([[4.0, 0.8, 0.0]]), directions=torch.tensor([[-1.0, 0.0, 0.0]]),
        pixel_area=torch.ones(1, 1), camera_indices=torch.zeros(1, 1, dtype=torch.long),
    )
    [(_, beside_samples)] = model.sample(model.collider(beside))
    spread = beside_samples.frustums
    # stratified: one sample in each of empty_ray_samples equal bins of the chord [3, 5]
    assert spread.starts.shape == (1, config.empty_ray_samples, 1)
    bins = torch.linspace(3.0, 5.0, config.empty_ray_samples + 1)
    middle = ((spread.starts + spread.ends) / 2).flatten()
    assert ((middle >= bins[:-1] - 1e-4) & (middle <= bins[1:] + 1e-4)).all()


def _ball_model():
    """A lite model whose grid holds a solid ball of radius 0.5 (density 100) at the origin."""
    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"]).pipeline.model
    config.precision = "float32"
    torch.manual_seed(0)
    model = _setup_model(config)
    model.density_grid.update(lambda p: (p.norm(dim=-1, keepdim=True) < 0.5).float() * 100.0)
    return model


def _rays(origins):
    from nerfstudio.cameras.rays import RayBundle

    n = len(origins)
    return RayBundle(
        origins=torch.tensor(origins), directions=torch.tensor([[-1.0, 0.0, 0.0]] * n),
        pixel_area=torch.ones(n, 1), camera_indices=torch.zeros(n, 1, dtype=torch.long),
    )


def _samples_along(origin, bins):
    """Samples of one ray from ``origin`` along -x, between consecutive ``bins`` (which may go backwards)."""
    bins = torch.tensor(bins)[None, :, None]
    return _rays([origin]).get_ray_samples(bin_starts=bins[:, :-1], bin_ends=bins[:, 1:])


def _lite_model_with_density(monkeypatch, density_of_position):
    """A lite model whose field is replaced by a closed form: ``scale * density_of_position(p)``, grey."""
    from nerfstudio.field_components.field_heads import FieldHeadNames

    model = _ball_model()
    scale = torch.nn.Parameter(torch.tensor(1.0))

    def evaluate_field(ray_samples):
        positions = ray_samples.frustums.get_positions()
        return {FieldHeadNames.DENSITY: scale * density_of_position(positions),
                FieldHeadNames.RGB: torch.full_like(positions, 0.5)}

    monkeypatch.setattr(model, "evaluate_field", evaluate_field)
    return model, scale


def test_lite_samples_outside_the_scene_box_are_empty_even_with_negative_lengths(monkeypatch):
    """A ray that misses the box [-1, 1]^3 (here y = -2) is sampled where the collider puts it, hundreds of
    units away, where float32 rounds the samples' lengths below 0. A density that grows as |p|^4 there
    (8.5e10 at 540) times a negative length overflowed the transmittance and made the backward pass NaN;
    outside the box the scene is empty: no opacity, the background's colour, finite gradients."""
    model, scale = _lite_model_with_density(monkeypatch, lambda p: p.norm(dim=-1, keepdim=True) ** 4)
    model.train()
    t = 540.0
    samples = _samples_along([4.0, -2.0, 0.0], [t, t + 0.05, t + 0.05 - 6.1e-5, t + 0.1])
    assert (samples.deltas < 0).any()  # the case rounding makes
    outputs = model.render(samples)
    assert outputs["accumulation"].item() == 0.0
    assert torch.equal(outputs["rgb"], torch.ones(1, 3))  # the white background
    (outputs["rgb"].sum() + outputs["accumulation"].sum()).backward()
    assert torch.isfinite(scale.grad) and scale.grad.item() == 0.0


def test_lite_rendering_inside_the_box_is_the_closed_form_quadrature(monkeypatch):
    """Density x^2 along the x axis from x = 1 to -1 in 8 equal steps: opacity 1 - exp(-sum(x_i^2 * 0.25))
    over the steps' midpoints x_i (0.65625, against the integral's 2/3); the box test leaves it untouched."""
    model, _ = _lite_model_with_density(monkeypatch, lambda p: p[..., :1] ** 2)
    model.eval()
    samples = _samples_along([4.0, 0.0, 0.0], torch.linspace(3.0, 5.0, 9).tolist())
    with torch.no_grad():
        outputs = model.render(samples)
    midpoints = torch.linspace(0.875, -0.875, 8)
    expected = 1.0 - torch.exp(-(midpoints**2 * 0.25).sum())
    assert torch.allclose(outputs["accumulation"], expected.reshape(1, 1), atol=1e-6)
    # grey (0.5) over the opacity, white behind the rest
    assert torch.allclose(outputs["rgb"], (0.5 * expected + (1.0 - expected)).expand(1, 3), atol=1e-6)


def test_lite_rays_through_matter_get_full_samples_and_empty_rays_few():
    model = _ball_model()
    model.eval()
    # through the ball, beside it, through it off-centre, beside it on the other side
    bundle = model.collider(_rays([[4.0, 0.0, 0.0], [4.0, 0.8, 0.0], [4.0, 0.0, 0.3], [4.0, -0.9, 0.2]]))
    groups = model.sample(bundle)
    by_count = {samples.frustums.starts.shape[1]: rays.tolist() for rays, samples in groups}
    assert by_count == {
        model.config.num_samples: [True, False, True, False],
        model.config.empty_ray_samples: [False, True, False, True],
    }


def test_lite_outputs_of_a_mixed_bundle_are_each_rays_own_in_the_bundles_order():
    """Busy and empty rays are rendered in two groups and put back: every output row must be what
    that ray renders alone (eval mode: deterministic samples)."""
    model = _ball_model()
    model.eval()
    origins = [[4.0, 0.8, 0.0], [4.0, 0.0, 0.0], [4.0, -0.9, 0.2], [4.0, 0.1, 0.3]]
    with torch.no_grad():
        together = model.get_outputs(model.collider(_rays(origins)))
        for i, origin in enumerate(origins):
            alone = model.get_outputs(model.collider(_rays([origin])))
            for name in ("rgb", "accumulation", "depth"):
                assert together[name].shape[0] == len(origins)
                assert torch.allclose(together[name][i], alone[name][0], atol=1e-5), (name, i)


def test_a_broken_method_does_not_break_ns_train(monkeypatch):
    # Make our model module fail at import, as a broken optional dependency would.
    monkeypatch.setitem(sys.modules, "sine_fields.methods.sine_nerf", None)
    broken = entry_module._spec("sine-nerf")
    assert not isinstance(broken, MethodSpecification)
    assert "unavailable" in repr(broken) and "sine_fields.methods.sine_nerf" in repr(broken)
    monkeypatch.setattr(entry_module, "sine_nerf", broken)
    methods, _ = discover_methods()  # nerfstudio warns about the broken one and goes on
    assert "sine-nerf" not in methods
    assert "sine-nerfacto" in methods and "lowrank-nerf" in methods


def _nerf_field() -> NeRFField:
    # vanilla-nerf's field, as nerfstudio builds it
    return NeRFField(
        position_encoding=NeRFEncoding(in_dim=3, num_frequencies=10, min_freq_exp=0.0, max_freq_exp=8.0, include_input=True),
        direction_encoding=NeRFEncoding(in_dim=3, num_frequencies=4, min_freq_exp=0.0, max_freq_exp=4.0, include_input=True),
    )


def _expected_count(rank: int, factorise: str) -> int:
    """Closed-form parameter count of the field at ``rank`` (rank 0 = dense)."""
    # base MLP: 63 -> 256, 256 x3, skip (256 + 63) -> 256, 256 x3; head MLP: (256 + 27) -> 128, 128 -> 128
    layers = [(63, 256)] + [(256, 256)] * 3 + [(319, 256)] + [(256, 256)] * 3 + [(283, 128), (128, 128)]
    total = 256 + 1 + 128 * 3 + 3  # density head 256 -> 1, RGB head 128 -> 3, both dense
    for fan_in, fan_out in layers:
        low = rank > 0 and (factorise == "all" or fan_in == fan_out)
        total += (rank * (fan_in + fan_out) if low else fan_in * fan_out) + fan_out
    return total


@pytest.mark.parametrize("factorise", ["all", "hidden"])
@pytest.mark.parametrize("rank", [1, 5, 16])
def test_parameter_counts_sine_equals_lowrank(rank, factorise):
    counts = {}
    for linear in ("dense", "lowrank", "sine"):
        field = _nerf_field()
        summary = factorise_mlps(field, ["mlp_base", "mlp_head"], linear, rank, 100.0, factorise)
        counts[linear] = sum(p.numel() for p in field.parameters())
        assert summary.parameters_after == counts[linear]
    assert counts["dense"] == _expected_count(0, factorise) == 546_564
    assert counts["sine"] == counts["lowrank"] == _expected_count(rank, factorise)


def test_rank5_all_layers_is_the_papers_five_percent_budget():
    field = _nerf_field()
    summary = factorise_mlps(field, ["mlp_base", "mlp_head"], "sine", 5, 100.0, "all")
    assert 0.04 < summary.parameters_after / summary.parameters_before < 0.06
    assert len(summary.changed) == 10 and not summary.skipped


def test_scheduler_checkpoints_load_weights_only_with_the_narrow_allow_list(tmp_path):
    # nerfstudio's schedulers compute learning rates with numpy; their state ends up in checkpoints.
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    from sine_fields.methods.common import allow_checkpoint_globals

    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([parameter], lr=1e-2)
    scheduler = ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=100).setup().get_scheduler(optimizer, 1e-2)
    optimizer.step()
    scheduler.step()
    path = tmp_path / "step.ckpt"
    torch.save({"schedulers": {"fields": scheduler.state_dict()}, "optimizers": optimizer.state_dict()}, path)
    # The allow-list is process-wide and other tests (any model build) fill it: start from an empty one,
    # so that the check sees what the checkpoint itself needs, and put the previous list back after.
    previous = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        assert needed and needed <= {f"{g.__module__}.{g.__qualname__}" for g in checkpoint_globals()}
        with pytest.raises(Exception, match="Weights only load failed"):
            torch.load(path, weights_only=True)
        allow_checkpoint_globals()
        loaded = torch.load(path, weights_only=True)
        assert loaded["schedulers"]["fields"]["_last_lr"] == scheduler.state_dict()["_last_lr"]
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(previous)


# --- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A tiny rendered scene (coloured sphere, 16 px, 6 views): no network needed."""
    folder = tmp_path_factory.mktemp("scene")
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    sphere.visual.vertex_colors = np.tile([220, 120, 40, 255], (len(sphere.vertices), 1))
    sphere.export(folder / "sphere.ply")
    render_scene(str(folder / "sphere.ply"), folder / "data", RenderOptions(views=6, resolution=16, eval_every=3, up="z"))
    return folder / "data"


def tiny(config, data: Path, output: Path):
    """The registered config, shrunk for a seconds-long CPU run (the structure is unchanged)."""
    config = copy.deepcopy(config)
    config.pipeline.datamanager.data = data
    config.output_dir = output
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.max_num_iterations = 3
    config.steps_per_save = 1000
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 1000
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    config.pipeline.datamanager.eval_num_rays_per_batch = 64
    model = config.pipeline.model
    model.eval_num_rays_per_chunk = 256
    if hasattr(model, "num_coarse_samples"):
        model.num_coarse_samples = model.num_importance_samples = 8
    elif hasattr(model, "grid_resolution"):  # the lite model: few samples, a small grid refreshed every step
        model.num_samples, model.num_candidates = 8, 16
        model.grid_resolution, model.grid_update_every = 8, 1
    else:  # nerfacto: tiny hash grids and few samples
        model.num_proposal_samples_per_ray = (8, 8)
        model.num_nerf_samples_per_ray = 8
        model.log2_hashmap_size, model.num_levels, model.max_res = 10, 4, 64
        model.proposal_net_args_list = [
            {"hidden_dim": 16, "log2_hashmap_size": 10, "num_levels": 4, "max_res": 32, "use_linear": False}
        ] * 2
    config.set_timestamp()
    return config


@pytest.mark.parametrize("name", OURS)
def test_few_iteration_cpu_train_and_checkpoint_reload(name, scene, tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    methods, _ = discover_methods()
    config = tiny(methods[name], scene, tmp_path)
    config.save_config()
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    for step in range(config.max_num_iterations):
        loss, _, _ = trainer.train_iteration(step)
        assert torch.isfinite(loss), f"{name}: loss {loss} at step {step}"
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert any(".U" in k for k in changed) and any(".V" in k for k in changed), f"{name}: factors did not train"
    trainer.save_checkpoint(config.max_num_iterations - 1)
    checkpoint = next((config.get_base_dir() / "nerfstudio_models").glob("*.ckpt"))

    # nerfstudio's own loaders call torch.load with torch's default (weights-only since 2.6): what the
    # checkpoint needs beyond tensors is exactly what our models allow-list, and it loads
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint))
    assert needed <= {f"{g.__module__}.{g.__qualname__}" for g in checkpoint_globals()}, needed
    torch.load(checkpoint, map_location="cpu", weights_only=True)
    _, pipeline, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="test")
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    trainer.pipeline.eval()
    reference = trainer.pipeline.model.get_outputs_for_camera(camera)
    reloaded = pipeline.model.get_outputs_for_camera(camera)
    key = "rgb" if "rgb" in reloaded else "rgb_fine"
    assert reloaded[key].shape == (16, 16, 3)
    assert torch.allclose(reloaded[key], reference[key], atol=1e-5)

    metrics = pipeline.get_average_eval_image_metrics()
    assert np.isfinite(metrics["psnr"]) and any("ssim" in k for k in metrics)
    # LPIPS is reported exactly when its AlexNet weights are on disk, never as a made-up value
    assert any("lpips" in k for k in metrics) == alexnet_weights_path().exists()

    # ns-export pointcloud and poisson (the quick point-cloud texture) on the same run, in process
    from nerfstudio.scripts.exporter import ExportPointCloud, ExportPoissonMesh

    export = tmp_path / "export"
    common = dict(load_config=config.get_base_dir() / "config.yml", num_points=300, normal_method="open3d",
                  num_rays_per_batch=128)
    ExportPointCloud(output_dir=export, **common).main()
    cloud = trimesh.load(export / "point_cloud.ply")
    assert len(cloud.vertices) >= 300 and np.isfinite(cloud.vertices).all()  # whole ray batches: at least 300
    ExportPoissonMesh(output_dir=export, texture_method="point_cloud", save_point_cloud=False, **common).main()
    assert (export / "poisson_mesh.ply").stat().st_size > 0

    # ns-train --load-dir: resumes from the checkpoint (nerfstudio's torch.load, weights-only default)
    resumed = copy.deepcopy(config)
    resumed.load_dir = checkpoint.parent
    resumed.set_timestamp()
    trainer = resumed.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer._start_step == config.max_num_iterations

