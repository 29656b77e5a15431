"""The satellite (column radiance) simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import Grid
from xdiffsr.models.prior import Prior
from xdiffsr.observations.column import ColumnObservations, WeightingFunctions
from xdiffsr.osse.satellite import (
    column_representativeness,
    correct_radiances,
    simulate_radiances,
    swath_mask,
    swath_points,
)

LAT = -78.75 + 22.5 * np.arange(8)
LON = 22.5 * np.arange(16)
TIMES = pd.date_range("2000-01-01", periods=2, freq="6h")


def truth() -> xr.Dataset:
    la, lo = np.deg2rad(LAT)[:, None], np.deg2rad(LON)[None, :]
    base = 10 * np.cos(la) * (1 + 0.3 * np.cos(lo))
    data = {f"t{p}": (("time", "lat", "lon"), np.stack([base + c + k for k in range(2)]),
                      {"units": "K"}) for p, c in ((850, 280.0), (500, 255.0), (250, 225.0))}
    data["z500"] = (("time", "lat", "lon"), np.full((2, 8, 16), 5.4e4), {"units": "m2 s-2"})
    coords = {"time": TIMES,
              "lat": ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north"}),
              "lon": ("lon", LON, {"standard_name": "longitude", "units": "degrees_east"})}
    return xr.Dataset(data, coords=coords)


def test_swath_geometry():
    lat, lon = swath_points(30.0, inclination=90.0, swath_km=0.0, spacing_km=500.0, across=1)
    # a polar orbit through the node at 30E: the ground track stays on the 30E/210E meridian
    assert np.allclose(np.minimum(np.abs(lon - 30), np.abs(lon - 210)), 0, atol=1e-9)
    assert lat.max() > 85 and lat.min() < -85
    lat2, lon2 = swath_points(0.0, swath_km=2000.0, across=5)
    assert lat2.size % 5 == 0
    assert np.abs(lat2).max() <= 90 and ((lon2 >= 0) & (lon2 < 360)).all()
    mask = swath_mask(LAT, LON, lat2, lon2)
    assert mask.shape == (8, 16) and 0 < mask.sum() < mask.size
    with pytest.raises(ArgumentError, match="spacing_km"):
        swath_points(0.0, spacing_km=0)


def test_noise_free_radiances_equal_the_column_operator_and_noise_is_seeded():
    ds = truth()
    df = simulate_radiances(ds, errors=0.0, orbits=2, seed=3)
    assert list(df.columns) == ["time", "lat", "lon", "channel", "value", "error"]
    assert set(df["channel"]) == {"ch1", "ch2", "ch3"} and df.attrs["simulated"]
    assert set(df["time"]) == set(TIMES)
    # the assimilation's operator applied to the truth gives the simulated values
    model_vars = ["t850", "t500", "t250", "z500"]
    p = Prior(model_vars, {}, Grid(LAT, LON), np.zeros(4), np.ones(4))
    src = ColumnObservations(df.drop(columns="error"))
    t0 = TIMES[0].to_datetime64()
    block = src.at_time(t0, p)
    state = np.stack([ds[v].sel(time=t0).values for v in model_vars])
    np.testing.assert_allclose(block.matrix @ state.ravel(), block.y, rtol=1e-12)
    # seeded noise with the stated std
    a = simulate_radiances(ds, errors={"ch1": 1.0, "ch2": 0.0, "ch3": 0.0}, seed=3,
                           spacing_km=100.0)
    b = simulate_radiances(ds, errors={"ch1": 1.0, "ch2": 0.0, "ch3": 0.0}, seed=3,
                           spacing_km=100.0)
    pd.testing.assert_frame_equal(a, b)
    clean = simulate_radiances(ds, errors=0.0, seed=3, spacing_km=100.0)
    d = (a["value"] - clean["value"])[a["channel"] == "ch1"]
    assert 0.8 < d.std() < 1.2 and abs(d.mean()) < 0.2
    assert (a["value"] - clean["value"])[a["channel"] != "ch1"].abs().max() == 0


def test_user_weights_and_bad_input():
    ds = truth()
    wf = WeightingFunctions.from_array([[1.0, 0.0, 0.0]], ["low"], [850, 500, 250])
    df = simulate_radiances(ds, weighting=wf, errors=0.0, times=TIMES[:1])
    t850 = ds["t850"].isel(time=0)
    assert set(df["channel"]) == {"low"} and len(df) > 0
    # all weight on 850 hPa: bilinear values of t850, inside its range
    assert df["value"].between(float(t850.min()) - 1e-9, float(t850.max()) + 1e-9).all()
    with pytest.raises(ArgumentError, match="orbits"):
        simulate_radiances(ds, orbits=0)
    with pytest.raises(ArgumentError, match=">= 2 pressure levels"):
        simulate_radiances(ds[["t850", "z500"]])


def test_column_representativeness_is_what_the_model_levels_miss():
    """With only the model's levels the difference is 0; an offset ``c`` on the extra levels
    moves each channel's bias by ``c`` times its weight on them (the weights of the full
    column) and leaves the std; a field varying on the extra levels only gives a std; the
    correction subtracts the bias and adds the std to the error in quadrature."""
    base = truth()[["t850", "t500", "t250"]]
    wf = WeightingFunctions.gaussian()
    zero = column_representativeness(base, (850, 500, 250))
    assert np.allclose(zero["bias"], 0) and np.allclose(zero["std"], 0)
    full = base.assign(t700=base["t850"] - 12.0, t300=base["t250"] + 3.0)
    ref = column_representativeness(full, (850, 500, 250))
    c = 5.0
    shifted = column_representativeness(
        full.assign(t700=full["t700"] + c, t300=full["t300"] + c), (850, 500, 250))
    W = wf.matrix(np.array([850.0, 700.0, 500.0, 300.0, 250.0]))  # surface to top
    extra = W[:, 1] + W[:, 3]
    np.testing.assert_allclose(shifted["bias"] - ref["bias"], c * extra, atol=1e-9)
    np.testing.assert_allclose(shifted["std"], ref["std"], atol=1e-9)
    assert (ref["count"] == 2 * 8 * 16).all()
    with pytest.raises(ArgumentError, match="model_levels"):
        column_representativeness(full, (850, 600))
    df = simulate_radiances(full, errors=0.5, seed=1)
    table = pd.DataFrame({"bias": [1.0, -2.0, 3.0], "std": [1.2, 0.0, 0.5]},
                         index=pd.Index(["ch1", "ch2", "ch3"], name="channel"))
    out = correct_radiances(df, table)
    b = df["channel"].map(table["bias"])
    np.testing.assert_allclose(out["value"], df["value"] - b)
    np.testing.assert_allclose(out["error"], np.hypot(0.5, df["channel"].map(table["std"])))
    with pytest.raises(ArgumentError, match="no bias"):
        correct_radiances(df, table.iloc[:2])
