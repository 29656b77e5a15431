"""End to end: radiosondes (real IGRA files and simulated soundings at real stations) and a coarse
field through ``super_resolve``, with a Gaussian prior whose posterior is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from tests.test_accessor import _coarse, _covariance, _mean_ds
from xdiffsr.io.igra import read_igra, read_station_list
from xdiffsr.osse.stations import active_stations, simulate_soundings

TIMES = pd.DatetimeIndex(["2020-01-01T00", "2020-01-01T12"])


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior(_mean_ds(), _covariance())


def _truth_ds(seed=0):
    g = np.random.default_rng(seed)
    L = np.linalg.cholesky(_covariance() + 1e-6 * np.eye(256))
    mu = np.stack([_mean_ds()[v].values for v in ("t850", "z500")]).ravel()
    x = np.stack([(mu + L @ g.normal(size=256)).reshape(2, 8, 16) for _ in TIMES])
    m = _mean_ds()
    return xr.Dataset(
        {v: (("time", "lat", "lon"), x[:, c], m[v].attrs) for c, v in enumerate(("t850", "z500"))},
        coords={"time": TIMES, **m.coords},
    )


def _rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_simulated_network_and_coarse_field(prior, shared_data):
    stations = active_stations(
        read_station_list(shared_data / "igra" / "igra2-station-list-v2.2.txt"), 2020
    )
    assert len(stations) > 500
    truth = _truth_ds()
    sondes = simulate_soundings(truth, stations, seed=1)  # the schema of read_igra
    assert {"pressure", "temperature", "gph", "station"} <= set(sondes.columns)
    coarse = _coarse(truth[["t850", "z500"]].isel(time=0).to_array().values, times=TIMES)
    target = xr.Dataset(coords={"time": TIMES})
    out = target.diffsr.super_resolve(
        [sondes, coarse], weights=[1.0, 1.0], model=prior, members=32, steps=18, guidance="mmps"
    )
    assert "igra" in out.attrs["sources"]
    for v in ("t850", "z500"):
        mean = out[v].mean("member").values
        assert np.isfinite(out[v].values).all()
        prior_err = _rmse(_mean_ds()[v].values[None], truth[v].values)
        post_err = _rmse(mean, truth[v].values)
        # a dense real network (hundreds of stations on a 22.5-degree grid) pins the state down
        assert post_err < 0.35 * prior_err, (v, post_err, prior_err)
    # one call subsets the network: fewer stations, a larger error
    europe = stations[
        (stations.lat > 35) & (stations.lat < 70) & (stations.lon > -10) & (stations.lon < 40)
    ]
    few = simulate_soundings(truth, europe, seed=1)
    out_few = target.diffsr.super_resolve([few], model=prior, members=32, steps=18, guidance="mmps")
    err_few = _rmse(out_few["t850"].mean("member").values, truth["t850"].values)
    err_all = _rmse(out["t850"].mean("member").values, truth["t850"].values)
    assert err_few > err_all


def test_real_vienna_soundings_pull_the_state(prior, shared_data):
    """The 2015-01-24 00 UTC Vienna sounding, read from the real NOAA file, moves t850 at Vienna
    from the prior mean towards the observed value."""
    df = read_igra(
        shared_data / "igra" / "AUM00011035-data.txt.gz", start="2015-01-24", end="2015-01-24T06"
    )
    t0 = pd.Timestamp("2015-01-24T00")
    assert (df["time"] == t0).any()
    target = xr.Dataset(coords={"time": [t0]})
    out = target.diffsr.super_resolve([df], model=prior, members=32, steps=18, guidance="mmps")
    from xdiffsr.observations import soundings_to_observations

    obs = soundings_to_observations(df[df["time"] == t0], ["t850"])
    assert len(obs) == 1
    t_obs = float(obs["value"].iloc[0])
    lat, lon = float(obs["lat"].iloc[0]), float(obs["lon"].iloc[0])
    post = out["t850"].isel(time=0).mean("member").interp(lat=lat, lon=lon).item()
    prior_val = _mean_ds()["t850"].interp(lat=lat, lon=lon).item()
    assert abs(post - t_obs) < 0.5 * abs(prior_val - t_obs)
    assert np.isfinite(out["z500"].values).all()
