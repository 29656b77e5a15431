"""Sphinx configuration of the xdiffsr documentation site.

Build (from the repository root; warnings are errors)::

    pip install torch==2.13.0 -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The tutorials (``tutorials/*.ipynb``, built from ``tutorials/*.py``) are copied into
``docs/tutorials/`` at every build and executed by myst-nb (cached in ``docs/_build/.jupyter_cache``:
a rebuild re-runs a notebook only when its code changed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import xdiffsr

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# -- the tutorials: copied from tutorials/ (their home; tested by tests/test_tutorials.py) ----------
_tutorials = DOCS / "tutorials"
_tutorials.mkdir(exist_ok=True)
for _old in _tutorials.glob("*.ipynb"):
    if not (ROOT / "tutorials" / _old.name).exists():
        _old.unlink()
for _nb in sorted((ROOT / "tutorials").glob("[0-9]*.ipynb")):
    _dst = _tutorials / _nb.name
    if not _dst.exists() or _dst.read_bytes() != _nb.read_bytes():
        shutil.copyfile(_nb, _dst)

# -- project ---------------------------------------------------------------------------------------
project = "xdiffsr"
author = "xdiffsr developers"
copyright = "xdiffsr developers, BSD-3-Clause"
release = xdiffsr.__version__
version = release

extensions = [
    "myst_nb",  # MyST markdown pages and executed notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpydoc-style docstrings
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.md", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# Cross-references that do not resolve (types from numpy, torch, xarray without intersphinx,
# which needs the network) stay plain text instead of failing the build.
nitpicky = False

suppress_warnings = [
    # docs/model/*.md are tables written by `xdiffsr evaluate` / `xdiffsr sequential` (H1 then
    # H3 headings); they are data pages shown as generated, not hand-edited to please Sphinx.
    "myst.header",
    # numpydoc "References" sections list ``.. [1]`` entries that the text cites in prose (or not
    # at all); docutils calls such a footnote unreferenced. The entries still render.
    "ref.footnote",
]

# -- MyST / myst-nb --------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # `usage.md#guidance-which-one` style links to sections

# Only the tutorials are notebooks (the .md pages are not executed). They read the real data in
# the workspace's shared/data folder (beside the repository); without it the stored outputs of
# `tutorials/make_notebooks.py --execute` are shown, as tests/test_tutorials.py skips then too.
_shared = next((p / "shared" / "data" for p in (ROOT, *ROOT.parents)
                if (p / "shared" / "data" / "era5").is_dir()), None)
nb_execution_mode = "cache" if _shared is not None else "off"
if _shared is None:
    print("docs/conf.py: no shared/data folder: tutorials shown with their stored outputs")
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = True  # a tutorial that fails fails the build
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference ---------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autoclass_content = "class"
add_module_names = False

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = True

# The accessor method: autodoc cannot import ``Dataset.diffsr.super_resolve`` under ``xarray`` (it
# reads ``Dataset`` as a module), so its page is a plain ``py:method`` directive, registered as
# ``xarray.Dataset.diffsr.super_resolve`` like xarray's own accessors, whose body is the method's
# docstring converted by napoleon here (docs/_templates/autosummary/accessor_method.rst).
def _accessor_docs() -> dict[str, dict[str, str]]:
    import inspect

    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import NumpyDocstring

    from xdiffsr.accessor import DiffSRAccessor

    config = Config(napoleon_google_docstring=False, napoleon_use_param=True,
                    napoleon_use_rtype=False)
    out = {}
    for name, meth in {"Dataset.diffsr.super_resolve": DiffSRAccessor.super_resolve}.items():
        sig = inspect.signature(meth)
        params = [q.replace(annotation=inspect.Parameter.empty)
                  for q in list(sig.parameters.values())[1:]]  # no self, no type hints
        sig = sig.replace(parameters=params, return_annotation=inspect.Signature.empty)
        out[name] = {"signature": str(sig),
                     "doc": str(NumpyDocstring(inspect.getdoc(meth) or "", config,
                                               what="method", name=name, obj=meth))}
    return out


autosummary_context = {"accessor_docs": _accessor_docs()}

# -- HTML ------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"xdiffsr {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 4,  # short titles only: the header stays one line
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path: list[str] = []
html_last_updated_fmt = None
