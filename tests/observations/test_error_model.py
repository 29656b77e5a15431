"""One observation-error table for sources, soundings and the radiosonde simulator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xdiffsr.errors import ObservationError
from xdiffsr.observations import error_model, sources, vertical
from xdiffsr.observations.error_model import DEFAULT_ERROR_STD, G0, default_error_std
from xdiffsr.observations.sources import GridObservations, PointObservations
from xdiffsr.observations.vertical import soundings_to_observations

VARIABLES = ["t850", "u500", "v500", "z500", "gh700", "r850", "q850", "sp", "t2m", "u10"]


def test_one_table_under_every_name():
    assert sources.DEFAULT_ERROR_STD is vertical.DEFAULT_ERRORS is error_model.DEFAULT_ERRORS
    assert vertical.G0 == G0 == 9.80665
    # z is exactly 10 m of geopotential height, the same error as gh in metres
    assert DEFAULT_ERROR_STD["z"] == pytest.approx(10.0 * G0)
    assert DEFAULT_ERROR_STD["z"] / G0 == pytest.approx(DEFAULT_ERROR_STD["gh"])


def test_default_error_std_of_model_variables():
    assert default_error_std("t850") == 1.0
    assert default_error_std("z500") == pytest.approx(98.0665)
    assert default_error_std("u87.5") == 2.0  # decimal levels
    assert default_error_std("sp") == 100.0 and default_error_std("t2m") == 1.0
    for name in ("tcwv", "T850", "d2m"):
        with pytest.raises(ObservationError, match="no default observation error"):
            default_error_std(name)


def _prior(names: list[str]) -> SimpleNamespace:
    lat, lon = np.linspace(-60.0, 60.0, 5), np.arange(0.0, 360.0, 45.0)
    grid = SimpleNamespace(lat=lat, lon=lon, shape=(lat.size, lon.size))
    return SimpleNamespace(variables=names, grid=grid, units=dict.fromkeys(names, ""))


def test_point_and_grid_sources_use_the_table():
    t = np.datetime64("2020-01-01T00", "ns")
    names = list(VARIABLES)
    pts = pd.DataFrame({"time": [t] * len(names), "lat": 10.0, "lon": 20.0, "variable": names,
                        "value": 1.0})
    blk = PointObservations(pts, assume_units=True).at_time(t, _prior(names))
    got = dict(zip(np.asarray(names)[blk.var_index], blk.variance, strict=True))
    for v in names:
        assert got[v] == pytest.approx(default_error_std(v) ** 2), v
    ds = xr.Dataset({"z500": (("lat", "lon"), np.zeros((2, 2)))},
                    coords={"lat": ("lat", [0.0, 10.0], {"standard_name": "latitude",
                                                           "units": "degrees_north"}),
                            "lon": ("lon", [0.0, 10.0], {"standard_name": "longitude",
                                                           "units": "degrees_east"})})
    grid = GridObservations(ds, units="m2 s-2")
    assert grid.variance_for("z500", 3) == pytest.approx(np.full(3, (10.0 * G0) ** 2))


def test_soundings_use_the_same_numbers_as_the_sources():
    levels = pd.DataFrame({
        "station": "X", "time": pd.Timestamp("2020-01-01T00"), "lat": 10.0, "lon": 20.0,
        "pressure": [100000.0, 70000.0, 40000.0], "temperature": [290.0, 275.0, 250.0],
        "gph": [100.0, 3000.0, 7000.0], "u": 1.0, "v": 2.0, "rh": 50.0, "dpdp": 5.0,
    })
    names = ["t850", "u500", "v500", "z500", "gh700", "r850", "q850"]
    obs = soundings_to_observations(levels, names)
    assert set(obs["variable"]) == set(names)
    for v, err in zip(obs["variable"], obs["error"], strict=True):
        assert err == default_error_std(v), v
