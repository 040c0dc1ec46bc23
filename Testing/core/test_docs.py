"""The documentation the code relies on: every cited section exists, every linked file is there."""

from __future__ import annotations

import re

from helpers.paths import REPO

SOURCES = [p for folder in ("VQSegCore", "VQSegExtension", "Testing", "benchmarks") for p in (REPO / folder).rglob("*.py")]


def test_every_cited_architecture_section_exists():
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", (REPO / "docs" / "architecture.md").read_text(encoding="utf-8"), re.M))
    cited = {(p.name, s) for p in SOURCES for s in re.findall(r"architecture\.md §(\d+(?:\.\d+)?)", p.read_text(encoding="utf-8"))}
    assert len(cited) >= 10
    assert {(name, section) for name, section in cited if section not in headings} == set()


def test_no_source_cites_a_design_file_outside_the_repository():
    assert [p.name for p in SOURCES if re.search(r"\bDESIGN(\.md)? ?§", p.read_text(encoding="utf-8"))] == []


def test_readme_is_short_and_its_links_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "make test" in readme  # CI runs the README's test command
    for target in re.findall(r"\]\(((?:docs|Resources)/[^)#]+)", readme):
        assert (REPO / target).is_file(), target
