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
    check = CHECKS.get(notebook.stem)
    if check is not None:
        check(namespace)
    assert os.getcwd() == str(TUTORIALS)


# ------------------------------------------------- what each tutorial's results must satisfy
def _quickstart(ns: dict) -> None:
    """No leak of the truth's time into the prior's fit; the ensemble mean beats bilinear and
    bicubic interpolation on every variable, with spread/skill in [0.8, 1.25] (issue 27)."""
    scores = ns["scores"]
    assert np.isfinite(scores.to_numpy()).all()
    assert np.datetime64(ns["t0"]) not in ns["others"].time.values
    assert (scores["ensemble mean"] < scores["bicubic"]).all(), scores
    assert (scores["bicubic"] < scores["bilinear"]).all(), scores
    assert scores["spread/skill"].between(0.8, 1.25).all(), scores


def _fusion(ns: dict) -> None:
    """Every score finite; IGRA+LR beats the unguided prior and the soundings alone everywhere."""
    rmse, crps = ns["rmse_table"], ns["crps_table"]
    assert np.isfinite(rmse.to_numpy()).all() and np.isfinite(crps.to_numpy()).all()
    assert (rmse.loc["IGRA+LR (w=1)"] < 0.5 * rmse.loc["unguided prior"]).all(), rmse
    assert (rmse.loc["IGRA+LR (w=1)"] < rmse.loc["IGRA"]).all(), rmse
    assert {"LR", "IGRA", "IGRA+LR (w=0.5)", "IGRA+LR (w=2)"} <= set(rmse.index)


def _uncertainty(ns: dict) -> None:
    """The correctly specified Gaussian case is calibrated; the mis-specified one is not."""
    right, wrong = "right sigma_y = 1 K2", "wrong sigma_y = 0.1 K2"
    assert 0.8 <= ns["chi2"][right] <= 1.2, ns["chi2"]  # at the withheld points (R + v form)
    assert ns["chi2"][wrong] > 2.0, ns["chi2"]
    ssr = ns["scores"]["spread-skill"]
    assert 0.8 <= ssr[right] <= 1.25 and ssr[wrong] < 0.8 * ssr[right], ssr
    outer = {k: float((h[0] + h[-1]) / h.sum()) for k, h in ns["ranks"].items()}
    assert outer[wrong] > outer[right] + 0.1, outer  # the U shape of overconfidence
    assert 0.5 <= ns["sigma_fitted"] <= 2.0  # Desroziers moves 0.1 K2 close to the true 1 K2
    v = ns["validation"]  # scores at the withheld points: the overconfident case is worse
    assert (v.loc[wrong, ["rmse", "crps"]] > v.loc[right, ["rmse", "crps"]]).all(), v


def _igra_files(ns: dict) -> None:
    """Real soundings became observations on the model's levels and guided a finite ensemble."""
    obs = ns["obs"]
    assert {"t850", "t500", "z500"} <= set(obs.variable) and obs.value.notna().all()
    assert ns["barrow"].attrs["igra_problems"]  # the truncated sounding was reported
    assert all(np.isfinite(ns["ens"][v]).all() for v in ns["model"].variables)


def _dask_year(ns: dict) -> None:
    """The resumed store is complete and equals the eager run."""
    assert ns["same"] is True
    assert (ns["stored"].sizes["time"] == 2) and "xdiffsr_run" in ns["stored"].attrs


def _training(ns: dict) -> None:
    """The model file reloads and samples."""
    assert ns["path"].is_file() and ns["tiny"].variables == ("t850", "z500")
    assert np.isfinite(ns["samples"].t850).all()


def _network_design(ns: dict) -> None:
    """Removing North America's stations raises z500's error at the withheld ones there."""
    scores = ns["scores"]
    assert np.isfinite(scores.drop(columns="units").to_numpy()).all()
    assert len(ns["held_na"]) > 0
    na = scores.loc["z500", "withheld in North America"]
    assert na["without North America"] > na["all kept stations"], scores
    assert not set(ns["held_out"].station) & set(ns["kept"].station)  # withheld = independent


CHECKS = {
    "01_quickstart": _quickstart,
    "02_fusion": _fusion,
    "03_uncertainty": _uncertainty,
    "04_igra_files": _igra_files,
    "05_dask_year": _dask_year,
    "06_training": _training,
    "07_network_design": _network_design,
}


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
