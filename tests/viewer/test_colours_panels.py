"""Colour maps and the metrics panel's text."""

import numpy as np
import pytest

from sine_fields.viewer.colours import colour_bar_image, error_colours, field_colours, to_rgb
from sine_fields.viewer.panels import flatten_metrics, format_value, metrics_markdown


def test_error_colours_span_the_map_and_saturate_at_vmax():
    colours = error_colours(np.array([0.0, 0.01, 0.02, 0.5]), vmax=0.02)
    assert colours.dtype == np.uint8 and colours.shape == (4, 3)
    np.testing.assert_array_equal(colours[0], to_rgb(0.0, "viridis"))
    np.testing.assert_array_equal(colours[2], colours[3])  # above vmax: the top colour
    assert not np.array_equal(colours[0], colours[1]) and not np.array_equal(colours[1], colours[2])
    with pytest.raises(ValueError):
        error_colours(np.zeros(2), vmax=0.0)


@pytest.mark.parametrize("target,level,inside,outside", [("occupancy", 0.5, 0.9, 0.1), ("sdf", 0.0, -0.05, 0.05)])
def test_field_colours_white_at_level_blue_inside_red_outside(target, level, inside, outside):
    at, inner, outer = field_colours(np.array([level, inside, outside]), target, level, half_range=0.1 if target == "sdf" else 0.5)
    assert at.min() > 230  # RdBu's middle is near white
    assert inner[2] > inner[0] and outer[0] > outer[2]


def test_colour_bar_runs_from_low_to_high():
    bar = colour_bar_image(width=64, height=4)
    assert bar.shape == (4, 64, 3)
    np.testing.assert_array_equal(bar[0, 0], to_rgb(0.0, "viridis"))
    np.testing.assert_array_equal(bar[0, -1], to_rgb(1.0, "viridis"))


def test_format_value():
    assert format_value(2817) == "2,817"
    assert format_value(0.90812) == "0.9081"
    assert format_value(4.741e-05) == "4.741e-05"
    assert format_value(0.0) == "0.0000"
    assert format_value("cpu") == "cpu"


def test_metrics_markdown_lists_nested_metrics_and_parameters():
    metrics = {"iou": 0.95, "timings": {"fit_seconds": 1.5, "device": "cpu"}, "losses": [1, 2]}
    assert list(flatten_metrics(metrics)) == [("iou", 0.95), ("timings.fit_seconds", 1.5), ("timings.device", "cpu")]
    text = metrics_markdown("run-a", 2817, {"linear": "sine", "rank": None}, metrics, note="shown: x")
    assert "| parameters | 2,817 |" in text and "| iou | 0.9500 |" in text and "| timings.device | cpu |" in text
    assert "rank" not in text and "losses" not in text and text.rstrip().endswith("shown: x")
