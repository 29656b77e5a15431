"""Tests of xdiffsr.evaluation.metrics against hand-computed cases and statistical properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import norm

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.evaluation import metrics


def grid(nlat: int, nlon: int, *, descending: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Equiangular cell-centre grid (no pole points), as WeatherBench 2's 2.8125 deg grid."""
    dlat = 180.0 / nlat
    lat = -90 + dlat / 2 + dlat * np.arange(nlat)
    lon = 360.0 / nlon * np.arange(nlon)
    return (lat[::-1] if descending else lat), lon


def field(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, **extra_dims) -> xr.DataArray:
    dims = [*extra_dims, "lat", "lon"]
    coords = {"lat": lat, "lon": lon, **{k: np.arange(v) for k, v in extra_dims.items()}}
    return xr.DataArray(values, dims=dims, coords=coords)


# ------------------------------------------------------------------------------ weights / RMSE
def test_latitude_weights_wb2_grid_proportional_to_cosine():
    lat, _ = grid(64, 128)
    # 64 cell centres 2.8125 deg apart: +-88.59375 (the issue's +-87.1875 is the 5.625 deg grid's)
    assert lat[0] == pytest.approx(-88.59375) and lat[-1] == pytest.approx(88.59375)
    w = metrics.latitude_weights(lat)
    expected = np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(w, expected / expected.mean(), rtol=1e-12)
    # descending latitudes give the same weights, reversed
    np.testing.assert_allclose(metrics.latitude_weights(lat[::-1]), w.values[::-1], rtol=1e-12)


def test_latitude_weights_rejects_bad_latitudes():
    with pytest.raises(CoordinateError, match="lat"):
        metrics.latitude_weights(np.array([0.0, 10.0, 5.0]))
    with pytest.raises(CoordinateError, match="lat"):
        metrics.latitude_weights(np.array([0.0, 95.0]))


def test_rmse_polar_cap_hand_computed():
    # 30-deg bands: cell bounds at 0, +-30, +-60, +-90. Error 1 in the two polar rows only,
    # whose area fraction is 1 - sin(60 deg), so RMSE = sqrt(1 - sqrt(3)/2).
    lat, lon = grid(6, 8)
    err = np.zeros((6, 8))
    err[[0, -1], :] = 1.0
    truth = field(np.full((6, 8), 280.0), lat, lon)
    out = metrics.rmse(truth + err, truth)
    assert float(out) == pytest.approx(np.sqrt(1 - np.sqrt(3) / 2), rel=1e-12)
    assert float(metrics.rmse(truth + err, truth, weights=None)) == pytest.approx(np.sqrt(1 / 3))


def test_rmse_hemispheres_ensemble_mean_and_time():
    lat, lon = grid(16, 32, descending=True)
    north = (lat > 0)[:, None] * np.ones((1, 32))
    err = np.where(north, 3.0, 4.0)  # RMSE over the sphere = sqrt((9 + 16) / 2)
    truth = field(np.zeros((2, 16, 32)), lat, lon, time=2)
    # ensemble of 2 members whose mean has error `err`; members individually have larger errors
    members = np.stack([err - 5.0, err + 5.0])
    fc = field(np.broadcast_to(members[:, None], (2, 2, 16, 32)), lat, lon, member=2, time=2)
    out = metrics.rmse(fc, truth)
    assert out.dims == ("time",)
    np.testing.assert_allclose(out, np.sqrt(12.5), rtol=1e-12)
    ds = metrics.rmse(
        xr.Dataset({"t850": fc}), xr.Dataset({"t850": truth}), dims=("time", "lat", "lon")
    )
    assert float(ds["t850"]) == pytest.approx(np.sqrt(12.5), rel=1e-12)


def test_rmse_is_lazy_on_dask_and_matches_eager():
    rng = np.random.default_rng(0)
    lat, lon = grid(8, 16)
    a = field(rng.normal(size=(3, 8, 16)), lat, lon, time=3)
    b = field(rng.normal(size=(3, 8, 16)), lat, lon, time=3)
    lazy = metrics.rmse(a.chunk({"time": 1}), b.chunk({"time": 1}))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute(), metrics.rmse(a, b), rtol=1e-12)


def test_rmse_bad_dims_and_weights():
    lat, lon = grid(4, 8)
    a = field(np.zeros((4, 8)), lat, lon)
    with pytest.raises(ArgumentError, match="dims"):
        metrics.rmse(a, a, dims=("latitude", "lon"))
    with pytest.raises(ArgumentError, match="weights"):
        metrics.rmse(a, a, weights="cosine")


# ----------------------------------------------------------------------------------------- CRPS
@pytest.mark.parametrize(
    ("members", "obs", "fair", "expected"),
    [
        # fair: (|x1-y| + |x2-y|)/2 - |x1-x2|/2 ; empirical: ... - |x1-x2|/4
        ((0.0, 2.0), 1.0, True, 0.0),
        ((0.0, 2.0), 1.0, False, 0.5),
        ((0.0, 2.0), 3.0, True, 1.0),
        ((0.0, 2.0), 3.0, False, 1.5),
        ((1.0, 1.0), 4.0, True, 3.0),
    ],
)
def test_crps_two_member_hand_computed(members, obs, fair, expected):
    fc = xr.DataArray(np.array(members), dims="member")
    out = metrics.crps_ensemble(fc, xr.DataArray(obs), fair=fair, dims=())
    assert float(out) == pytest.approx(expected, abs=1e-14)


def test_crps_single_member_is_absolute_error_and_fair_needs_two():
    fc = xr.DataArray([[2.5]], dims=("x", "member"))
    out = metrics.crps_ensemble(fc, xr.DataArray([1.0], dims="x"), fair=False, dims=())
    assert float(out[0]) == pytest.approx(1.5)
    with pytest.raises(ArgumentError, match="2 members"):
        metrics.crps_ensemble(fc, xr.DataArray([1.0], dims="x"), dims=())


def test_crps_matches_brute_force_pairs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 7))
    y = rng.normal(size=50)
    pairs = np.abs(x[:, :, None] - x[:, None, :]).sum(axis=(1, 2))
    skill = np.abs(x - y[:, None]).mean(axis=1)
    for fair, norm_ in ((True, 2 * 7 * 6), (False, 2 * 49)):
        out = metrics.crps_ensemble(
            xr.DataArray(x, dims=("p", "member")), xr.DataArray(y, dims="p"), fair=fair, dims=()
        )
        np.testing.assert_allclose(out, skill - pairs / norm_, rtol=1e-12, atol=1e-14)


def test_fair_crps_unbiased_for_gaussian():
    # E[fair CRPS] of a 3-member N(0,1) ensemble equals CRPS(N(0,1), y); for y = 0 this is
    # 2 phi(0) - 1/sqrt(pi) (Gneiting & Raftery 2007, Eq. 5); the empirical form is biased high.
    rng = np.random.default_rng(2)
    fc = xr.DataArray(rng.normal(size=(200_000, 3)), dims=("p", "member"))
    y = xr.DataArray(np.zeros(200_000), dims="p")
    exact = 2 * norm.pdf(0) - 1 / np.sqrt(np.pi)
    fair = float(metrics.crps_ensemble(fc, y, dims=("p",), weights=None))
    biased = float(metrics.crps_ensemble(fc, y, fair=False, dims=("p",), weights=None))
    assert fair == pytest.approx(exact, abs=0.004)
    assert biased - exact > 0.05


def test_crps_dask_with_chunked_members():
    rng = np.random.default_rng(3)
    lat, lon = grid(8, 16)
    fc = field(rng.normal(size=(4, 8, 16)), lat, lon, member=4)
    y = field(rng.normal(size=(8, 16)), lat, lon)
    lazy = metrics.crps_ensemble(fc.chunk({"member": 2, "lat": 4}), y.chunk({"lat": 4}))
    np.testing.assert_allclose(lazy.compute(), metrics.crps_ensemble(fc, y), rtol=1e-12)


# ------------------------------------------------------------------------------ spread-skill
def test_spread_skill_ratio_reliable_ensemble_is_one():
    # truth and members exchangeable draws: expected corrected ratio is 1 (Fortin et al. 2014)
    rng = np.random.default_rng(4)
    lat, lon = grid(32, 64)
    draws = rng.normal(size=(6, 32, 64)) * 2.0 + 10.0
    fc = field(draws[:5], lat, lon, member=5)
    truth = field(draws[5], lat, lon)
    ratio = float(metrics.spread_skill_ratio(fc, truth))
    assert ratio == pytest.approx(1.0, abs=0.04)
    raw = float(metrics.spread_skill_ratio(fc, truth, finite_ensemble_correction=False))
    assert raw == pytest.approx(ratio * np.sqrt(5 / 6), rel=1e-12)
    # an under-dispersed ensemble (members shrunk towards their mean) has a ratio below 1
    shrunk = fc.mean("member") + 0.3 * (fc - fc.mean("member"))
    assert float(metrics.spread_skill_ratio(shrunk, truth)) < 0.7


def test_spread_skill_hand_computed():
    fc = xr.DataArray([[1.0, 3.0], [1.0, 3.0]], dims=("x", "member"))  # var (ddof=1) = 2
    truth = xr.DataArray([0.0, 4.0], dims="x")  # ensemble mean 2: errors 2 and 2
    out = metrics.spread_skill_ratio(fc, truth, dims=("x",), finite_ensemble_correction=False)
    assert float(out) == pytest.approx(np.sqrt(2) / 2)


# --------------------------------------------------------------------------------- spectrum
def test_zonal_spectrum_single_wave():
    lat, lon = grid(4, 128)
    lam = np.deg2rad(lon)
    amp = np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    x = field(amp * np.cos(5 * lam + 0.3) + 7.0, lat, lon)
    spec = metrics.zonal_spectrum(x)
    assert spec.sizes["zonal_wavenumber"] == 65
    np.testing.assert_allclose(spec.sel(zonal_wavenumber=5), amp[:, 0] ** 2 / 2, rtol=1e-12)
    np.testing.assert_allclose(spec.sel(zonal_wavenumber=0), 49.0, rtol=1e-12)
    others = spec.drop_sel(zonal_wavenumber=[0, 5])
    assert float(np.abs(others).max()) < 1e-24
    wl = spec.wavelength.sel(zonal_wavenumber=5)
    circ = 2 * np.pi * 6_371_000 * np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(wl, circ / 5, rtol=1e-12)


def test_zonal_spectrum_parseval_and_nyquist_dask():
    rng = np.random.default_rng(5)
    lat, lon = grid(6, 12)
    x = field(rng.normal(size=(2, 6, 12)), lat, lon, time=2)
    spec = metrics.zonal_spectrum(x.chunk({"lon": 4}))
    np.testing.assert_allclose(spec.sum("zonal_wavenumber"), (x**2).mean("lon"), rtol=1e-12)
    nyq = field(np.tile([1.0, -1.0], (6, 6)), lat, lon)  # cos(pi j): all power at k = n/2
    np.testing.assert_allclose(metrics.zonal_spectrum(nyq).isel(zonal_wavenumber=-1), 1.0)
    with pytest.raises(CoordinateError, match="lon_dim"):
        metrics.zonal_spectrum(xr.DataArray(np.zeros(3), dims="x"))


# ---------------------------------------------------------------------- observed/unobserved
def test_observation_mask_nearest_and_radius():
    lat, lon = grid(16, 32)  # 11.25 deg cells
    la, lo = xr.DataArray(lat, dims="lat"), xr.DataArray(lon, dims="lon")
    pts = pd.DataFrame({"lat": [0.1, 50.0, 50.2], "lon": [-0.5, 359.0, 180.0]})
    m = metrics.observation_mask(la, lo, pts)
    assert int(m.sum()) == 3
    assert bool(m.sel(lat=5.625, lon=0.0)) and bool(m.sel(lat=50.625, lon=0.0))
    assert bool(m.sel(lat=50.625, lon=180.0))
    # radius: cell centres within 1000 km of (0, 0)
    m2 = metrics.observation_mask(
        la, lo, pd.DataFrame({"lat": [0.0], "lon": [0.0]}), radius_km=1000
    )
    assert int(m2.sum()) == 2  # (+-5.625, 0): 625 km; (+-5.625, 11.25): 1399 km, excluded


def test_errors_at_points_separates_observed_cells():
    lat, lon = grid(8, 16)
    truth = field(np.zeros((8, 16)), lat, lon)
    fc = truth + 2.0
    fc.loc[{"lat": lat[2], "lon": lon[3]}] = 0.5  # perfect-ish at the observed cell
    pts = pd.DataFrame(
        {
            "time": pd.to_datetime(["2000-01-01"]),
            "lat": [lat[2] + 1],
            "lon": [lon[3] - 1],
            "variable": ["t850"],
            "value": [0.0],
        }
    )
    out = metrics.errors_at_points(fc, truth, pts)
    assert list(out.location.values) == ["observed", "unobserved"]
    np.testing.assert_allclose(out, [0.5, 2.0], rtol=1e-12)
    with pytest.raises(ArgumentError, match="lat"):
        metrics.errors_at_points(fc, truth, pd.DataFrame({"x": [1]}))
