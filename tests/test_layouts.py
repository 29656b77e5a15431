"""Real data as climate scientists hold it (issue #14, part A): one lexicon of names, the
caller's grid back, units, calendars, Gaussian grids, the covariance memory guard, provenance.

Each test reproduces an observed failure and checks it is now right or a typed error. Real
files come from ``tests.conftest.SHARED_DATA / "era5"`` (skipped when absent).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from xdiffsr.errors import ArgumentError, CoordinateError, UnitsError, XDiffSRWarning
from xdiffsr.evaluation.metrics import check_same_grid, crps_ensemble, rmse
from xdiffsr.grid import find_time, grid_of, to_datetime64
from xdiffsr.models.prior import _check_covariance_memory
from xdiffsr.names import channel_name, parse_channel, to_model_layout
from xdiffsr.train.data import select_variables

pytestmark = pytest.mark.filterwarnings("ignore::xdiffsr.errors.XDiffSRWarning")

FAST = {"members": 2, "steps": 3, "seed": 0}


def _raise(value):
    raise ValueError(f"non-strict JSON constant {value}")


@pytest.fixture(scope="module")
def cfgrib(shared_data) -> xr.Dataset:
    """The ERA5 ensemble file (cfgrib layout: number, time, isobaricInhPa, latitude descending,
    longitude), thinned to a 16 x 30 grid and loaded."""
    path = shared_data / "era5" / "era5_ens10_3deg_z_t_2017-01.nc"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_dataset(path)
    return ds.isel(latitude=slice(0, None, 4), longitude=slice(0, None, 4)).load()


def _flat(ds: xr.Dataset) -> xr.Dataset:
    """t850 and z500 selected by hand: the reference flat layout."""
    return xr.Dataset(
        {
            "t850": ds["t"].sel(isobaricInhPa=850.0, drop=True),
            "z500": ds["z"].sel(isobaricInhPa=500.0, drop=True),
        }
    )


def _wb2(ds: xr.Dataset, pascal: bool = False) -> xr.Dataset:
    """The same data in the WeatherBench 2 layout (``temperature(time, level, ...)``)."""
    out = ds.rename(t="temperature", z="geopotential", isobaricInhPa="level")
    if pascal:
        out = out.assign_coords(level=("level", out.level.values * 100, {"units": "Pa"}))
    return out


# ------------------------------------------------------------------------------------ lexicon
def test_channel_names_round_trip():
    assert parse_channel("t850") == ("t", 850.0)
    assert parse_channel("u10m") == ("u10", None)
    assert parse_channel("t2m") == ("t2m", None)
    assert parse_channel("gh500") == ("gh", 500.0)
    assert channel_name("temperature", 850) == "t850"
    assert channel_name("10m_u_component_of_wind") == "u10"


def test_cfgrib_member_dimension_is_refused_with_the_fix(cfgrib):
    with pytest.raises(CoordinateError, match=r"'number'.*\.sel\(number=0\)"):
        to_model_layout(cfgrib, ["t850"])
    flat = to_model_layout(cfgrib.sel(number=0), ["t850", "z500"])
    ref = _flat(cfgrib.sel(number=0))
    np.testing.assert_array_equal(flat["t850"].values, ref["t850"].values)
    assert flat["t850"].dims == ("time", "latitude", "longitude")


@pytest.mark.parametrize("pascal", [False, True])
def test_wb2_layout_fit_equals_flat_fit(cfgrib, pascal):
    one = cfgrib.sel(number=0)
    flat = xdiffsr.GaussianPrior.fit(_flat(one), rank=3)
    wb2 = xdiffsr.GaussianPrior.fit(_wb2(one, pascal), rank=3, variables=["t850", "z500"])
    np.testing.assert_allclose(wb2.center, flat.center)
    np.testing.assert_allclose(wb2.scale, flat.scale)
    np.testing.assert_allclose(wb2._mean_n, flat._mean_n)
    assert 200 < wb2.center[0] < 300  # a temperature, not 27,115 K of mixed levels


def test_wb2_layout_fit_without_variables_is_refused(cfgrib):
    with pytest.raises(CoordinateError, match=r"'level'.*variables=\['z850'"):
        xdiffsr.GaussianPrior.fit(_wb2(cfgrib.sel(number=0)), rank=3)


def test_wb2_observations_equal_flat_observations(cfgrib):
    one = cfgrib.sel(number=0)
    prior = xdiffsr.GaussianPrior.fit(_flat(one), rank=3)
    t = one.time.values[0]
    a = xdiffsr.GridObservations(_flat(one)).at_time(t, prior)
    b = xdiffsr.GridObservations(_wb2(one, pascal=True)).at_time(t, prior)
    np.testing.assert_array_equal(a.y, b.y)
    assert (a.matrix != b.matrix).nnz == 0
    with pytest.raises(xdiffsr.ObservationError, match=r"sel\(number=0\)"):
        xdiffsr.GridObservations(cfgrib)


def test_wb2_truth_in_metrics_equals_flat_truth(cfgrib):
    flat = _flat(cfgrib.sel(number=0))
    ens = _flat(cfgrib.isel(number=slice(1, 5))).rename(number="member")
    wb2 = _wb2(cfgrib.sel(number=0))
    for f in (rmse, crps_ensemble):
        a, b = f(ens, flat), f(ens, wb2)
        for v in ("t850", "z500"):
            np.testing.assert_allclose(a[v].values, b[v].values)


def test_train_select_variables_uses_the_lexicon(cfgrib):
    sel = select_variables(_wb2(cfgrib.sel(number=0)), ["t850", "geopotential@500"])
    assert list(sel.data_vars) == ["t850", "z500"]
    np.testing.assert_array_equal(sel.t850.values, _flat(cfgrib.sel(number=0)).t850.values)


# --------------------------------------------------------------------- the caller's grid back
def _prior_and_truth(cfgrib):
    """A prior on an ascending lat/lon copy of the grid; the truth as the file holds it
    (latitude descending)."""
    truth = _flat(cfgrib.sel(number=0))
    ref = truth.rename(latitude="lat", longitude="lon").sortby("lat")
    prior = xdiffsr.GaussianPrior.fit(ref, rank=3)
    return prior, truth


def test_result_keeps_the_callers_names_and_orientation(cfgrib):
    prior, truth = _prior_and_truth(cfgrib)
    truth.attrs["history"] = "2017-02-01 made by hand"
    coarse = truth.isel(latitude=slice(1, None, 2), longitude=slice(0, None, 2))
    ens = xdiffsr.super_resolve(truth, [coarse], model=prior, member_dim="realization", **FAST)
    assert ens.t850.dims == ("time", "realization", "latitude", "longitude")
    np.testing.assert_array_equal(ens.latitude.values, truth.latitude.values)
    np.testing.assert_array_equal(ens.longitude.values, truth.longitude.values)
    err = ens.t850.mean("realization") - truth.t850
    assert err.dims == truth.t850.dims and err.shape == truth.t850.shape
    score = rmse(ens, _wb2(cfgrib.sel(number=0)), member_dim="realization")  # diagnostics too
    assert score.t850.dims == ("time",) and np.isfinite(score.t850).all()
    # provenance: version, model identity, settings, sources, weights, history appended
    assert ens.attrs["xdiffsr_version"] == xdiffsr.__version__
    assert ens.attrs["model_sha256"] == prior.fingerprint()
    assert ens.attrs["history"].startswith("2017-02-01 made by hand\n")
    for key, value in ens.attrs.items():
        assert isinstance(value, str), key
        assert "NaN" not in value and "Infinity" not in value, key
    for key in ("sampler", "sources", "weights"):
        json.loads(ens.attrs[key], parse_constant=_raise)
    assert json.loads(ens.attrs["sampler"], parse_constant=_raise)["members"] == 2
    assert json.loads(ens.attrs["weights"]) == [1.0]


def test_metrics_refuse_two_grids(cfgrib):
    _, truth = _prior_and_truth(cfgrib)
    ens = truth.rename(latitude="lat", longitude="lon").expand_dims(member=2)
    with pytest.raises(CoordinateError, match="rename"):
        rmse(ens, truth)
    shifted = truth.assign_coords(longitude=truth.longitude + 1.0)
    with pytest.raises(CoordinateError, match="different longitude grids"):
        crps_ensemble(truth.expand_dims(member=2), shifted)
    assert check_same_grid(truth, truth.sortby("latitude")) == ("latitude", "longitude")


def test_other_target_grid_is_refused_never_ignored(cfgrib):
    prior, truth = _prior_and_truth(cfgrib)
    times = truth.time.values[:1]
    lat2d, lon2d = np.meshgrid(truth.latitude.values, truth.longitude.values, indexing="ij")
    curvi = xr.Dataset(coords={"time": times, "nav_lat": (("y", "x"), lat2d),
                               "nav_lon": (("y", "x"), lon2d)})
    with pytest.raises(CoordinateError, match="output_grid='model'"):
        xdiffsr.super_resolve(curvi, [], model=prior, **FAST)
    other = truth.isel(time=[0], latitude=slice(0, 8))
    with pytest.raises(CoordinateError, match="not regridded silently"):
        xdiffsr.super_resolve(other, [], model=prior, **FAST)
    out = xdiffsr.super_resolve(other, [], model=prior, output_grid="model", **FAST)
    assert out.t850.dims == ("time", "member", "lat", "lon")


# ------------------------------------------------------------------------------------- units
def _t_field(cfgrib, units):
    da = _flat(cfgrib.sel(number=0))["t850"].isel(time=[0]) - 273.15
    da.attrs = {"units": units} if units else {}
    return xr.Dataset({"t850": da})


def test_grid_without_units_is_refused_and_degc_is_converted(cfgrib):
    prior, _ = _prior_and_truth(cfgrib)
    bare = _t_field(cfgrib, None).rename(latitude="lat", longitude="lon")
    with pytest.raises(UnitsError, match=r"'t850'.*units="):
        xdiffsr.GridObservations(bare)
    t = bare.time.values[0]
    stated = xdiffsr.GridObservations(bare, units={"t850": "degC"}).at_time(t, prior)
    attr = xdiffsr.GridObservations(bare.assign(t850=bare.t850.assign_attrs(units="degC")))
    np.testing.assert_allclose(stated.y, attr.at_time(t, prior).y)
    assert stated.y.min() > 200  # kelvin
    assumed = xdiffsr.GridObservations(bare, assume_units=True).at_time(t, prior)
    assert assumed.y.max() < 100  # taken as the model's units, by request


def test_points_without_units_are_refused():
    df = pd.DataFrame({"time": [pd.Timestamp("2017-01-01")], "lat": [0.0], "lon": [0.0],
                       "variable": ["t850"], "value": [5.0]})
    with pytest.raises(UnitsError, match=r"\['t850'\].*units="):
        xdiffsr.PointObservations(df)
    assert xdiffsr.PointObservations(df, units="degC").data["units"].iloc[0] == "degC"
    assert "units" not in xdiffsr.PointObservations(df, assume_units=True).data


# -------------------------------------------------------------------------------------- time
def test_cftime_calendars(cfgrib):
    cftime = pytest.importorskip("cftime")
    noleap = [cftime.DatetimeNoLeap(2017, 1, 1, h) for h in (0, 12)]
    np.testing.assert_array_equal(
        to_datetime64(np.array(noleap)), np.array(["2017-01-01T00", "2017-01-01T12"],
                                                  dtype="datetime64[ns]"))
    ds = xr.Dataset(coords={"time": noleap})
    assert find_time(ds) == "time"
    d360 = np.array([cftime.Datetime360Day(2017, 2, 30)])
    with pytest.raises(CoordinateError, match=r"360_day.*noleap"):
        to_datetime64(d360)
    with pytest.raises(CoordinateError, match="does not exist"):
        to_datetime64(np.array([cftime.DatetimeAllLeap(2017, 2, 29)]))
    prior, truth = _prior_and_truth(cfgrib)
    target = xr.Dataset(coords={"time": noleap})
    out = xdiffsr.super_resolve(target, [], model=prior, guidance="none", **FAST)
    assert out.time.values[0] == noleap[0]  # the caller's dates back
    obs = truth.isel(time=[0]).assign_coords(time=noleap[:1])
    blk = xdiffsr.GridObservations(obs).at_time(np.datetime64("2017-01-01T00", "ns"), prior)
    assert blk is not None and blk.y.size > 0
    with pytest.raises(CoordinateError, match="360_day"):
        xdiffsr.super_resolve(xr.Dataset(coords={"time": d360}), [], model=prior, **FAST)


# ------------------------------------------------------------------------------------- grids
def _gaussian_lat(n: int) -> np.ndarray:
    x, _ = np.polynomial.legendre.leggauss(n)
    return np.rad2deg(np.arcsin(x))


def test_gaussian_latitudes_in_fit_observations_and_metrics():
    lat, lon = _gaussian_lat(12), 15.0 * np.arange(24)
    g = np.random.default_rng(0)
    ds = xr.Dataset(
        {"t850": (("time", "lat", "lon"), 270 + g.normal(size=(5, 12, 24)), {"units": "K"})},
        coords={"time": pd.date_range("2020", periods=5, freq="6h"),
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    assert grid_of(ds).shape == (12, 24)
    prior = xdiffsr.GaussianPrior.fit(ds, rank=4)
    coarse = ds.isel(time=[0], lat=slice(1, -1, 2), lon=slice(0, None, 2))
    blk = xdiffsr.GridObservations(coarse).at_time(ds.time.values[0], prior)
    assert np.isfinite(blk.y).all() and blk.y.size == 5 * 12
    ens = ds.isel(time=[0]).expand_dims(member=2)
    assert float(rmse(ens, ds.isel(time=[0])).t850.max()) == 0.0
    with pytest.raises(CoordinateError, match="monotonic"):
        grid_of(ds.isel(lat=[0, 2, 1, 3]))
    with pytest.raises(CoordinateError, match=r"longitude.*not regularly spaced"):
        grid_of(ds.isel(lon=[0, 1, 3, 4]))


def test_full_covariance_memory_guard(shared_data):
    with pytest.raises(ArgumentError, match="rank="):
        _check_covariance_memory(4 * 181 * 360, available=64 * 2**30)
    _check_covariance_memory(100, available=64 * 2**30)
    path = shared_data / "era5" / "era5_global_1deg_2026-03.zarr"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(path)
    with pytest.raises(ArgumentError, match=r"GiB.*rank="):
        xdiffsr.GaussianPrior.fit(ds[["t2m", "u10", "v10", "msl"]], dim="time_index")


def test_super_resolve_assume_units(cfgrib):
    prior, truth = _prior_and_truth(cfgrib)
    bare = truth.isel(time=[0]).copy()
    for v in bare.data_vars:
        bare[v].attrs.pop("units", None)
    with pytest.raises(UnitsError):
        xdiffsr.super_resolve(truth.isel(time=[0]), [bare], model=prior, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XDiffSRWarning)
        out = xdiffsr.super_resolve(truth.isel(time=[0]), [bare], model=prior,
                                    assume_units=True, **FAST)
    assert np.isfinite(out.t850.values).all()


def test_point_variables_of_other_layouts_are_renamed():
    lat, lon = -84.375 + 11.25 * np.arange(16), 11.25 * np.arange(32)
    mean = xr.Dataset(
        {"u10": (("lat", "lon"), np.zeros((16, 32)), {"units": "m s-1"})},
        coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    prior = xdiffsr.GaussianPrior(mean, np.eye(16 * 32))
    t = np.datetime64("2020-01-01T00", "ns")
    df = pd.DataFrame({"time": [t], "lat": [0.0], "lon": [10.0], "variable": ["u10m"],
                       "value": [3.0], "units": ["m s-1"]})
    blk = xdiffsr.PointObservations(df).at_time(t, prior)
    assert blk.y.tolist() == [3.0] and blk.var_index.tolist() == [0]


def test_plots_refuse_two_grids(cfgrib):
    pytest.importorskip("matplotlib")
    from xdiffsr.evaluation.plot import maps

    _, truth = _prior_and_truth(cfgrib)
    ens = truth.rename(latitude="lat", longitude="lon").expand_dims(member=2)
    with pytest.raises(CoordinateError, match="rename"):
        maps(truth, ens, "t850")
    fig = maps(truth, truth.expand_dims(member=2), "t850")
    assert len(fig.axes) >= 4
