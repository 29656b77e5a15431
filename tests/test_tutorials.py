"""Every tutorial notebook runs from top to bottom (code cells executed in order, in its folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


@pytest.mark.parametrize("notebook", sorted(TUTORIALS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(notebook, shared_data, monkeypatch):
    monkeypatch.chdir(TUTORIALS)
    cells = json.loads(notebook.read_text())["cells"]
    namespace: dict = {"__name__": "__tutorial__"}
    for cell in cells:
        if cell["cell_type"] == "code":
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            exec(compile(src, f"{notebook.name}", "exec"), namespace)
    if "scores" in namespace:  # the quickstart: the posterior beats bilinear interpolation
        scores = namespace["scores"]
        assert (scores["ensemble mean"] < scores["bilinear"]).all()
    assert os.getcwd() == str(TUTORIALS)


def test_notebooks_match_their_sources():
    """The committed .ipynb files are built from the .py sources (tutorials/make_notebooks.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mk", TUTORIALS / "make_notebooks.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    for src in sorted(TUTORIALS.glob("[0-9]*.py")):
        nb = json.loads(src.with_suffix(".ipynb").read_text())
        assert nb["cells"] == mk.cells_of(src.read_text()), f"rebuild {src.name}"
