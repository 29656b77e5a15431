"""The built documentation site renders: pages open in headless Chromium, images and links resolve.

Needs the site built first (``.ci/run`` does it before the tests)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

and Debian's ``chromium`` for the rendering checks; without them the tests skip and say why.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

SITE = Path(__file__).resolve().parents[1] / "docs" / "_build" / "html"
BUILD = "sphinx-build -W --keep-going -b html docs docs/_build/html"

needs_site = pytest.mark.skipif(
    not (SITE / "index.html").is_file(),
    reason=f"the documentation site is not built ({SITE} has no index.html); run `{BUILD}`",
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


needs_chromium = pytest.mark.skipif(
    _chromium() is None, reason="no headless Chromium on PATH (Debian: apt-get install chromium)"
)


class _Page(HTMLParser):
    """Title, element ids, image sources and link targets of one HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.links: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "title":
            self._in_title = True
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        for key in ("href", "src"):
            if tag in ("a", "link", "script", "img", "iframe", "source") and a.get(key):
                self.links.append(a[key])

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _local_target(page: Path, ref: str) -> tuple[Path, str] | None:
    """The file and fragment a relative reference points to; None for external or in-page ones."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or ref.startswith(("#", "data:", "javascript:")):
        return None
    if not parts.path:
        return None
    target = (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def _render(html_file: Path, tmp_path: Path) -> str:
    """The DOM of a page after Chromium loaded it and ran its scripts."""
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000", "--dump-dom", html_file.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "<html" in out.stdout, out.stderr[-2000:]
    return out.stdout


PAGES = {
    # page: (text the title starts with, texts the rendered page must show, images at least)
    "index.html": ("xdiffsr", ["Getting started", "API reference", "Limitations"], 0),
    "generated/xarray.Dataset.diffsr.super_resolve.html": (
        "Dataset.diffsr.super_resolve", ["Parameters", "sampler_options", "Returns"], 0),
    "tutorials/01_quickstart.html": (
        "Quickstart", ["ensemble mean", "bilinear", "What these numbers say"], 1),
}


@needs_site
@needs_chromium
@pytest.mark.parametrize("name", list(PAGES), ids=list(PAGES))
def test_page_renders_in_chromium(name, tmp_path):
    path = SITE / name
    assert path.is_file(), f"{name} was not built"
    title_start, texts, min_images = PAGES[name]
    dom = _render(path, tmp_path)
    page = _parse(dom)
    assert page.title.strip().startswith(title_start), page.title
    for text in texts:
        assert text in dom, f"{name}: {text!r} not rendered"
    assert len(page.images) >= min_images, f"{name}: {len(page.images)} images"
    for src in page.images:
        target = _local_target(path, src)
        if src.startswith("data:image/"):
            continue
        assert target is not None, f"{name}: image {src} is not part of the site"
        assert target[0].is_file(), f"{name}: image {src} missing ({target[0]})"
    if name.startswith("generated/xarray.Dataset.diffsr"):
        assert "xarray.Dataset.diffsr.super_resolve" in page.ids  # the cross-reference target


@needs_site
def test_no_broken_internal_links():
    """Every relative href/src of every built page names a file that exists (and its anchor)."""
    # _static/ holds the theme's assets (one of them a Jinja macro file named *.html), not pages
    pages = [p for p in sorted(SITE.rglob("*.html")) if p.relative_to(SITE).parts[0] != "_static"]
    assert len(pages) > 10
    parsed = {p.resolve(): _parse(p.read_text(encoding="utf-8")) for p in pages}
    broken = []
    for path, page in parsed.items():
        for ref in page.links:
            target = _local_target(path, ref)
            if target is None:
                continue
            file, fragment = target
            if not file.exists():
                broken.append(f"{path.relative_to(SITE)} -> {ref} (no file)")
            elif fragment and file in parsed and fragment not in parsed[file].ids:
                broken.append(f"{path.relative_to(SITE)} -> {ref} (no anchor)")
    assert not broken, "\n".join(broken[:50])
