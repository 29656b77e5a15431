"""Parquet observation tables (issue 27): the tidy schema and earth2studio's, through the command
line and through ``super_resolve``, give what the same table in memory (or as CSV) gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import TINY_LAT, TINY_LON, tiny_model
from xdiffsr.__main__ import main
from xdiffsr.observations import from_earth2studio

pytest.importorskip("pyarrow", reason="parquet engine missing: pip install pyarrow (test extra)")


def _tidy() -> pd.DataFrame:
    g = np.random.default_rng(0)
    return pd.DataFrame({
        "time": pd.to_datetime(["2021-01-01T00:00"] * 10),
        "lat": g.uniform(-60, 60, 10), "lon": g.uniform(0, 360, 10),
        "variable": ["t850"] * 5 + ["z500"] * 5,
        "value": np.r_[g.normal(270, 3, 5), g.normal(54000, 200, 5)],
        "units": ["K"] * 5 + ["m2 s-2"] * 5,
    })


def _earth2studio_frame() -> pd.DataFrame:
    """earth2studio's schema with its dtypes: float32 positions, uint16 quality, a station id,
    upper-air rows with pressure in Pa (two levels bracketing 850 and 500 hPa per station)."""
    rows = [(f"ST{k}", lat, lon, var, pres, value)
            for k, (lat, lon) in enumerate([(45.0, 10.0), (-30.0, 200.0)])
            for pres, t, z in ((92500, 285.0, 7500.0), (70000, 275.0, 29600.0),
                               (40000, 245.0, 70000.0))
            for var, value in (("t", t), ("z", z))]
    df = pd.DataFrame(rows, columns=["station", "lat", "lon", "variable", "pres", "observation"])
    df["time"] = pd.Timestamp("2021-01-01T00:00")
    df["lat"], df["lon"] = df["lat"].astype("float32"), df["lon"].astype("float32")
    df["pres"], df["observation"] = df["pres"].astype("float32"), df["observation"].astype(
        "float32")
    df["quality"] = np.uint16(0)
    return df


def test_parquet_round_trip_keeps_both_schemas(tmp_path):
    for df in (_tidy(), _earth2studio_frame()):
        path = tmp_path / "obs.parquet"
        df.to_parquet(path)
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, df, check_dtype=True)
    e2s = from_earth2studio(pd.read_parquet(path), ["t850", "z500"])
    assert set(e2s["variable"]) == {"t850", "z500"} and len(e2s) == 4
    np.testing.assert_allclose(
        e2s.loc[e2s["variable"] == "t850", "value"].to_numpy(),
        from_earth2studio(_earth2studio_frame(), ["t850", "z500"]).query(
            "variable == 't850'")["value"].to_numpy())


@pytest.mark.parametrize("schema", ["tidy", "earth2studio"])
def test_command_line_reads_parquet_like_csv(tmp_path, capsys, schema):
    """The same table as CSV and as parquet: the same reconstruction, value for value."""
    df = _tidy() if schema == "tidy" else _earth2studio_frame()
    model = tiny_model().save(tmp_path / "tiny.safetensors")
    outs = {}
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"obs.{fmt}"
        df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path)
        out = tmp_path / f"recon-{fmt}.nc"
        argv = ["super-resolve", str(path), "--model", str(model), "--out", str(out),
                "--times", "2021-01-01T00", "--members", "2", "--steps", "4", "--device", "cpu"]
        assert main(argv) == 0, capsys.readouterr().err
        with xr.open_dataset(out) as ds:
            outs[fmt] = ds.load()
    for v in ("t850", "z500"):
        assert np.isfinite(outs["parquet"][v].values).all()
        np.testing.assert_allclose(outs["parquet"][v].values, outs["csv"][v].values, rtol=1e-5)
    assert outs["parquet"]["t850"].shape[-2:] == (TINY_LAT.size, TINY_LON.size)
