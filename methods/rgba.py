"""RGBA images of a model that composites its renders onto a fixed background colour.

nerfstudio's ``Model.get_rgba_image`` returns the composited image with alpha 1 on every pixel unless the
background is ``random``. Its exporters read that alpha as "the ray hit something": ``ns-export
pointcloud`` and ``ns-export poisson`` keep a ray's depth point where alpha > 0.5, so with alpha 1 every
background ray of a white-background model became a point at the far end of its samples (hundreds of units
away for a ray that misses the scene box), and Poisson reconstruction closed a surface around them (a
Duck mesh scored Chamfer-L1 88 against the ground truth's size 1). ``ns-render`` with the ``rgba`` output
had no transparency for the same reason.

A render composited onto a known colour ``b`` is ``rgb = acc * c + (1 - acc) * b`` with ``c`` the field's
own (straight, not premultiplied) colour and ``acc`` the rendered opacity, so both are recovered exactly:
alpha is ``acc`` and ``c = (rgb - (1 - acc) * b) / acc``.
"""

from __future__ import annotations

from typing import Dict

import torch
from nerfstudio.model_components import renderers
from nerfstudio.model_components.renderers import RGBRenderer

__all__ = ["StraightAlphaRGBA", "straight_rgba"]

# a pixel's colour is 0 / 0 where nothing is opaque: dividing by at least this and clamping to [0, 1] keeps it a
# colour, one that an alpha this small does not show
_MIN_ALPHA = 1e-6


def straight_rgba(rgb: torch.Tensor, accumulation: torch.Tensor, background) -> torch.Tensor:
    """``(..., 4)``: the field's own colour and the opacity, from a render ``rgb`` (``(..., 3)``) composited
    onto ``background`` (a colour name or an RGB tensor; ``random``: not composited, as nerfstudio renders
    it outside training) and its ``accumulation`` (``(..., 1)`` or ``(...)``)."""
    alpha = accumulation if accumulation.dim() == rgb.dim() else accumulation.unsqueeze(-1)
    alpha = alpha.clamp(0.0, 1.0)
    if isinstance(background, str) and background == "random":
        premultiplied = rgb
    else:
        colour = RGBRenderer.get_background_color(background, shape=rgb.shape, device=rgb.device)
        premultiplied = rgb - colour * (1.0 - alpha)
    colour_of_field = (premultiplied / alpha.clamp(min=_MIN_ALPHA)).clamp(0.0, 1.0)
    return torch.cat([colour_of_field, alpha], dim=-1)


class StraightAlphaRGBA:
    """Mixin for a nerfstudio ``Model`` with ``renderer_rgb``: ``get_rgba_image`` gives the rendered opacity
    as alpha (see the module's docstring). A ``last_sample`` background (each ray's own last colour) cannot
    be taken back out of the render, so such a model keeps nerfstudio's behaviour."""

    def get_rgba_image(self, outputs: Dict[str, torch.Tensor], output_name: str = "rgb") -> torch.Tensor:
        accumulation_name = output_name.replace("rgb", "accumulation")
        # the viewer and ns-render may render with an override background; the image was composited onto it
        background = renderers.BACKGROUND_COLOR_OVERRIDE
        if background is None:
            background = self.renderer_rgb.background_color  # type: ignore[attr-defined]
        if accumulation_name not in outputs or (isinstance(background, str) and background == "last_sample"):
            return super().get_rgba_image(outputs, output_name)  # type: ignore[misc]
        return straight_rgba(outputs[output_name], outputs[accumulation_name], background)
