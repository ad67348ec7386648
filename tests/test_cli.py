"""The sine-fields command: help, unknown commands, the user-error contract."""

import subprocess
import sys

from sine_fields import cli
from sine_fields.errors import UserError


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: sine-fields" in out and "demo" in out


def test_unknown_command_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def broken() -> None:
        raise UserError("--mesh: no such file 'x.ply'")

    monkeypatch.setitem(cli.COMMANDS, "broken", (__name__, "_broken", "test"))
    globals()["_broken"] = broken
    assert cli.main(["broken"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --mesh: no such file 'x.ply'"


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "sine_fields.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "commands:" in result.stdout


def test_import_is_light():
    code = "import sys, sine_fields; bad = [m for m in ('nerfstudio', 'peft', 'transformers', 'viser', 'open3d', 'tyro') if m in sys.modules]; print(bad)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_library_warnings_print_as_one_line(tmp_path):
    import trimesh

    box = trimesh.creation.box()
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-1], process=False)  # one face missing: not watertight
    open_box.export(tmp_path / "open.ply")
    result = subprocess.run([sys.executable, "-m", "sine_fields.cli", "data", "get", str(tmp_path / "open.ply")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "not watertight" in lines[0], result.stderr
