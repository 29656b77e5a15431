"""Held-out-observation validation: withholding, scoring at withheld points only, the suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.evaluation.test_suite import FAST, world  # noqa: F401  (module fixture)
from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.suite import evaluate
from xdiffsr.evaluation.validation import score_withheld, withhold
from xdiffsr.osse.stations import simulate_soundings

LAT = -78.75 + 22.5 * np.arange(8)
LON = 22.5 * np.arange(16)
T0 = pd.Timestamp("2021-01-01")


def _truth(seed: int = 0) -> xr.Dataset:
    g = np.random.default_rng(seed)
    return xr.Dataset(
        {"t850": (("time", "lat", "lon"), 270 + 5 * g.normal(size=(1, 8, 16)), {"units": "K"})},
        coords={
            "time": [T0],
            "lat": ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", LON, {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )


def _points(truth: xr.Dataset, n: int = 60, seed: int = 1) -> pd.DataFrame:
    """Noise-free t850 at ``n`` distinct grid centres, one station id per point."""
    idx = np.random.default_rng(seed).choice(128, n, replace=False)
    i, j = np.unravel_index(idx, (8, 16))
    return pd.DataFrame(
        {
            "time": T0,
            "lat": LAT[i],
            "lon": LON[j],
            "variable": "t850",
            "value": truth["t850"].values[0, i, j],
            "station": [f"S{k % 20}" for k in range(n)],
        }
    )


def _ensemble(field: np.ndarray, members: int = 4) -> xr.Dataset:
    t = _truth()
    data = np.repeat(field[:, None], members, axis=1)
    data = data + 0.0 * np.arange(members)[None, :, None, None]
    return xr.Dataset(
        {"t850": (("time", "member", "lat", "lon"), data, {"units": "K"})},
        coords={"time": t["time"], "member": np.arange(members), "lat": t["lat"], "lon": t["lon"]},
    )


def _mask(df: pd.DataFrame) -> np.ndarray:
    m = np.zeros((1, 8, 16), dtype=bool)
    m[0, np.searchsorted(LAT, df["lat"]), np.searchsorted(LON, df["lon"])] = True
    return m


@pytest.mark.parametrize("by", ["random", "station", "region"])
def test_withhold_splits_disjointly(by):
    df = _points(_truth())
    kept, held = withhold(df, fraction=0.25, by=by, seed=3)
    assert len(kept) + len(held) == len(df)
    assert set(kept.index).isdisjoint(held.index)
    if by == "random":
        assert len(held) == 15
    if by == "station":
        assert held["station"].nunique() == 5
        assert set(held["station"]).isdisjoint(kept["station"])
    if by == "region":  # the withheld positions are the nearest to one of them
        def cos_to(p):
            la, lo = np.deg2rad(p)
            return lambda d: (np.sin(np.deg2rad(d["lat"])) * np.sin(la)
                              + np.cos(np.deg2rad(d["lat"])) * np.cos(la)
                              * np.cos(np.deg2rad(d["lon"]) - lo)).to_numpy()
        assert any(
            cos_to(p)(held).min() >= cos_to(p)(kept).max() - 1e-12
            for p in held[["lat", "lon"]].to_numpy()
        )
    again = withhold(df, fraction=0.25, by=by, seed=3)[1]
    pd.testing.assert_frame_equal(again, held)


def test_withhold_rejects_bad_arguments():
    df = _points(_truth())
    with pytest.raises(ArgumentError, match="fraction"):
        withhold(df, fraction=1.5)
    with pytest.raises(ArgumentError, match="by="):
        withhold(df, by="country")


def test_scores_use_withheld_points_only():
    truth = _truth()
    df = _points(truth)
    kept, held = withhold(df, fraction=0.3, seed=0)
    at_held = _mask(held)
    # equal to the truth except at the withheld points: a non-zero error of 2 K there
    wrong_there = _ensemble(np.where(at_held, truth["t850"].values + 2.0, truth["t850"].values))
    s = score_withheld(wrong_there, held).set_index("metric")["value"]
    assert s["rmse"] == pytest.approx(2.0) and s["crps"] == pytest.approx(2.0)
    # equal to the truth at the withheld points only: zero error
    right_there = _ensemble(np.where(at_held, truth["t850"].values, truth["t850"].values + 7.0))
    s = score_withheld(right_there, held)
    assert (s.loc[s["metric"].isin(["rmse", "crps"]), "value"].abs() < 1e-9).all()
    assert (s["count"] == len(held)).all()
    # the kept points are where it is wrong
    assert score_withheld(right_there, kept).set_index("metric")["value"]["rmse"] == (
        pytest.approx(7.0)
    )


def test_score_spread_skill_and_units():
    truth = _truth()
    df = _points(truth)
    g = np.random.default_rng(0)
    ens = truth["t850"].values[:, None] + g.normal(0, 1.0, (1, 400, 8, 16))
    ds = xr.Dataset(
        {"t850": (("time", "member", "lat", "lon"), ens, {"units": "K"})},
        coords={"time": [T0], "member": np.arange(400), "lat": truth["lat"], "lon": truth["lon"]},
    )
    s = score_withheld(ds, df).set_index("metric")["value"]
    # N(truth, 1) members: the CRPS at the centre is 2 phi(0) - 1/sqrt(pi) = 0.234; the
    # spread/skill ratio is the corrected spread (about 1) over the RMSE of the mean
    assert s["rmse"] < 0.15
    assert s["crps"] == pytest.approx(2 / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi), abs=0.02)
    assert s["spread_skill"] == pytest.approx(np.sqrt(401 / 400) / s["rmse"], rel=0.1)
    in_c = df.assign(value=df["value"] - 273.15, units="degC")
    s2 = score_withheld(ds, in_c).set_index("metric")["value"]
    np.testing.assert_allclose(s2.to_numpy(), s.to_numpy(), rtol=1e-9, atol=1e-9)
    det = score_withheld(ds.mean("member"), df)  # deterministic: rmse and MAE, no spread
    assert set(det["metric"]) == {"rmse", "crps"}


def test_sounding_frames_by_station():
    truth = _truth()
    stations = pd.DataFrame({"id": [f"S{i}" for i in range(10)],
                             "lat": np.linspace(-60, 60, 10), "lon": np.linspace(5, 340, 10)})
    sondes = simulate_soundings(truth, stations, times=[T0], errors={"t": 0.0})
    _, held = withhold(sondes, fraction=0.3, by="station", seed=1)
    assert held["station"].nunique() == 3
    s = score_withheld(_ensemble(truth["t850"].values), held).set_index("metric")["value"]
    assert s["rmse"] < 1e-6  # the same bilinear operator as the simulation


def test_evaluate_adds_withheld_rows(world):  # noqa: F811
    _, truth, prior, stations = world
    table = evaluate(
        truth.isel(time=[0]),
        model=prior,
        stations=stations,
        configurations=("IGRA",),
        baselines=("bilinear",),
        figures=False,
        withhold=0.25,
        **FAST,
    )
    held = table[table["metric"].str.endswith("_withheld")]
    assert set(held["configuration"]) == {"IGRA", "bilinear"}
    assert set(held["metric"]) == {"rmse_withheld", "crps_withheld", "spread_skill_withheld"}
    assert np.isfinite(held["value"]).all()
    assert table.attrs["settings"]["withhold"] == 0.25
