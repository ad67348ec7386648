"""README.md and docs/ stay true to the repository: every relative link resolves and the CLI table lists the CLI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(ROOT.glob("*.md")) + sorted((ROOT / "docs").rglob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(without_code(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: outside the repository
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            if not resolved.exists():
                broken.append(f"{where}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where}: no heading with that anchor")
    assert broken == [], "\n".join(broken)


def test_the_pages_link_checker_catches_a_missing_file_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Real heading\n\n[a](page.md#real-heading) [b](missing.md) `[c](in-code.md)`\n")
    assert anchors(page) == {"real-heading"}
    assert LINK.findall(without_code(page.read_text())) == ["page.md#real-heading", "missing.md"]


def test_readme_command_table_lists_exactly_the_cli_commands() -> None:
    from sine_fields.cli import COMMANDS

    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- cli-commands", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `sine-fields ([a-z -]+)` \|", table, re.M)
    assert sorted(listed) == sorted(COMMANDS), "README.md's command table differs from sine_fields/cli.py COMMANDS"


def test_readme_stays_short_and_every_docs_page_is_linked_from_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
