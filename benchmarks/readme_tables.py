"""Write every results table in README.md and docs/ from the JSON the benchmarks committed.

    .venv/bin/python benchmarks/readme_tables.py           # rewrite all tables in place
    .venv/bin/python benchmarks/readme_tables.py --check   # exit 1, naming file and table, if any disagrees

A table lives in any markdown file at the repository root or under docs/, between two markers:

    <!-- table:NAME -->
    (generated; do not edit by hand)
    <!-- /table -->

``TABLES`` maps NAME to the JSON it is read from and the function that turns the loaded JSON into markdown.
To add a table: write one function ``data -> str`` (here, or ``markdown``-style in the benchmark and use
``from_benchmark``), add one line to ``TABLES``, put the two markers in a page and run this script.

``--check`` also flags a results-looking table (a markdown table with a decimal number or a percentage outside
code spans) that sits outside any marker: results are generated, never pasted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]

Render = Callable[[Any], str]


@dataclass(frozen=True)
class Table:
    """One generated table: the JSON it is read from (relative to the repository root) and its renderer."""

    json: str
    render: Render


@lru_cache(maxsize=None)
def _benchmark_module(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the benchmark look their module up while built
    spec.loader.exec_module(module)
    return module


def from_benchmark(name: str, function: str = "markdown") -> Render:
    """The renderer ``benchmarks/<name>.py`` defines, imported only when a table needs it (benchmarks import torch)."""

    def render(data: Any) -> str:
        return getattr(_benchmark_module(name), function)(data)

    render.__name__ = f"{name}.{function}"
    return render


# NAME -> Table. One line per table.
TABLES: dict[str, Table] = {
    "rank": Table("benchmarks/results/rank.json", from_benchmark("rank")),
    "layers": Table("benchmarks/results/layers.json", from_benchmark("layers")),
}


OPEN = re.compile(r"^<!-- table:(?P<name>[\w.-]+) -->[ \t]*$", re.M)
CLOSE = re.compile(r"^<!-- /table(?::[\w.-]+)? -->[ \t]*$", re.M)


class TableError(ValueError):
    """A page's markers are malformed or name a table that cannot be rendered."""


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The pages whose tables are generated: ``*.md`` at the root and anywhere under ``docs/``."""
    return sorted(root.glob("*.md")) + sorted((root / "docs").rglob("*.md"))


@dataclass(frozen=True)
class Region:
    """The text between one pair of markers: ``text[start:end]`` is the table body."""

    name: str
    start: int
    end: int
    line: int


def regions(text: str, where: str = "<text>") -> list[Region]:
    """Every marked table in ``text``, in order; a marker without its closing partner is an error."""
    found = []
    pos = 0
    while (match := OPEN.search(text, pos)) is not None:
        start = match.end() + 1  # the body begins on the line after the marker
        close = CLOSE.search(text, match.end())
        if close is None:
            raise TableError(f"{where}: table '{match['name']}' has no closing '<!-- /table -->'")
        nested = OPEN.search(text, match.end(), close.start())
        if nested is not None:
            raise TableError(f"{where}: table '{match['name']}' is not closed before table '{nested['name']}' opens")
        found.append(Region(match["name"], min(start, close.start()), close.start(), text.count("\n", 0, match.start()) + 1))
        pos = close.end()
    return found


def render(name: str, root: Path = ROOT, tables: Mapping[str, Table] = TABLES) -> str:
    """The body of table ``name`` as it belongs between its markers (ends with a newline)."""
    if name not in tables:
        raise TableError(f"no table named '{name}' in benchmarks/readme_tables.py TABLES (known: {', '.join(sorted(tables))})")
    table = tables[name]
    path = root / table.json
    if not path.is_file():
        raise TableError(f"table '{name}' reads {table.json}, which does not exist (run its benchmark first)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TableError(f"table '{name}': {table.json} is not valid JSON ({err})") from err
    return table.render(data).strip("\n") + "\n"


def rewrite(text: str, root: Path = ROOT, tables: Mapping[str, Table] = TABLES, where: str = "<text>") -> str:
    """``text`` with every marked table regenerated."""
    out, pos = [], 0
    for region in regions(text, where):
        try:
            body = render(region.name, root, tables)
        except TableError as err:
            raise TableError(f"{where}:{region.line}: {err}") from err
        out += [text[pos:region.start], body]
        pos = region.end
    out.append(text[pos:])
    return "".join(out)


TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
SEPARATOR = re.compile(r"^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$")
CODE_SPAN = re.compile(r"`[^`]*`")
RESULT_NUMBER = re.compile(r"\d+\.\d+|\d\s*%")


def pasted_tables(text: str) -> list[int]:
    """First lines of markdown tables outside markers (and outside code fences) that hold results-like numbers."""
    inside = [(r.start, r.end) for r in regions(text)]
    lines = text.splitlines(keepends=True)
    flagged, offset, fence, i = [], 0, False, 0
    starts = []
    for line in lines:
        starts.append(offset)
        offset += len(line)
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fence = not fence
            i += 1
            continue
        if fence or not (TABLE_ROW.match(lines[i]) and i + 1 < len(lines) and SEPARATOR.match(lines[i + 1])):
            i += 1
            continue
        first = i
        i += 2
        while i < len(lines) and TABLE_ROW.match(lines[i]):
            i += 1
        marked = any(lo <= starts[first] < hi for lo, hi in inside)
        body = CODE_SPAN.sub("", "".join(lines[first + 2:i]))
        if not marked and RESULT_NUMBER.search(body):
            flagged.append(first + 1)
    return flagged


def check(root: Path = ROOT, tables: Mapping[str, Table] = TABLES) -> list[str]:
    """One line per problem: a marked table that disagrees with its JSON, or a results table pasted outside markers."""
    problems = []
    for page in markdown_files(root):
        where = page.relative_to(root).as_posix()
        text = page.read_text()
        try:
            marked = regions(text, where)
        except TableError as err:
            problems.append(str(err))
            continue
        for region in marked:
            try:
                expected = render(region.name, root, tables)
            except TableError as err:
                problems.append(f"{where}:{region.line}: {err}")
                continue
            if text[region.start:region.end] != expected:
                problems.append(
                    f"{where}:{region.line}: table '{region.name}' disagrees with {tables[region.name].json} "
                    "(run benchmarks/readme_tables.py)"
                )
        for line in pasted_tables(text):
            problems.append(f"{where}:{line}: a results table outside '<!-- table:NAME -->' markers (generate it from JSON)")
    return problems


def update(root: Path = ROOT, tables: Mapping[str, Table] = TABLES) -> list[Path]:
    """Rewrite every page whose tables changed; returns the pages written."""
    from sine_fields.io import atomic_write_text

    # Render every page before writing any, so one broken table leaves all pages as they were.
    changed = {}
    for page in markdown_files(root):
        text = page.read_text()
        new = rewrite(text, root, tables, page.relative_to(root).as_posix())
        if new != text:
            changed[page] = new
    for page, new in changed.items():
        atomic_write_text(page, new)
    return list(changed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table disagrees with its JSON")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) in {len(markdown_files())} page(s)")
        return 1 if problems else 0
    try:
        written = update()
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    count = sum(len(regions(p.read_text())) for p in markdown_files())
    print(f"{count} table(s) in {len(markdown_files())} page(s); rewrote: {', '.join(p.relative_to(ROOT).as_posix() for p in written) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
