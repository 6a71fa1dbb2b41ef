"""The documentation holds together: every relative link in the README and under docs/ points
at a file the repository has, and the README links every docs/ page, so none is orphaned."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) or [text](target#anchor); external links and bare anchors are not files.
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def relative_links(page: Path) -> list[str]:
    return [
        match["target"]
        for match in LINK.finditer(page.read_text())
        if not match["target"].startswith(("http://", "https://", "mailto:"))
    ]


def test_every_relative_link_points_at_a_file_the_repository_has() -> None:
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in PAGES
        for target in relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert broken == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / target).resolve() for target in relative_links(ROOT / "README.md")}
    pages = set((ROOT / "docs").glob("*.md"))
    assert pages, "docs/ has no pages"
    assert {page.resolve() for page in pages} <= linked
