"""earth2studio observation frames (built here with its schema; earth2studio is not installed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import TINY_LAT, TINY_LON, tiny_model
from xdiffsr.errors import ArgumentError, ObservationError, XDiffSRWarning
from xdiffsr.observations import (
    EARTH2STUDIO_COLUMNS,
    PointObservations,
    from_earth2studio,
    is_earth2studio_frame,
)
from xdiffsr.observations.error_model import G0

pytestmark = pytest.mark.filterwarnings("ignore:dropped earth2studio observations")

T0 = pd.Timestamp("2021-01-01T00")
LEVELS_PA = [1000e2, 925e2, 850e2, 700e2, 500e2, 300e2]


def _t(p_pa: float) -> float:
    return 200.0 + 10.0 * np.log(p_pa)  # linear in ln p: interpolation is exact


def frame(quality: int = 0) -> pd.DataFrame:
    """Two radiosonde profiles (t, z, q on six levels) and surface rows at two stations."""
    rows = []
    for st, (lat, lon) in {"A": (10.0, 200.0), "B": (-30.0, 350.0)}.items():
        base = {"time": T0, "lat": lat, "lon": lon, "station": st, "elev": 10.0,
                "type": "radiosonde", "quality": quality}
        for p in LEVELS_PA:
            rows.append({**base, "variable": "t", "pres": p, "observation": _t(p)})
            rows.append({**base, "variable": "z", "pres": p,
                         "observation": G0 * 8000.0 * np.log(1e5 / p)})
            rows.append({**base, "variable": "q", "pres": p, "observation": 0.01 * p / 1e5})
        rows.append({**base, "variable": "t2m", "pres": np.nan, "observation": 281.0})
        rows.append({**base, "variable": "u10m", "pres": np.nan, "observation": 3.0})
        rows.append({**base, "variable": "msl", "pres": np.nan, "observation": 101000.0})
    return pd.DataFrame(rows)


def test_detection_and_columns():
    df = frame()
    assert is_earth2studio_frame(df)
    assert not is_earth2studio_frame(df.rename(columns={"observation": "value"}))
    assert not is_earth2studio_frame(df.assign(value=1.0))
    assert set(EARTH2STUDIO_COLUMNS) <= set(df.columns)


def test_surface_names_and_log_p_profiles():
    out = from_earth2studio(frame(), ["t850", "t600", "z500", "q700", "t2m", "u10", "msl"])
    assert list(out.columns) == ["time", "lat", "lon", "variable", "value", "error", "units",
                                 "station", "type"]
    assert out.set_index("variable")["units"]["z500"].iloc[0] == "m2 s-2"
    by = out.set_index(["station", "variable"])["value"]
    assert by["A", "u10"] == 3.0 and by["B", "t2m"] == 281.0 and by["A", "msl"] == 101000.0
    assert by["A", "t850"] == pytest.approx(_t(850e2))
    assert by["A", "t600"] == pytest.approx(_t(600e2))  # between reported levels, in ln p
    assert by["B", "z500"] == pytest.approx(G0 * 8000.0 * np.log(2.0))
    assert by["A", "q700"] == pytest.approx(0.007)  # q round-trips through vapour pressure
    err = out.set_index("variable")["error"]
    assert err["t850"].iloc[0] == 1.0 and err["msl"].iloc[0] == 100.0
    assert (out["lon"] >= 0).all() and out["time"].dtype == "datetime64[ns]"
    PointObservations(out)  # the tidy schema is accepted as it is


def test_no_extrapolation_and_nearest_level():
    out = from_earth2studio(frame(), ["t200", "t850"])
    assert set(out["variable"]) == {"t850"}  # 200 hPa is above the highest report
    near = from_earth2studio(frame(), ["t870", "t200"], vertical="nearest", level_tolerance=25)
    assert set(near["variable"]) == {"t870"}
    assert near["value"].iloc[0] == pytest.approx(_t(850e2))  # the 850 hPa report, as is
    assert len(from_earth2studio(frame(), ["t870"], vertical="nearest", level_tolerance=5)) == 0


def test_quality_filter_and_variables_the_model_lacks():
    df = pd.concat([frame(0), frame(1).assign(observation=-1.0)], ignore_index=True)
    out = from_earth2studio(df, ["t850", "t2m"])
    assert (out["value"] > 0).all() and len(out) == 4
    assert len(from_earth2studio(df, ["t2m"], quality={0, 1})) == 4
    with pytest.warns(XDiffSRWarning, match="u10"):
        assert len(from_earth2studio(df, ["t2m"], quality=None)) == 4


def test_errors_override():
    out = from_earth2studio(frame(), ["t850", "z500", "t2m"], errors={"t": 0.5, "t2m": 2.0})
    err = out.groupby("variable")["error"].first()
    assert err["t850"] == 0.5 and err["t2m"] == 2.0 and err["z500"] == pytest.approx(10 * G0)


@pytest.mark.parametrize(
    "change, kwargs, error, needle",
    [
        (lambda d: d.assign(variable=d["variable"].replace("t2m", "tcwv")), {},
         ObservationError, "tcwv"),
        (lambda d: d.drop(columns="observation"), {}, ObservationError, "observation"),
        (lambda d: d.drop(columns="pres"), {}, ObservationError, "pres"),
        (lambda d: d, {"vertical": "spline"}, ArgumentError, "vertical"),
        (lambda d: d, {"level_tolerance": -1}, ArgumentError, "level_tolerance"),
        (lambda d: d, {"quality": "good"}, ArgumentError, "quality"),
        (lambda d: d, {"errors": {"t": 0}}, ArgumentError, "errors"),
    ],
)
def test_bad_input(change, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        from_earth2studio(change(frame()), ["t850", "t2m", "u10", "msl"], **kwargs)


def _target() -> xr.Dataset:
    return xr.Dataset(coords={
        "time": [T0.to_datetime64()],
        "lat": ("lat", TINY_LAT, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", TINY_LON, {"standard_name": "longitude", "units": "degrees_east"}),
    })


def test_super_resolve_with_an_earth2studio_frame():
    model = tiny_model()
    df = frame()
    df = df[df["variable"].isin(["t", "z"])]
    target = _target()
    tidy = from_earth2studio(df, model.variables)
    out = target.diffsr.super_resolve([tidy], model=model, members=2, steps=3)
    assert set(out.data_vars) >= {"t850", "z500"}
    assert np.isfinite(out["t850"].values).all()


def test_super_resolve_takes_the_earth2studio_frame_directly():
    """The raw frame (``observation`` column, ``pres`` in Pa) goes straight into ``obs``: the same
    members as its converted tidy frame, and the provenance names the source."""
    model = tiny_model()
    df = frame()
    df = df[df["variable"].isin(["t", "z"])]
    target = _target()
    raw = target.diffsr.super_resolve([df], model=model, members=2, steps=3)
    tidy = target.diffsr.super_resolve(
        [from_earth2studio(df, model.variables)], model=model, members=2, steps=3
    )
    np.testing.assert_array_equal(raw["t850"].values, tidy["t850"].values)
    assert "earth2studio" in raw.attrs["sources"]
