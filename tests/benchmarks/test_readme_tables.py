"""The results tables in README.md and docs/ are generated from committed JSON, and the check catches drift."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = readme_tables  # dataclasses look their module up while the class is built
_spec.loader.exec_module(readme_tables)
Table = readme_tables.Table


def squares(data: dict) -> str:
    lines = ["| n | n squared |", "|---|---|"]
    lines += [f"| {n} | {n * n:.1f} |" for n in data["n"]]
    return "\n".join(lines)


TABLES = {"squares": Table("results/squares.json", squares)}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "squares.json").write_text(json.dumps({"n": [1, 2, 3]}))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Title\n\n<!-- table:squares -->\nstale\n<!-- /table -->\n\nAfter.\n")
    (tmp_path / "docs" / "page.md").write_text("Intro.\n<!-- table:squares -->\n<!-- /table -->\n")
    return tmp_path


def test_update_writes_the_table_from_json_and_then_check_passes(repo: Path) -> None:
    assert readme_tables.check(repo, TABLES)  # stale and empty tables are reported
    written = readme_tables.update(repo, TABLES)
    assert sorted(p.name for p in written) == ["README.md", "page.md"]
    text = (repo / "README.md").read_text()
    assert "| 3 | 9.0 |" in text and "stale" not in text
    assert text.startswith("# Title\n\n<!-- table:squares -->\n| n |") and text.endswith("<!-- /table -->\n\nAfter.\n")
    assert readme_tables.check(repo, TABLES) == []
    assert readme_tables.update(repo, TABLES) == []  # idempotent: nothing left to rewrite


def test_check_names_file_and_table_when_json_changes(repo: Path) -> None:
    readme_tables.update(repo, TABLES)
    (repo / "results" / "squares.json").write_text(json.dumps({"n": [1, 2, 4]}))
    problems = readme_tables.check(repo, TABLES)
    assert len(problems) == 2
    assert any(p.startswith("README.md:3: table 'squares' disagrees with results/squares.json") for p in problems)
    assert any(p.startswith("docs/page.md:2: table 'squares'") for p in problems)


def test_check_catches_a_hand_edited_number(repo: Path) -> None:
    readme_tables.update(repo, TABLES)
    page = repo / "README.md"
    page.write_text(page.read_text().replace("| 2 | 4.0 |", "| 2 | 4.1 |"))
    assert [p.split(":")[0] for p in readme_tables.check(repo, TABLES)] == ["README.md"]


def test_unknown_table_missing_json_and_unclosed_marker_are_reported(repo: Path) -> None:
    (repo / "docs" / "other.md").write_text("<!-- table:nope -->\n<!-- /table -->\n")
    (repo / "docs" / "open.md").write_text("<!-- table:squares -->\n| a |\n")
    (repo / "results" / "squares.json").unlink()
    problems = "\n".join(readme_tables.check(repo, TABLES))
    assert "docs/other.md:1: no table named 'nope'" in problems
    assert "docs/open.md: table 'squares' has no closing" in problems
    assert "README.md:3: table 'squares' reads results/squares.json, which does not exist" in problems
    before = {p: p.read_text() for p in readme_tables.markdown_files(repo)}
    with pytest.raises(readme_tables.TableError):
        readme_tables.update(repo, TABLES)
    assert {p: p.read_text() for p in readme_tables.markdown_files(repo)} == before  # nothing half-written


def test_a_pasted_results_table_is_flagged_but_not_a_table_of_names(repo: Path) -> None:
    readme_tables.update(repo, TABLES)
    page = repo / "docs" / "page.md"
    page.write_text(
        page.read_text()
        + "\n| command | what |\n|---|---|\n| `fit --omega 30.0` | fits a mesh |\n"  # numbers only in code: not results
        + "\n| mesh | IoU |\n|---|---|\n| bunny | 0.9812 |\n"  # a pasted result
        + "\n```\n| a | b |\n|---|---|\n| 1.5 | 2.5 |\n```\n"  # inside a code fence: an example, not a table
    )
    problems = readme_tables.check(repo, TABLES)
    assert problems == ["docs/page.md:14: a results table outside '<!-- table:NAME -->' markers (generate it from JSON)"]


def test_every_results_table_in_readme_and_docs_is_generated_and_matches_its_json() -> None:
    problems = readme_tables.check()
    assert problems == [], "\n".join(problems) + "\nrun: .venv/bin/python benchmarks/readme_tables.py"
    assert len(readme_tables.markdown_files()) > 1  # README.md and the docs/ pages were found


def test_a_settings_table_opts_out_with_a_reason_and_only_the_table_below(repo: Path) -> None:
    readme_tables.update(repo, TABLES)
    page = repo / "docs" / "settings.md"
    settings = "| setting | value |\n|---|---|\n| spacing | 0.22 |\n"
    page.write_text("<!-- not-results: recipe settings -->\n" + settings + "\nText.\n\n" + settings)
    assert readme_tables.check(repo, TABLES) == [
        "docs/settings.md:8: a results table outside '<!-- table:NAME -->' markers (generate it from JSON)"
    ]
    page.write_text("<!-- not-results: -->\n" + settings)  # no reason given: not an opt-out
    assert len(readme_tables.check(repo, TABLES)) == 1


def test_markers_inside_a_code_fence_are_an_example_not_a_table(repo: Path) -> None:
    readme_tables.update(repo, TABLES)
    page = repo / "docs" / "howto.md"
    page.write_text("Put a table between:\n\n```\n<!-- table:NAME -->\n<!-- /table -->\n```\n")
    assert readme_tables.check(repo, TABLES) == []
    assert readme_tables.update(repo, TABLES) == []


def test_a_table_from_several_json_files_gets_them_in_order(repo: Path) -> None:
    (repo / "results" / "cubes.json").write_text(json.dumps({"n": [2]}))
    tables = {**TABLES, "both": Table(("results/squares.json", "results/cubes.json"), lambda ds: f"{ds[0]['n']} then {ds[1]['n']}")}
    (repo / "docs" / "both.md").write_text("<!-- table:both -->\n<!-- /table -->\n")
    readme_tables.update(repo, tables)
    assert (repo / "docs" / "both.md").read_text() == "<!-- table:both -->\n[1, 2, 3] then [2]\n<!-- /table -->\n"
    (repo / "results" / "cubes.json").write_text(json.dumps({"n": [3]}))
    assert readme_tables.check(repo, tables) == [
        "docs/both.md:1: table 'both' disagrees with results/squares.json, results/cubes.json (run benchmarks/readme_tables.py)"
    ]


def test_every_registered_table_has_committed_json_and_renders() -> None:
    for name, table in readme_tables.TABLES.items():
        for path in table.paths:
            assert (ROOT / path).is_file(), f"table '{name}' reads {path}, which is not in the repository"
        assert "|" in readme_tables.render(name), f"table '{name}' rendered no markdown table"
