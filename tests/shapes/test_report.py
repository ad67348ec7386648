import numpy as np
import trimesh

from sine_fields.shapes.report import render_mesh


def test_render_shows_the_mesh_and_blank_for_empty():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    image = render_mesh(sphere, sphere, size=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    covered = (image != 255).any(axis=-1)
    # An orthographic sphere framed at 1.05 x its bounding radius covers ~pi/4 / (1.05*sqrt(3))^2 of the frame.
    assert abs(covered.mean() - np.pi / 4 / (1.05 * np.sqrt(3)) ** 2) < 0.03
    assert covered[32, 32] and not covered[0, 0]
    assert (render_mesh(trimesh.Trimesh(), sphere, size=16) == 255).all()
