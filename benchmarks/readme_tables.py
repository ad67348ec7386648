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
    """One generated table: the JSON it is read from (relative to the repository root) and its renderer.

    ``json`` may also be a tuple of paths: the renderer then gets a list of the loaded files, in that order.
    """

    json: str | tuple[str, ...]
    render: Render

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.json,) if isinstance(self.json, str) else tuple(self.json)


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


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows])


def shapes_headline(result: dict) -> str:
    """Rank 1 (the paper's 2.1 % budget) on every mesh: dense vs plain low-rank vs sine low-rank."""
    rows = []
    for mesh in dict.fromkeys(r["mesh"] for r in result["ranks"]):
        by = {r["linear"]: r for r in result["ranks"] if r["mesh"] == mesh and r["rank"] in (None, 1)}
        if not {"dense", "lowrank", "sine"} <= by.keys():
            continue
        d, lo, si = by["dense"], by["lowrank"], by["sine"]
        rows.append([mesh, f"{lo['num_parameters']:,} of {d['num_parameters']:,}",
                     f"{d['iou']:.3f}", f"{lo['iou']:.3f}", f"**{si['iou']:.3f}**",
                     f"{d['chamfer_l1']:.4f}", f"{lo['chamfer_l1']:.4f}", f"**{si['chamfer_l1']:.4f}**"])
    return _markdown_table(["mesh", "parameters (rank 1 of dense)", "IoU dense", "IoU low-rank", "IoU sine",
                            "Chamfer-L1 dense", "low-rank", "sine"], rows)


def omega_sweeps(results: list[dict]) -> str:
    """Every committed omega sweep, one row each: where it was run, what was tried, what won."""
    shapes, vit, vit8, lora, lora16 = results
    rows = []
    for rank in sorted({r["rank"] for r in shapes["omega"]}):
        sweep = [r for r in shapes["omega"] if r["rank"] == rank]
        best = max(sweep, key=lambda r: r["iou"])
        rows.append([f"occupancy, {sweep[0]['mesh']}", str(rank), ", ".join(f"{r['omega']:g}" for r in sweep),
                     f"**{best['omega']:g}**", f"IoU {best['iou']:.3f}", "`benchmarks/results/shapes.json`"])
    for data, path in ((vit, "vit.json"), (vit8, "vit_rank8.json")):
        sweep = data["omega_sweep"]["results"]
        best = max(sweep, key=lambda r: r["validation_accuracy_mean"])
        rows.append(["ViT, digits", str(data["omega_sweep"]["rank"]), ", ".join(f"{r['omega']:g}" for r in sweep),
                     f"**{best['omega']:g}**", f"validation accuracy {100 * best['validation_accuracy_mean']:.2f} %",
                     f"`benchmarks/results/{path}`"])
    for data, path in ((lora, "lora.json"), (lora16, "lora_rank16.json")):
        sweep = data["sweep"]["omega"]
        best = min(sweep, key=lambda r: r["validation_loss"])
        rows.append(["Sine-LoRA, byte-level LM", str(data["sweep"]["rank"]), ", ".join(f"{r['omega']:g}" for r in sweep),
                     f"**{best['omega']:g}**", f"validation loss {best['validation_loss']:.4f}", f"`benchmarks/results/{path}`"])
    return _markdown_table(["task", "rank", "omegas tried", "best", "its score", "JSON"], rows)


RESULTS = "benchmarks/results/"

# NAME -> Table. One line per table.
TABLES: dict[str, Table] = {
    "rank": Table(RESULTS + "rank.json", from_benchmark("rank")),
    "layers": Table(RESULTS + "layers.json", from_benchmark("layers")),
    "shapes": Table(RESULTS + "shapes.json", from_benchmark("shapes")),
    "shapes-headline": Table(RESULTS + "shapes.json", shapes_headline),
    "omega-sweeps": Table(tuple(RESULTS + f for f in ("shapes.json", "vit.json", "vit_rank8.json", "lora.json",
                                                      "lora_rank16.json")), omega_sweeps),
    "vit": Table(RESULTS + "vit.json", from_benchmark("vit")),
    "vit-rank8": Table(RESULTS + "vit_rank8.json", from_benchmark("vit")),
    "lora": Table(RESULTS + "lora.json", from_benchmark("lora")),
    "lora-rank16": Table(RESULTS + "lora_rank16.json", from_benchmark("lora")),
    "lora-plain-rank": Table(RESULTS + "lora_plain_rank.json", from_benchmark("lora", "plain_rank_markdown")),
    "lora-plain-rank-omega": Table(RESULTS + "lora_plain_rank_omega.json", from_benchmark("lora", "omega_rank_markdown")),
    "nerf": Table(RESULTS + "nerf.json", from_benchmark("nerf")),
    "nerf-sweep": Table(RESULTS + "nerf.json", from_benchmark("nerf", "markdown_sweep")),
    "nerf-verdict": Table(RESULTS + "nerf.json", from_benchmark("nerf", "markdown_verdict")),
    "nerf-lite": Table(RESULTS + "nerf-lite-duck.json", from_benchmark("nerf_lite")),
    "nerf-lite-headline": Table(RESULTS + "nerf-lite-duck.json", from_benchmark("nerf_lite", "headline_markdown")),
    "nerf-lite-twins": Table(RESULTS + "nerf-lite-duck-twins.json", from_benchmark("nerf_lite")),
    "nerf-lite-float32": Table(RESULTS + "nerf-lite-duck-float32.json", from_benchmark("nerf_lite")),
    "nerf-lite-avx512bf16": Table(RESULTS + "nerf-lite-duck-avx512bf16.json", from_benchmark("nerf_lite")),
    "nerf-lite-spider": Table(RESULTS + "nerf-lite-spider.json", from_benchmark("nerf_lite")),
    "nerf-lite-paired": Table((RESULTS + "nerf-lite-duck.json", RESULTS + "nerf-lite-duck-twins.json"),
                              from_benchmark("nerf_lite", "paired_markdown_merged")),
    "nerf-lite-spider-paired": Table(RESULTS + "nerf-lite-spider.json", from_benchmark("nerf_lite", "paired_markdown")),
    "nerf-lite-long": Table(RESULTS + "nerf-lite-duck-long.json", from_benchmark("nerf_lite")),
    "nerf-lite-long-paired": Table(RESULTS + "nerf-lite-duck-long.json", from_benchmark("nerf_lite", "paired_markdown")),
    "nerf-lite-9200": Table(RESULTS + "nerf-lite-duck-9200.json", from_benchmark("nerf_lite")),
    "nerf-lite-9200-paired": Table(RESULTS + "nerf-lite-duck-9200.json", from_benchmark("nerf_lite", "paired_markdown")),
    "nerf-lite-by-length": Table(tuple(RESULTS + name for name in ("nerf-lite-duck.json", "nerf-lite-duck-twins.json",
                                                                    "nerf-lite-duck-long.json", "nerf-lite-duck-9200.json")),
                                 from_benchmark("nerf_lite", "by_length_markdown")),
    "nerf-lite-lr-sweep": Table(tuple(RESULTS + name for name in ("nerf-lite-duck.json", "nerf-lite-duck-twins.json",
                                                                   "nerf-lite-duck-lr0.5.json", "nerf-lite-duck-lr2.json",
                                                                   "nerf-lite-duck-lr4.json")),
                                from_benchmark("nerf_lite", "lr_sweep_markdown")),
    "nerf-lite-hold": Table(RESULTS + "nerf-lite-duck-hold.json", from_benchmark("nerf_lite")),
    "nerf-lite-hold-rule": Table(RESULTS + "nerf-lite-duck-hold.json", from_benchmark("nerf_lite", "held_rates_markdown")),
    "nerf-lite-schedules": Table(tuple(RESULTS + name for name in ("nerf-lite-duck.json", "nerf-lite-duck-twins.json",
                                                                    "nerf-lite-duck-long.json", "nerf-lite-duck-9200.json",
                                                                    "nerf-lite-duck-hold.json", "nerf-lite-duck-6900.json")),
                                 from_benchmark("nerf_lite", "schedules_at_steps_markdown")),
    "nerf-lite-6900": Table(RESULTS + "nerf-lite-duck-6900.json", from_benchmark("nerf_lite")),
    "field-precision": Table(RESULTS + "field_precision.json", from_benchmark("field_precision")),
    "field-precision-avx512bf16": Table(RESULTS + "field_precision_avx512bf16.json", from_benchmark("field_precision")),
    "nerf-duck-k5-long": Table(RESULTS + "nerf-duck-k5-long.json", from_benchmark("nerf")),
    "nerf-duck-k5-long-verdict": Table(RESULTS + "nerf-duck-k5-long.json", from_benchmark("nerf", "markdown_verdict")),
    "nerf-mps-312": Table(RESULTS + "nerf-mps-312.json", from_benchmark("nerf")),
    "nerf-mps-312-sweep": Table(RESULTS + "nerf-mps-312.json", from_benchmark("nerf", "markdown_sweep")),
    "nerf-nerfacto-parameters": Table(RESULTS + "nerf-nerfacto-parameters.json", from_benchmark("nerf_nerfacto")),
    "nerf-nerfacto": Table((RESULTS + "nerf-nerfacto-duck.json", RESULTS + "nerf-nerfacto-spider.json"),
                           from_benchmark("nerf_nerfacto", "markdown_merged")),
    "nerf-mesh": Table(RESULTS + "nerf_mesh_duck.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-spider": Table(RESULTS + "nerf_mesh_spider.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-duck-seed1": Table(RESULTS + "nerf_mesh_duck_seed1.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-duck-seed2": Table(RESULTS + "nerf_mesh_duck_seed2.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-duck-256": Table(RESULTS + "nerf_mesh_duck_256.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-duck-poisson": Table(RESULTS + "nerf_mesh_duck_poisson.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-spider-poisson": Table(RESULTS + "nerf_mesh_spider_poisson.json", from_benchmark("nerf_mesh")),
    "nerf-mesh-headline": Table(tuple(RESULTS + f"nerf_mesh_duck{s}.json" for s in ("_256", "", "_seed1", "_seed2")),
                                from_benchmark("nerf_mesh", "headline_markdown")),
    "compression": Table(RESULTS + "compression.json", from_benchmark("compression")),
    "omega-auto": Table(RESULTS + "omega_auto.json", from_benchmark("omega_auto")),
    "pack-precision": Table(RESULTS + "pack_precision.json", from_benchmark("pack_precision")),
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


def _blank_code_fences(text: str) -> str:
    """``text`` with fenced code blocks blanked out (same length, newlines kept): markers shown as examples don't count."""
    out, fence = [], False
    for line in text.splitlines(keepends=True):
        opens = line.lstrip().startswith("```")
        if fence or opens:
            out.append("".join(c if c == "\n" else " " for c in line))
        else:
            out.append(line)
        if opens:
            fence = not fence
    return "".join(out)


def regions(text: str, where: str = "<text>") -> list[Region]:
    """Every marked table in ``text``, in order; a marker without its closing partner is an error."""
    text = _blank_code_fences(text)
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
    loaded = []
    for relative in table.paths:
        path = root / relative
        if not path.is_file():
            raise TableError(f"table '{name}' reads {relative}, which does not exist (run its benchmark first)")
        try:
            loaded.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise TableError(f"table '{name}': {relative} is not valid JSON ({err})") from err
    data = loaded[0] if isinstance(table.json, str) else loaded
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
# A table of settings or closed-form counts (not measurements) says so on the line above it, with a reason.
NOT_RESULTS = re.compile(r"^<!-- not-results: \S.* -->\s*$")
RESULT_NUMBER = re.compile(r"\d+\.\d+|\d\s*%")


def pasted_tables(text: str) -> list[int]:
    """First lines of markdown tables outside markers (and outside code fences) that hold results-like numbers.

    A table right below ``<!-- not-results: REASON -->`` is skipped: it holds settings, not measurements.
    """
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
        above = next((line for line in reversed(lines[:first]) if line.strip()), "")
        marked = marked or bool(NOT_RESULTS.match(above))
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
                    f"{where}:{region.line}: table '{region.name}' disagrees with {', '.join(tables[region.name].paths)} "
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
