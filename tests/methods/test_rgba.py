"""methods/rgba.py: the RGBA image of a model that composites onto a fixed background, in closed form, and
what nerfstudio's point-cloud exporter keeps with it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from nerfstudio.model_components.renderers import background_color_override_context
from nerfstudio.plugins.registry import discover_methods

from sine_fields.methods.rgba import StraightAlphaRGBA, straight_rgba

COLOUR = torch.tensor([0.2, 0.6, 0.9])
ALPHA = torch.tensor([[0.0], [0.25], [0.5], [1.0]])


def _composite(background: torch.Tensor) -> torch.Tensor:
    return ALPHA * COLOUR + (1.0 - ALPHA) * background


@pytest.mark.parametrize("background, colour", [("white", torch.ones(3)), ("black", torch.zeros(3)),
                                                 (torch.tensor([0.3, 0.3, 0.1]), torch.tensor([0.3, 0.3, 0.1]))])
def test_a_render_composited_onto_a_known_colour_gives_back_the_fields_colour_and_opacity(background, colour):
    rgba = straight_rgba(_composite(colour), ALPHA, background)
    assert torch.allclose(rgba[..., 3:], ALPHA)
    assert torch.allclose(rgba[1:, :3], COLOUR.expand(3, 3), atol=1e-6)  # where there is any opacity
    assert ((rgba[0, :3] >= 0) & (rgba[0, :3] <= 1)).all()  # a colour that is not there stays a colour


def test_random_background_renders_are_premultiplied_and_accumulation_may_lack_its_channel_axis():
    """Outside training nerfstudio renders a ``random`` background as black (no compositing)."""
    image = (ALPHA * COLOUR).reshape(2, 2, 3)
    rgba = straight_rgba(image, ALPHA.reshape(2, 2), "random")
    assert rgba.shape == (2, 2, 4)
    assert torch.allclose(rgba.reshape(4, 4)[1:], torch.cat([COLOUR.expand(3, 3), ALPHA[1:]], dim=-1), atol=1e-6)


def _lite_model():
    methods, _ = discover_methods()
    config = copy.deepcopy(methods["sine-nerf-lite"]).pipeline.model
    config.precision = "float32"
    from sine_fields.methods.common import model_in_unit_box

    return model_in_unit_box(config, num_train_data=4)


def test_every_method_of_ours_gives_the_rendered_opacity_as_alpha():
    """Each registered model takes the mixin; nerfstudio's own would give alpha 1 on a white background."""
    methods, _ = discover_methods()
    for name in ("sine-nerf", "lowrank-nerf", "sine-nerf-lite", "lowrank-nerf-lite", "sine-nerfacto"):
        model_class = methods[name].pipeline.model._target
        assert issubclass(model_class, StraightAlphaRGBA), name
        assert model_class.get_rgba_image is StraightAlphaRGBA.get_rgba_image, name


def test_a_lite_render_gives_its_opacity_as_alpha_and_the_override_background_is_taken_out():
    model = _lite_model()
    outputs = {"rgb": _composite(torch.ones(3)), "accumulation": ALPHA}
    assert torch.allclose(model.get_rgba_image(outputs)[..., 3:], ALPHA)
    with background_color_override_context(torch.tensor([0.0, 1.0, 0.0])):  # what the viewer may render with
        rgba = model.get_rgba_image({"rgb": _composite(torch.tensor([0.0, 1.0, 0.0])), "accumulation": ALPHA})
    assert torch.allclose(rgba[1:, :3], COLOUR.expand(3, 3), atol=1e-6)


def test_last_sample_background_keeps_nerfstudios_rgba():
    """A ray's own last colour cannot be taken out of the render: nerfstudio's alpha-1 image stays."""
    model = _lite_model()
    model.renderer_rgb.background_color = "last_sample"
    rgba = model.get_rgba_image({"rgb": _composite(torch.ones(3)), "accumulation": ALPHA})
    assert torch.equal(rgba[..., 3:], torch.ones(4, 1))


def test_the_point_cloud_exporter_keeps_only_rays_that_hit_matter(monkeypatch):
    """nerfstudio's generate_point_cloud on a lite model whose grid and field hold a ball of radius 0.5: every
    point it keeps lies on the ball (before, each background ray gave a point at its far end, outside the box)."""
    from types import SimpleNamespace

    from nerfstudio.cameras.rays import RayBundle
    from nerfstudio.exporter.exporter_utils import generate_point_cloud
    from nerfstudio.field_components.field_heads import FieldHeadNames

    model = _lite_model()
    model.eval()
    ball = lambda p: (p.norm(dim=-1, keepdim=True) < 0.5).float() * 200.0  # noqa: E731
    model.density_grid.update(ball)
    monkeypatch.setattr(model, "evaluate_field", lambda s: {
        FieldHeadNames.DENSITY: ball(s.frustums.get_positions()),
        FieldHeadNames.RGB: torch.full_like(s.frustums.get_positions(), 0.5)})
    generator = torch.Generator().manual_seed(0)

    def next_train(step):
        # rays from a camera at x = 4 towards points of the plane x = 0 in [-1.5, 1.5]^2: a third hit the ball
        target = torch.cat([torch.zeros(256, 1), torch.rand(256, 2, generator=generator) * 3.0 - 1.5], dim=-1)
        origins = torch.tensor([[4.0, 0.0, 0.0]]).expand(256, 3)
        directions = torch.nn.functional.normalize(target - origins, dim=-1)
        bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(256, 1),
                           camera_indices=torch.zeros(256, 1, dtype=torch.long))
        return bundle, {}

    pipeline = SimpleNamespace(model=model, datamanager=SimpleNamespace(next_train=next_train))
    cloud = generate_point_cloud(pipeline, num_points=200, remove_outliers=False, estimate_normals=False)
    radii = torch.from_numpy(np.asarray(cloud.points)).norm(dim=-1)
    # on the ball: a grazing ray's median depth lies a little inside it, never outside
    assert len(radii) >= 200 and radii.max() < 0.51 and radii.min() > 0.3 and (radii - 0.5).abs().median() < 0.01
