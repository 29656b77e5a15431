"""xdiffsr as an earth2studio assimilation model (issue 27), against the real earth2studio where
installed (the ``earth2studio`` extra; CI installs it with the test extra)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from xdiffsr.earth2studio_da import DiffSRAssimilation, earth2studio_names
from xdiffsr.errors import ObservationError, XDiffSRError

H, W = 8, 16
T0 = np.datetime64("2024-01-01T00:00", "ns")


def _prior(lat_ascending: bool = False, dateline: bool = False):
    rng = np.random.default_rng(0)
    lat = np.linspace(78.75, -78.75, H)[:: -1 if lat_ascending else 1]
    lon = np.arange(W) * 360.0 / W - (180.0 if dateline else 0.0)
    base = np.cumsum(rng.normal(size=(6, 3, H, W)), axis=-1)
    base = base - base.mean(-1, keepdims=True)
    coords = {"time": np.arange(6), "lat": ("lat", lat, {"units": "degrees_north"}),
              "lon": ("lon", lon, {"units": "degrees_east"})}
    ds = xr.Dataset({
        "t2m": (("time", "lat", "lon"), 280 + 2 * base[:, 0], {"units": "K"}),
        "u10": (("time", "lat", "lon"), 3 * base[:, 1], {"units": "m s-1"}),
        "t850": (("time", "lat", "lon"), 270 + 2 * base[:, 2], {"units": "K"}),
    }, coords)
    return xdiffsr.GaussianPrior.fit(ds, covariance="spectral", name="toy")


@pytest.fixture(scope="module")
def model():
    return DiffSRAssimilation(_prior(), members=4, steps=8, seed=1)


def _frame(time=T0, value=285.0):
    """An earth2studio observation frame: two surface stations and one sounding level."""
    df = pd.DataFrame({
        "time": pd.to_datetime([time] * 4),
        "lat": np.float32([33.75, -11.25, 33.75, 56.25]),
        "lon": np.float32([45.0, 202.5, 45.0, 315.0]),
        "observation": np.float32([value, value - 3.0, 4.0, 262.0]),
        "variable": ["t2m", "t2m", "u10m", "t"],
        "pres": np.float32([np.nan, np.nan, np.nan, 85000.0]),
        "quality": np.uint16([0, 0, 0, 0]),
    })
    df.attrs["request_time"] = np.array([time], dtype="datetime64[ns]")
    return df


def _run(model, *obs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model(*obs)


def test_satisfies_the_real_assimilation_model_protocol(model):
    base = pytest.importorskip(
        "earth2studio.models.da.base",
        reason="earth2studio not installed: pip install 'xdiffsr[earth2studio]'")
    assert isinstance(model, base.AssimilationModel)
    # earth2studio's own frame check accepts our frames against our input schema
    from earth2studio.models.da.utils import validate_observation_fields

    validate_observation_fields(_frame(), required_fields=list(model.input_coords()[0]))
    assert model.init_coords() is None
    assert model.to("cpu") is model


def test_stateless_call_returns_the_posterior_ensemble_in_earth2studio_layout(model):
    out = _run(model, _frame(), None)
    (coords,) = model.output_coords(model.input_coords(), request_time=np.array([T0]))
    assert out.dims == ("ensemble", "time", "variable", "lat", "lon")
    assert list(out.dims) == list(coords)
    assert out.shape == (4, 1, 3, H, W)
    assert list(out["variable"].values) == ["t2m", "u10m", "t850"]
    np.testing.assert_array_equal(out["time"].values, [T0])
    np.testing.assert_array_equal(out["lat"].values, model.prior.grid.lat)
    assert np.isfinite(out.values).all()
    # stateless: the same call gives the same members
    again = _run(model, _frame())
    np.testing.assert_array_equal(out.values, again.values)
    # the observation pulled the state towards it (observed at a grid point)
    t2m = out.sel(variable="t2m", lat=33.75, lon=45.0).mean("ensemble")
    prior_mean = model.prior.normalisation()[0][0, 1, 2]
    assert abs(float(t2m[0]) - 285.0) < abs(prior_mean - 285.0)


def test_generator_over_several_times(model):
    gen = model.create_generator()
    assert gen.send(None) is None
    times = [T0 + np.timedelta64(6 * k, "h") for k in range(3)]
    means = []
    for k, t in enumerate(times):
        out = gen.send((_frame(t, 280.0 + 5 * k),))
        assert out.dims == ("ensemble", "time", "variable", "lat", "lon")
        np.testing.assert_array_equal(out["time"].values, [t])
        means.append(float(out.sel(variable="t2m", lat=33.75, lon=45.0).mean()))
    gen.close()
    assert means[0] < means[1] < means[2]  # each time follows its own observation


def test_gridded_dataarray_input(model):
    lat = np.array([67.5, 22.5, -22.5, -67.5])  # 45-degree cells covering the globe
    lon = np.arange(4) * 90.0 + 45.0
    values = np.full((1, 1, 4, 4), 5.0)
    field = xr.DataArray(values, dims=("time", "variable", "lat", "lon"),
                         coords={"time": [T0], "variable": ["u10m"], "lat": lat, "lon": lon})
    m = DiffSRAssimilation(model.prior, members=4, steps=8, grid_sigma_y={"u10": 0.01})
    out = _run(m, field)
    u = out.sel(variable="u10m").mean("ensemble")
    w = np.cos(np.deg2rad(u["lat"]))
    # every coarse cell averages 5 m/s (error 0.1): so does the area mean of the ensemble mean
    assert abs(float(u.weighted(w).mean()) - 5.0) < 0.3, float(u.weighted(w).mean())


def test_unknown_variables_are_a_typed_error_naming_both_sets(model):
    df = _frame()
    df.loc[0, "variable"] = "sp"
    df.loc[1, "variable"] = "q"
    with pytest.raises(ObservationError) as err:
        _run(model, df)
    msg = str(err.value)
    assert "['q', 'sp']" in msg and "['t', 't2m', 'u10m']" in msg
    assert isinstance(err.value, XDiffSRError)
    field = xr.DataArray(np.zeros((1, 1, 2, 2)), dims=("time", "variable", "lat", "lon"),
                         coords={"time": [T0], "variable": ["msl"], "lat": [10.0, -10.0],
                                 "lon": [0.0, 180.0]})
    with pytest.raises(ObservationError, match=r"\['msl'\]"):
        _run(model, field)
    with pytest.raises(ObservationError, match="neither"):
        _run(model, np.zeros(3))
    with pytest.raises(ObservationError, match="no requested time"):
        _run(model)


def test_output_follows_earth2studio_grid_conventions():
    """A prior stored south to north on -180..180 still answers north to south on 0..360."""
    m = DiffSRAssimilation(_prior(lat_ascending=True, dateline=True), members=2, steps=4)
    out = _run(m, _frame())
    (coords,) = m.output_coords(m.input_coords(), request_time=np.array([T0]))
    assert np.all(np.diff(out["lat"].values) < 0) and np.all(np.diff(out["lon"].values) > 0)
    assert out["lon"].min() >= 0 and out["lon"].max() < 360
    np.testing.assert_array_equal(out["lat"].values, coords["lat"])
    np.testing.assert_array_equal(out["lon"].values, coords["lon"])
    # the observed point kept its value: t2m at (33.75 N, 45 E) pulled towards 285 K
    t2m = float(out.sel(variable="t2m", lat=33.75, lon=45.0).mean())
    assert abs(t2m - 285.0) < abs(float(m.prior.normalisation()[0][0].mean()) - 285.0)


def test_earth2studio_names():
    assert earth2studio_names(["t2m", "u10", "v10", "msl", "z500"]) == [
        "t2m", "u10m", "v10m", "msl", "z500"]
