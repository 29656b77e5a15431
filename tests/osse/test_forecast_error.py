"""The emulator's error model by lead: analytic forecasts with a known error growth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.evaluation.test_suite import gaussian_world
from xdiffsr.errors import ArgumentError
from xdiffsr.osse import coarsen
from xdiffsr.osse.forecast_error import forecast_errors, forecast_sigma

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
