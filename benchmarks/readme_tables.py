"""Write the README's result tables from the JSON the benchmarks wrote.

    .venv/bin/python benchmarks/readme_tables.py

Every ``<!-- table:NAME -->`` marker in README.md is followed by the table that ``benchmarks/NAME.py``
renders (its ``markdown(result)`` of the JSON at its ``RESULTS`` path), up to ``<!-- /table:NAME -->``.
A benchmark whose JSON does not exist yet is left as it is, with a note.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

from sine_fields.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- table:(?P<name>[\w-]+) -->\n(?:.*?<!-- /table:(?P=name) -->\n)?", re.S)


def load_benchmark(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(name: str) -> str:
    module = load_benchmark(name)
    path = Path(module.RESULTS)
    if not path.is_file():
        return f"_No results yet: run `.venv/bin/python benchmarks/{name}.py`._"
    return module.markdown(json.loads(path.read_text()))


def main() -> int:
    text = README.read_text()

    def replace(match: re.Match) -> str:
        name = match["name"]
        return f"<!-- table:{name} -->\n{render(name).rstrip()}\n<!-- /table:{name} -->\n"

    new = MARKER.sub(replace, text)
    atomic_write_text(README, new)
    print(f"updated {len(MARKER.findall(text))} tables in {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
