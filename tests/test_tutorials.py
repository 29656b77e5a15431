"""Every tutorial notebook runs from top to bottom (code cells executed in order, in its folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
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
    if "scores" in namespace:  # the quickstart: finite scores, and no leak of the truth's time
        scores = namespace["scores"]
        assert np.isfinite(scores.to_numpy()).all()
        truth_time = np.datetime64(namespace["t0"])
        assert truth_time not in namespace["others"].time.values  # prior fitted on other times
    assert os.getcwd() == str(TUTORIALS)


def test_notebooks_match_their_sources():
    """The committed .ipynb files are built from the .py sources (tutorials/make_notebooks.py).

    Only the cells' kinds and sources are compared: the notebooks are stored with the outputs of
    ``make_notebooks.py --execute``, and every code cell must have been run.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("mk", TUTORIALS / "make_notebooks.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    for src in sorted(TUTORIALS.glob("[0-9]*.py")):
        nb = json.loads(src.with_suffix(".ipynb").read_text())
        stored = [(c["cell_type"], c["source"] if isinstance(c["source"], str)
                   else "".join(c["source"])) for c in nb["cells"]]
        built = [(c["cell_type"], c["source"]) for c in mk.cells_of(src.read_text())]
        assert stored == built, f"rebuild {src.name}: python tutorials/make_notebooks.py --execute"
        counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(n is not None for n in counts), f"{src.name} is stored unexecuted"
