import numpy as np
import pytest
import trimesh

from sine_fields.errors import UserError
from sine_fields.io import read_json
from sine_fields.shapes.export import MESH_EXPORT_FORMATS, export_mesh


@pytest.mark.parametrize("suffix", MESH_EXPORT_FORMATS)
def test_round_trip_every_format(tmp_path, suffix):
    mesh = trimesh.creation.box()
    path = export_mesh(mesh.vertices, mesh.faces, tmp_path / f"box{suffix}")
    back = trimesh.load(path, force="mesh")
    assert len(back.faces) == len(mesh.faces)
    assert back.volume == pytest.approx(mesh.volume)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_unsupported_format_and_bad_json_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unsupported mesh format '.xyz'"):
        export_mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), tmp_path / "a.xyz")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        read_json(bad)
