"""The density grid that places the lite model's samples: it caches a field's density, interpolates it,
follows a field that changes, and puts the samples at the first surface along a ray."""

from __future__ import annotations

import pytest
import torch

from sine_fields.methods.density_grid import DensityGrid

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def ball(radius: float, inside: float):
    """A density that is ``inside`` within ``radius`` of the origin and 0 outside."""
    return lambda points: (points.norm(dim=-1, keepdim=True) < radius).float() * inside


def test_cell_centres_tile_the_box_in_x_major_order():
    grid = DensityGrid(BOX, resolution=4, decay=0.9)
    centres = grid.cell_points(jitter=False)
    assert centres.shape == (64, 3)
    assert torch.allclose(centres[0], torch.tensor([-0.75, -0.75, -0.75]))
    assert torch.allclose(centres[1], torch.tensor([-0.75, -0.75, -0.25]))  # z fastest
    assert torch.allclose(centres[16], torch.tensor([-0.25, -0.75, -0.75]))  # x slowest
    jittered = grid.cell_points(jitter=True)
    assert ((jittered - centres).abs() <= 0.25 + 1e-6).all()


def test_lookup_reads_the_cached_field_and_respects_the_axis_order():
    grid = DensityGrid(BOX, resolution=16, decay=0.9)
    # a density that depends on x only, linearly: trilinear interpolation reproduces it exactly
    # between cell centres, and any mix-up of the axes would make it depend on y or z instead
    grid.density.copy_(torch.linspace(0, 15, 16)[:, None, None].expand(16, 16, 16))
    points = torch.tensor([[-1 + 1.5 / 8, 0.3, -0.7], [0.0, -0.9, 0.9], [1 - 1 / 16, 0.0, 0.0]])
    expected = torch.tensor([[1.0], [7.5], [15.0]])
    assert torch.allclose(grid(points), expected, atol=1e-4)
    assert grid(points.reshape(3, 1, 3)).shape == (3, 1, 1)


def test_update_copies_then_keeps_the_decayed_maximum():
    grid = DensityGrid(BOX, resolution=8, decay=0.5)
    assert int(grid.updates) == 0
    grid.update(ball(0.5, 10.0))
    assert int(grid.updates) == 1
    centre = grid(torch.zeros(1, 3)).item()
    corner = grid(torch.full((1, 3), 0.9)).item()
    assert centre == pytest.approx(10.0) and corner == 0.0
    # the field empties: the cache halves at every update instead of dropping at once
    grid.update(lambda p: torch.zeros(len(p), 1))
    assert grid(torch.zeros(1, 3)).item() == pytest.approx(5.0)
    grid.update(lambda p: torch.zeros(len(p), 1))
    assert grid(torch.zeros(1, 3)).item() == pytest.approx(2.5)
    # matter appears: seen at once
    grid.update(lambda p: torch.full((len(p), 1), 7.0))
    assert torch.allclose(grid.density, torch.full_like(grid.density, 7.0))


def test_an_update_in_parts_refreshes_each_cell_once_every_parts_updates():
    grid = DensityGrid(BOX, resolution=4, decay=0.5, parts=3)
    grid.update(ball(10.0, 8.0))  # the first update fills every cell
    assert torch.equal(grid.density, torch.full((4, 4, 4), 8.0))
    flat = grid.density.view(-1)
    empty = lambda p: torch.zeros(len(p), 1)  # noqa: E731
    seen = []
    for _ in range(3):
        before = flat.clone()
        grid.update(empty)
        changed = (flat != before).nonzero().flatten()
        assert torch.equal(flat[changed], torch.full((len(changed),), 4.0))  # decayed once: 8 x 0.5
        seen.append(changed)
    # the three updates touched disjoint interleaved thirds that together cover the 64 cells
    assert [len(c) for c in seen] == [22, 21, 21]
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(64))
    assert torch.equal(seen[1], torch.arange(1, 64, 3))
    grid.update(empty)  # the fourth update comes back to the first third
    assert torch.equal(flat[seen[0]], torch.full((22,), 2.0))


def test_grid_travels_in_the_state_dict():
    grid = DensityGrid(BOX, resolution=8, decay=0.9)
    grid.update(ball(0.5, 3.0))
    copy = DensityGrid(BOX, resolution=8, decay=0.9)
    copy.load_state_dict(grid.state_dict())
    assert torch.equal(copy.density, grid.density) and int(copy.updates) == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="resolution"):
        DensityGrid(BOX, resolution=1, decay=0.9)
    with pytest.raises(ValueError, match="decay"):
        DensityGrid(BOX, resolution=8, decay=1.5)
    with pytest.raises(ValueError, match="parts"):
        DensityGrid(BOX, resolution=8, decay=0.9, parts=0)
