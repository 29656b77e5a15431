"""Ensemble dimensions named ``number`` (cfgrib, ECMWF), ``realization`` (CF, WeatherBench-X),
``ensemble`` (earth2studio) or ``member`` are found by the metrics and the plots (issue 27)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.members import ENSEMBLE_DIMS, ensemble_dim
from xdiffsr.evaluation.metrics import (
    crps_ensemble,
    errors_at_points,
    rmse,
    spread_skill_ratio,
)
from xdiffsr.grid import cell_centre_grid


@pytest.fixture(scope="module")
def fields():
    lat, lon = cell_centre_grid(8, 16)
    times = pd.date_range("2001-01-01", periods=2, freq="12h")
    rng = np.random.default_rng(0)
    truth = xr.DataArray(rng.normal(size=(2, 8, 16)), dims=("time", "lat", "lon"),
                         coords={"time": times, "lat": lat, "lon": lon}, name="t850",
                         attrs={"units": "K"})
    members = truth.values[:, None] + rng.normal(size=(2, 5, 8, 16)) + 0.3
    ens = xr.DataArray(members, dims=("time", "member", "lat", "lon"),
                       coords={"time": times, "member": np.arange(5), "lat": lat, "lon": lon},
                       name="t850", attrs={"units": "K"})
    return truth, ens


def _hand_rmse(mean, truth):
    w = np.cos(np.deg2rad(truth["lat"].values))[:, None]
    sq = (mean - truth.values) ** 2
    return np.sqrt((sq * w).sum(axis=(-2, -1)) / (w.sum() * sq.shape[-1]))


@pytest.mark.parametrize("name", ENSEMBLE_DIMS)
def test_metrics_find_the_ensemble_dimension(fields, name):
    truth, ens = fields
    e = ens.rename(member=name)
    ref = _hand_rmse(ens.values.mean(axis=1), truth)
    # about 2 % apart: cell-area and cosine weights differ slightly on 8 rows
    np.testing.assert_allclose(rmse(e, truth).values, ref, rtol=0.03)
    np.testing.assert_allclose(rmse(e, truth).values, rmse(ens, truth, member_dim="member"))
    np.testing.assert_allclose(crps_ensemble(e, truth).values,
                               crps_ensemble(ens, truth, member_dim="member").values)
    np.testing.assert_allclose(spread_skill_ratio(e, truth).values,
                               spread_skill_ratio(ens, truth, member_dim="member").values)
    points = pd.DataFrame({"lat": [10.0, -40.0], "lon": [30.0, 200.0]})
    np.testing.assert_allclose(errors_at_points(e, truth, points).values,
                               errors_at_points(ens, truth, points, member_dim="member").values)


def test_several_ensemble_dimensions_need_member_dim(fields):
    truth, ens = fields
    both = ens.expand_dims(number=[0])
    with pytest.raises(ArgumentError, match="several ensemble dimensions"):
        rmse(both, truth)
    assert rmse(both.isel(number=0), truth).dims == ("time",)
    # an explicit member_dim wins (the other dimension is then averaged as data would be)
    assert ensemble_dim(both, "member") == "member"


def test_crps_without_any_ensemble_dimension_names_them(fields):
    truth, _ = fields
    with pytest.raises(ArgumentError, match="'member', 'number', 'realization', 'ensemble'"):
        crps_ensemble(truth + 1, truth)
    # a deterministic forecast: rmse as is
    np.testing.assert_allclose(rmse(truth + 1, truth).values, 1.0)


@pytest.mark.parametrize("name", ["number", "realization", "ensemble"])
def test_plots_find_the_ensemble_dimension(fields, name):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from xdiffsr.evaluation import plot

    truth, ens = fields
    e = ens.rename(member=name)
    fig = plot.maps(truth, e, "t850", time=1, projection=None,
                    baselines={"other ensemble": e})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any("mean of 5 members" in t for t in titles), titles
    assert not any("deterministic" in t for t in titles)
    fig = plot.spectra(truth, e, "t850")
    ref = plot.spectra(truth, ens, "t850")
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(),
                               ref.axes[0].lines[1].get_ydata())
    fig = plot.latitude_trace(truth, e, "t850", time=1)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert any("5 members" in label for label in labels), labels
    points = pd.DataFrame({"lat": [10.0], "lon": [30.0]})
    fig = plot.scatter_points(truth, e, points, "t850")
    ref = plot.scatter_points(truth, ens, points, "t850")
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(),
                               ref.axes[0].collections[0].get_offsets())
    import matplotlib.pyplot as plt

    plt.close("all")
