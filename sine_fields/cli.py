"""``sine-fields <command> ...``: the one module that imports every part of the project.

Each command is a plain function with typed, documented arguments; tyro turns it into a CLI. The
command's module is imported only when that command runs, so ``sine-fields --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
import warnings

from sine_fields.errors import UserError

# name -> (module, function, one-line help). Nested groups use a space: "data get".
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("sine_fields.demo", "main", "run the default demo and write its report"),
    "fit": ("sine_fields.shapes.commands", "Fit", "fit a neural field to a mesh, extract and score it"),
    "extract": ("sine_fields.shapes.commands", "Extract", "re-extract the mesh of a finished shape run"),
    "eval": ("sine_fields.shapes.commands", "Score", "re-score a shape run (writes metrics.json)"),
    "compare": ("sine_fields.shapes.commands", "Compare", "markdown table of shape runs side by side"),
    "pack": ("sine_fields.shapes.pack_commands", "Pack", "pack a finished shape run into one small file (16 or 8 bits)"),
    "unpack": ("sine_fields.shapes.pack_commands", "Unpack", "extract the mesh of a packed shape file"),
    "fit-many": ("sine_fields.shapes.pack_commands", "FitMany", "fit one shape per mesh as Ray tasks, resumable, with a summary table"),
    "data list": ("sine_fields.shapes.commands", "data_list", "list named mesh sources and the cache folder"),
    "data get": ("sine_fields.shapes.commands", "data_get", "fetch a named mesh into the cache"),
    "data scene": ("sine_fields.data.scenes", "main", "render a named scene (duck, spider) or any coloured/textured mesh into a nerfstudio/Blender dataset"),
    "nerf-mesh": ("sine_fields.methods.nerf_mesh", "main", "marching cubes on a trained NeRF's density, scored against the ground truth"),
    "view": ("sine_fields.viewer.app", "main", "serve a web page (viser) that shows shape fits beside their ground truth"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: sine-fields COMMAND [ARGS...]  (sine-fields COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in sorted(COMMANDS.items())]
    return "\n".join(lines)


def _find_command(argv: list[str]) -> tuple[str, list[str]] | None:
    # Longest match first so that "data get" wins over a hypothetical "data".
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return name, argv[words:]
    return None


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; a ``UserError`` becomes one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    found = _find_command(argv)
    if found is None:
        print(f"error: unknown command {' '.join(argv[:2])!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    name, rest = found
    module_name, function_name, help_ = COMMANDS[name]
    import tyro  # imported here: plain `sine-fields --help` should not pay for it

    # A command is a function, or a dataclass whose main() runs it (nerfstudio's ns-export style).
    command = getattr(importlib.import_module(module_name), function_name)
    # The library warns through `warnings` (e.g. a mesh that is not watertight): one line each here.
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        result = tyro.cli(command, args=rest, prog=f"sine-fields {name}", description=help_)
        if isinstance(command, type) and hasattr(result, "main"):
            result = result.main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: outputs written so far are complete; run the command again to resume", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
