"""The documentation site's top navigation stays one line (issue 27): the seven tutorials sit
under one "Tutorials" page instead of seven header links, and every how-to page is in the tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _toctree_entries(page: Path) -> list[str]:
    entries = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", page.read_text(), flags=re.S):
        entries += [line.strip() for line in block.splitlines()
                    if line.strip() and not line.lstrip().startswith(":")]
    return entries


def test_the_root_toctree_holds_one_tutorials_entry():
    root = _toctree_entries(DOCS / "index.md")
    assert "tutorials" in root
    assert not [e for e in root if e.startswith("tutorials/")], root
    assert "howto-earth2studio" in root


def test_the_tutorials_page_lists_every_tutorial():
    listed = _toctree_entries(DOCS / "tutorials.md")
    notebooks = sorted(f"tutorials/{p.stem}" for p in (ROOT / "tutorials").glob("[0-9]*.ipynb"))
    assert listed == notebooks


def test_built_header_has_short_links():
    """The links shown in the header (not those under "More") are few and short: one line."""
    index = DOCS / "_build" / "html" / "index.html"
    if not index.is_file():
        pytest.skip(f"the documentation site is not built ({index} missing)")
    html = index.read_text()
    nav = re.search(r'<ul class="bd-navbar-elements navbar-nav">(.*?)</ul>\s*</nav>', html,
                    flags=re.S)
    assert nav is not None
    shown = [re.sub(r"\s+", " ", text).strip()
             for cls, text in re.findall(r'<a class="([^"]*)"[^>]*>(.*?)</a>', nav.group(1), re.S)
             if "nav-link" in cls and "dropdown-item" not in cls]
    assert "Tutorials" in shown, shown
    assert not any("Quickstart" in t or "quickstart" in t for t in shown), shown
    assert sum(len(t) for t in shown) <= 60, shown
