"""The emulator's error model by lead: analytic forecasts with a known error growth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.evaluation.test_suite import gaussian_world
from xdiffsr.errors import ArgumentError
from xdiffsr.osse import coarsen
from xdiffsr.osse.forecast_error import correlation_inflation, forecast_errors, forecast_sigma

DRIFT = 0.25  # K per hour of lead: the stand-in forecast's t850 error


class DriftingEmulator:
    """Forecast = the truth coarsened to 8 x 16 at the valid time, t850 off by DRIFT * lead."""

    every = pd.Timedelta("12h")

    def __init__(self, truth: xr.Dataset):
        self.truth = truth

    def forecast(self, init, *, lead_days, every=None):
        step = pd.Timedelta(every) if every is not None else self.every
        leads = pd.to_timedelta(np.arange(int(pd.Timedelta(days=lead_days) / step) + 1) * step)
        runs = []
        for t0 in pd.DatetimeIndex(init["time"].values):
            fc = coarsen(self.truth.sel(time=t0 + leads), 8, 16)
            hours = xr.DataArray(np.asarray(leads / pd.Timedelta(hours=1)), dims="time")
            fc["t850"] = fc["t850"] + DRIFT * hours
            runs.append(fc.rename(time="lead_time").assign_coords(lead_time=leads))
        fc = xr.concat(runs, dim="init_time").assign_coords(init_time=init["time"].values)
        return fc.assign_coords(valid_time=fc.init_time + fc.lead_time)


@pytest.fixture(scope="module")
def truth():
    return gaussian_world(12, 5, "2002-01-01")


def test_forecast_errors_recover_the_error_growth(truth):
    inits = truth["time"].values[:4]
    err = forecast_errors(truth, inits, lead_days=2, emulator=DriftingEmulator(truth),
                          coarse_grid=(8, 16))
    hours = pd.to_timedelta(err["lead_time"].values) / pd.Timedelta(hours=1)
    np.testing.assert_allclose(err["t850"].values, DRIFT * hours, atol=1e-9)
    np.testing.assert_allclose(err["u850"].values, 0.0, atol=1e-9)  # exact in u850
    assert err["t850"].attrs["units"] == "K"


def test_forecast_sigma_interpolates_in_lead_and_floors(truth):
    err = forecast_errors(truth, truth["time"].values[:2], lead_days=1,
                          emulator=DriftingEmulator(truth), coarse_grid=(8, 16))
    s = forecast_sigma(err, "18h", floor={"u850": 0.5})
    assert s["t850"] == pytest.approx((DRIFT * 18) ** 2)  # between the 12 h and 24 h leads
    assert s["u850"] == pytest.approx(0.25)  # the floor, as a variance
    with pytest.raises(ArgumentError, match="not > 0"):
        forecast_sigma(err, "18h")  # u850 has no error at all: refused, not a zero variance


def test_forecast_errors_need_the_valid_times(truth):
    with pytest.raises(ArgumentError, match="valid time"):
        forecast_errors(truth, truth["time"].values[-1:], lead_days=1,
                        emulator=DriftingEmulator(truth), coarse_grid=(8, 16))
    with pytest.raises(ArgumentError, match="inits"):
        forecast_errors(truth, [], lead_days=1, emulator=DriftingEmulator(truth))


# ---------------------------------------------------------------------------------------------
# Correlated errors: N / N_eff


def _smooth(g, n: int, width: float) -> np.ndarray:
    """n random fields on 16 x 32, smoothed by a Gaussian of ``width`` cells (0: white)."""
    from scipy.ndimage import gaussian_filter

    x = g.normal(size=(n, 16, 32))
    if width == 0:
        return x
    return np.stack([gaussian_filter(f, width, mode=("nearest", "wrap")) for f in x])


def test_correlation_inflation_is_one_for_white_errors_and_n_for_a_uniform_bias():
    g = np.random.default_rng(0)
    assert correlation_inflation(_smooth(g, 4, 0)) == pytest.approx(1.0, abs=0.05)
    # one mode (a field-wide offset of random size): N_eff = 1, inflation N = 512; the estimate
    # of P^2 is unbiased, so its ratio to (mean P)^2 converges with the number of samples
    bias = g.normal(size=(400, 1, 1)) * np.ones((1, 16, 32))
    assert correlation_inflation(bias) == pytest.approx(512, rel=0.1)
    # errors in m = 8 Fourier modes of equal power along longitude, constant in latitude
    k = np.arange(1, 5)
    lon = 2 * np.pi * np.arange(32) / 32
    a, b = g.normal(size=(2, 400, 4, 1, 1))
    waves = (a * np.cos(k[:, None, None] * lon) + b * np.sin(k[:, None, None] * lon)).sum(1)
    assert correlation_inflation(np.broadcast_to(waves, (400, 16, 32))) == pytest.approx(
        512 / 8, rel=0.1)


def test_correlation_inflation_grows_with_the_correlation_length():
    g = np.random.default_rng(1)
    values = [correlation_inflation(_smooth(g, 6, w)) for w in (0, 0.7, 1.5, 3)]
    assert values == sorted(values) and values[0] < 1.2 and values[-1] > 20
    with pytest.raises(ArgumentError, match="S >= 2"):
        correlation_inflation(_smooth(g, 1, 1))


def test_forecast_errors_return_the_inflation_by_lead(truth):
    err, infl = forecast_errors(truth, truth["time"].values[:3], lead_days=1,
                                emulator=DriftingEmulator(truth), coarse_grid=(8, 16),
                                inflation=True)
    assert set(infl.data_vars) == set(err.data_vars)
    # the drifting t850 error is one field-wide offset per lead: every value is redundant
    assert infl["t850"].sel(lead_time="24h") == pytest.approx(8 * 16, rel=0.01)
    assert infl["t850"].sel(lead_time="0h") == 1.0  # no error at all: nothing to inflate
    with pytest.raises(ArgumentError, match=">= 2 inits"):
        forecast_errors(truth, truth["time"].values[:1], lead_days=1,
                        emulator=DriftingEmulator(truth), coarse_grid=(8, 16), inflation=True)
