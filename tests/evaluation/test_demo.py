"""The one-command demo on the packaged default model, at reduced size, and the registry entry."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from xdiffsr.__main__ import main
from xdiffsr.evaluation.demo import HELDOUT, load_heldout, load_stations, run_demo
from xdiffsr.models.registry import DATA_DIR, registry


def test_packaged_default_model_matches_registry():
    entries = registry()
    path = DATA_DIR / "xdiffsr-default.safetensors"
    assert path.exists(), "the default model must ship with the package (offline demo)"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert entries["xdiffsr-default.safetensors"] == f"sha256:{digest}"
    model = xdiffsr.load_model("default")
    assert len(model.variables) == 13 and model.grid.shape == (64, 128)
    assert model.metadata  # training description travels with the weights


def test_packaged_heldout_state():
    ds = load_heldout()
    assert set(ds.data_vars) == set(xdiffsr.load_model("default").variables)
    assert ds["t850"].dims == ("time", "lat", "lon") and ds.sizes["lat"] == 64
    assert 200 < float(ds["t850"].mean()) < 320 and 90000 < float(ds["sp"].mean()) < 110000
    assert len(load_stations()) > 800
    assert HELDOUT.exists()


def test_demo_reduced_size(tmp_path, capsys):
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # 6 steps: the fewest the sampler's
        warnings.simplefilter("always")  # divergence message calls sound
        table = run_demo(out=tmp_path, members=2, steps=6, cg_iters=1, figure=True)
    assert not [w for w in caught if "diverged" in str(w.message)]
    assert len(table) == 13
    assert np.isfinite(table[["ensemble_mean", "bicubic", "spread"]].to_numpy()).all()
    assert (table["bicubic"] > 0).all()
    ens = xr.open_dataset(tmp_path / "ensemble.nc")
    assert ens["t850"].dims == ("time", "member", "lat", "lon") and ens.sizes["member"] == 2
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert "ensemble_mean" in capsys.readouterr().out


def test_cli_help(capsys):
    assert main(["demo", "--help"]) == 0  # the CLI returns its exit status
    assert "--members" in capsys.readouterr().out


def test_demo_and_evaluate_observe_on_the_same_coarse_grid():
    """``xdiffsr demo`` and ``xdiffsr evaluate`` coarsen to one 16 x 32 grid, longitudes from 0."""
    import inspect

    from xdiffsr.evaluation.datasets import coarse_grid
    from xdiffsr.evaluation.demo import observe
    from xdiffsr.evaluation.sequential import evaluate_sequential
    from xdiffsr.evaluation.suite import evaluate
    from xdiffsr.grid import cell_centre_grid
    from xdiffsr.osse import COARSE_GRID, coarsen

    assert COARSE_GRID == (16, 32)
    for fn in (evaluate, evaluate_sequential):
        assert inspect.signature(fn).parameters["coarse_grid"].default == COARSE_GRID
    truth = load_heldout().isel(time=[0])[["t850", "u500"]]
    stations = load_stations().iloc[:5]
    demo_lr, _ = observe(truth, stations)
    exact_lr, _ = observe(truth, stations, coarse_errors=False)
    suite_lr = coarsen(truth, *COARSE_GRID)  # what evaluate's LR configuration observes
    lat, lon = cell_centre_grid(*COARSE_GRID)
    for lr in (demo_lr, exact_lr, suite_lr, coarse_grid()):
        np.testing.assert_array_equal(lr["lat"], lat)
        np.testing.assert_array_equal(lr["lon"], lon)
    assert lon[:2].tolist() == [0.0, 11.25] and lat[0] == -84.375
    xr.testing.assert_allclose(exact_lr, suite_lr)


def test_demo_coarse_field_carries_the_errors_it_is_assimilated_with():
    """The demo's coarse field = exact average + Gaussian errors of the std ``super_resolve``
    assumes for it (the nominal table), so its innovation chi-square can read 1; seeded."""
    from xdiffsr.evaluation.demo import observe
    from xdiffsr.observations import default_error_std
    from xdiffsr.osse import COARSE_GRID, coarsen

    truth = load_heldout().isel(time=[0])[["t850", "u250", "z500", "sp"]]
    stations = load_stations().iloc[:5]
    exact = coarsen(truth, *COARSE_GRID)
    noisy, sondes = observe(truth, stations, seed=3)
    for v in truth.data_vars:
        err = (noisy[v] - exact[v]).values.ravel()  # 512 independent draws
        s = default_error_std(v)
        assert abs(err.std() / s - 1) < 0.15, v
        assert abs(err.mean()) < 4 * s / np.sqrt(err.size), v
        assert noisy[v].attrs == exact[v].attrs  # units travel
    again, sondes2 = observe(truth, stations, seed=3)
    xr.testing.assert_identical(noisy, again)
    pd.testing.assert_frame_equal(sondes, sondes2)
    other, _ = observe(truth, stations, seed=4)
    assert not np.allclose(other["t850"], noisy["t850"])
    pd.testing.assert_frame_equal(sondes, observe(truth, stations, seed=3, coarse_errors=False)[1])


def test_demo_figure_is_drawn_by_plot_maps(tmp_path, monkeypatch):
    """The demo's figure is plot.maps's (one set of conventions), on plain axes: the OSSE planet
    has flat orography, so coastlines would be decorative."""
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from xdiffsr.evaluation import demo, plot

    truth = load_heldout().isel(time=[0])[["t850"]]
    ens = xr.concat([truth, truth + 1.0], "member")
    drawn = []
    real = plot.maps

    def spy(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(plot, "maps", spy)
    demo._figure(truth, ens, truth + 0.5, tmp_path / "demo.png")
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    when = pd.Timestamp(truth["time"].values[0]).strftime("%Y-%m-%d %H:%M UTC")
    assert [ax.get_title() for ax in panels] == [
        f"t850: {name}\n{when}"
        for name in (
            "truth",
            "bicubic from 16x32",
            "ensemble mean, mean of 2 members",
            "ensemble std, spread of 2 members",
            "error of the mean (mean of 2 members − truth)",
        )
    ]
    assert all(type(ax) is Axes for ax in panels)
    assert {ax.collections[0].colorbar.ax.get_ylabel() for ax in panels} == {"t850 (K)"}
    err = panels[-1].collections[0].norm
    assert err.vmin == -err.vmax == pytest.approx(-0.5)  # mean of truth and truth + 1
    assert (tmp_path / "demo.png").stat().st_size > 10_000
