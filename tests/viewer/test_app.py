"""The viewer's controls in-process (no browser): every callback path on a real run, on a real viser server."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sine_fields.viewer.app import ShapeViewer, stop_server
from sine_fields.viewer.run_folder import ground_truth_of, load_runs
from sine_fields.viewer.slicing import AXES
from viewer_browser import free_port


@pytest.fixture
def app(fitted_run, tmp_path):
    import viser

    second = tmp_path / "second"
    shutil.copytree(fitted_run, second)
    runs = load_runs([fitted_run, second])
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    viewer = ShapeViewer(server, runs, ground_truth_of(runs[0]), "cpu")
    try:
        viewer.build()
        yield viewer
    finally:
        viewer.close()
        stop_server(server)


def test_slice_follows_axis_and_offset(app):
    ranges = []
    for axis in AXES:
        app.slice_axis.value = axis
        for offset in (0.0, 0.54):
            app.slice_offset.value = offset
            app.update_slice()
            ranges.append(app.slice_legend.content.rsplit("range on the plane ", 1)[1])
    # Through the middle the plane crosses the shape (inside and outside); at the box edge it does not.
    assert len(set(ranges)) == len(ranges)
    app.slice_axis.value, app.slice_offset.value = "z", 0.0
    app.update_slice()
    low, high = map(float, app.slice_legend.content.rsplit("range on the plane ", 1)[1].split(" to "))
    assert low < 0.5 < high


@pytest.mark.parametrize("method", ["coarse-to-fine", "dense"])
def test_re_extract_replaces_the_shown_mesh(app, method):
    before = app.scene.entries[1].mesh
    app.extract_method.value, app.extract_resolution.value, app.extract_level.value = method, "64", 0.5
    app.re_extract()
    assert app.extract_status.content.startswith(f"{app.runs[0].name}: done in"), app.extract_status.content
    after = app.scene.entries[1]
    assert after.mesh is not before and len(after.mesh.faces) > 0 and len(after.distances) == len(after.mesh.vertices)
    assert f"re-extracted at 64³ ({method})" in app.metric_panels[0].content
    assert not app.extract_button.disabled and not app.extract_progress.visible


def test_a_higher_level_shrinks_the_occupancy_surface(app):
    volumes = []
    for level in (0.2, 0.8):
        app.extract_level.value = level
        app.extract_resolution.value = "64"
        app.re_extract()
        volumes.append(abs(app.scene.entries[1].mesh.volume))
    assert volumes[1] < volumes[0]


def test_bad_level_is_reported_not_raised(app):
    app.extract_level.value = 1.5
    app.re_extract()
    assert "probability in (0, 1)" in app.extract_status.content


def test_layout_visibility_and_colouring(app):
    app.scene.set_layout("overlay")
    assert np.allclose([app.scene.offset(i) for i in range(3)], 0)
    app.scene.set_layout("side by side")
    assert len({tuple(app.scene.offset(i)) for i in range(3)}) == 3
    app.scene.set_visible(0, False)
    assert not app.scene.entries[0].visible
    app._set_colouring(False, 0.01)
    assert app.scene.error_max == 0.01 and "0.0100" in app.colour_bar.content
