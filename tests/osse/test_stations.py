"""Tests of station networks: active stations, simulation, subsetting (xdiffsr.osse.stations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import SHARED_DATA
from xdiffsr.errors import ArgumentError, CoordinateError, UnitsError, XDiffSRWarning
from xdiffsr.io.igra import read_igra, read_station_list, write_igra
from xdiffsr.observations.vertical import G0, soundings_to_observations
from xdiffsr.osse.stations import (
    active_stations,
    simulate_soundings,
    station_operator,
    subset_network,
)
from xdiffsr.regrid import point_weights

SHARED = SHARED_DATA
LIST = SHARED / "igra" / "igra2-station-list-v2.2.txt"
ENS = SHARED / "era5" / "era5_ens10_3deg_z_t_2017-01.nc"
needs_list = pytest.mark.skipif(not LIST.is_file(), reason=f"IGRA station list not found: {LIST}")
needs_era5 = pytest.mark.skipif(not ENS.is_file(), reason=f"ERA5 sample not found: {ENS}")


def _truth(lat=None, lon=None, times=None, seed=0):
    """Small global truth on (time, lat, lon) with analytic t, u, v, z."""
    lat = np.arange(-90, 91, 10.0) if lat is None else lat
    lon = np.arange(0, 360, 10.0) if lon is None else lon
    times = pd.date_range("2020-01-01", periods=4, freq="6h") if times is None else times
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    base = np.arange(len(times))[:, None, None]
    data = {}
    for lev, t0 in ((850, 280.0), (500, 250.0)):
        data[f"t{lev}"] = t0 + 0.1 * la + 0 * lo + base
        data[f"u{lev}"] = 10 * np.cos(np.radians(lo)) + 0 * la + base
        data[f"v{lev}"] = 5 * np.sin(np.radians(lo)) + 0 * la + base
        data[f"z{lev}"] = G0 * (1500.0 if lev == 850 else 5500.0) + 0 * la + base
    ds = xr.Dataset({k: (("time", "lat", "lon"), v) for k, v in data.items()},
                    coords={"time": times, "lat": lat, "lon": lon})
    ds["sp"] = ds["t850"] * 0 + 1e5
    return ds


STATIONS = pd.DataFrame({"id": ["A0000000001", "B0000000002", "C0000000003"],
                         "lat": [40.0, -20.0, 50.0], "lon": [10.0, 200.0, -175.0]})


# ------------------------------------------------------------------------------------------
@needs_list
def test_active_stations_matches_text():
    sl = read_station_list(LIST)
    act = active_stations(sl, 2015)
    lines = LIST.read_text().splitlines()
    expected = {ln[:11] for ln in lines
                if int(ln[72:76]) <= 2015 <= int(ln[77:81]) and ln[12:20].strip() != "-98.8888"}
    assert set(act["id"]) == expected
    assert {"AUM00011035", "USM00070026"} <= expected
    assert not act["mobile"].any() and act["lat"].notna().all()
    with pytest.raises(ArgumentError, match="year"):
        active_stations(sl, 2015.5)


def test_station_operator_is_the_assimilation_operator_and_wraps():
    lat = np.arange(90, -91, -3.0)  # descending, as ERA5
    lon = np.arange(0, 360, 3.0)
    f = lambda la, lo: 2.0 + 0.5 * la - 0.01 * la * lo  # noqa: E731
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    grid = f(la, lo)
    pts = pd.DataFrame({"lat": [10.3, -45.7, 88.0], "lon": [100.1, 200.9, 3.5]})
    op, inside = station_operator(lat, lon, pts)
    assert inside.all()
    ref = point_weights(lat, lon, pts["lat"], pts["lon"], "bilinear")
    assert (op != ref).nnz == 0
    np.testing.assert_allclose(op @ grid.ravel(), f(pts["lat"], pts["lon"]), rtol=1e-12)
    # across the wrap: 358.5E == -1.5E lies halfway between columns 357 and 0
    for lon_pt in (358.5, -1.5):
        op, _ = station_operator(lat, lon, pd.DataFrame({"lat": [30.0], "lon": [lon_pt]}))
        assert (op @ grid.ravel())[0] == pytest.approx(0.5 * (f(30.0, 357.0) + f(30.0, 0.0)))


def test_station_operator_on_a_regional_grid_keeps_what_the_assimilation_accepts():
    lat = np.arange(50, 58.1, 0.25)
    lon = np.arange(-10, 2.01, 0.25)
    pts = pd.DataFrame({"lat": [52.0, 52.0, 70.0, 58.1], "lon": [-5.0, 30.0, 0.0, 2.1]})
    op, inside = station_operator(lat, lon, pts)
    # the edge point (58.1N, 2.1E) lies in the outermost half cell: accepted, as in assimilation
    assert inside.tolist() == [True, False, False, True]
    assert op.shape == (2, lat.size * lon.size)
    with pytest.raises(ArgumentError, match="none of the"):
        station_operator(lat, lon, pts.iloc[[1, 2]])


@pytest.mark.parametrize("regional", [False, True])
def test_simulated_values_equal_the_assimilation_operator(regional):
    """Parity: a noise-free simulated sounding is ``point_weights @ field`` at every station,
    edges included, and stations the operator refuses are not simulated."""
    rng = np.random.default_rng(1)
    if regional:
        lat, lon = np.arange(30.0, 60.1, 2.5), np.arange(-20.0, 20.1, 2.5)
        st_lat = np.concatenate([rng.uniform(28.75, 61.25, 40), [28.75, 61.25, 45.0, 45.0]])
        st_lon = np.concatenate([rng.uniform(-21.25, 21.25, 40), [0.0, 0.0, -21.25, 21.25]])
        st_lat = np.concatenate([st_lat, [70.0, 45.0]])  # two outside the cells
        st_lon = np.concatenate([st_lon, [0.0, 40.0]])
    else:
        lat, lon = np.arange(-87.5, 88, 5.0), np.arange(0, 360, 5.0)
        st_lat = np.concatenate([rng.uniform(-90, 90, 40), [90.0, -90.0, 0.0, 0.0]])
        st_lon = np.concatenate([rng.uniform(-180, 360, 40), [0.0, 359.9, 357.5, -1.0]])
    stations = pd.DataFrame(
        {"id": [f"S{k:010d}" for k in range(st_lat.size)], "lat": st_lat, "lon": st_lon}
    )
    ds = _truth(lat=lat, lon=lon)
    ds["t850"] = ds["t850"] + rng.normal(size=ds["t850"].shape)  # a rough field
    zero = {"t": 0, "u": 0, "v": 0, "z": 0}
    if regional:
        with pytest.warns(XDiffSRWarning, match="2 of 46 stations"):
            sim = simulate_soundings(ds, stations, errors=zero)
    else:
        sim = simulate_soundings(ds, stations, errors=zero)
    got = sim[sim["pressure"] == 85000].set_index(["time", "station"])["temperature"]
    expected_ids = stations["id"][: 44 if regional else None]
    assert set(got.index.get_level_values("station")) == set(expected_ids)
    op = point_weights(lat, lon, st_lat[: expected_ids.size], st_lon[: expected_ids.size])
    for t in pd.DatetimeIndex(sim["time"].unique()):
        value = op @ ds["t850"].sel(time=t).values.ravel()
        np.testing.assert_allclose(got.loc[t].loc[expected_ids].to_numpy(), value, rtol=1e-12)


def test_simulate_noise_free_equals_truth_and_schema(tmp_path):
    ds = _truth()
    sim = simulate_soundings(ds, STATIONS, errors={"t": 0, "u": 0, "v": 0, "z": 0})
    assert sim.attrs["igra_format"] == "data" and sim.attrs["simulated"]
    # same columns and dtypes as the reader gives for a real-format file
    write_igra(sim, tmp_path / "s-data.txt")
    real = read_igra(tmp_path / "s-data.txt")
    assert list(sim.columns) == list(real.columns)
    assert sim.dtypes.astype(str).tolist() == real.dtypes.astype(str).tolist()
    # times at 00 and 12 UTC only, 3 stations, 2 levels (850 then 500 hPa)
    assert sim["time"].unique().tolist() == [pd.Timestamp("2020-01-01 00:00"),
                                             pd.Timestamp("2020-01-01 12:00")]
    assert len(sim) == 2 * 3 * 2
    assert sim.groupby("sounding")["pressure"].apply(list).tolist() == [[85000.0, 50000.0]] * 6
    a = sim[(sim["station"] == "A0000000001") & (sim["time"] == "2020-01-01 12:00")]
    t850 = a.loc[a["pressure"] == 85000, "temperature"].item()
    assert t850 == pytest.approx(280.0 + 0.1 * 40.0 + 2)  # time index 2 (12 UTC) adds 2
    assert a["gph"].tolist() == pytest.approx([1500 + 2 / G0, 5500 + 2 / G0])
    u = a.loc[a["pressure"] == 85000, "u"].item()
    assert u == pytest.approx(10 * np.cos(np.radians(10.0)) + 2)
    # station C at -175E == 185E on a 0..350 grid: halfway between 180 and 190 in lon
    c = sim[(sim["station"] == "C0000000003") & (sim["time"] == "2020-01-01 00:00")]
    exp = 0.5 * (10 * np.cos(np.radians(180)) + 10 * np.cos(np.radians(190)))
    assert c.loc[c["pressure"] == 85000, "u"].item() == pytest.approx(exp)
    assert c["lon"].iloc[0] == -175.0  # the station's own coordinates are kept


def test_simulated_soundings_round_trip_to_observations(tmp_path):
    ds = _truth()
    sim = simulate_soundings(ds, STATIONS, errors={"t": 0, "u": 0, "v": 0, "z": 0})
    write_igra(sim, tmp_path / "sim-data.txt")
    back = read_igra(tmp_path / "sim-data.txt", on_error="raise")
    assert len(back) == len(sim)
    obs = soundings_to_observations(back, list(ds.data_vars))
    assert set(obs["variable"]) == {"t850", "t500", "u850", "u500", "v850", "v500", "z850",
                                    "z500"}
    speed = np.hypot(sim["u"], sim["v"]).max()
    # the format stores 0.1 K, 1 m, 0.1 m/s and whole degrees of direction
    wind_tol = 0.05 + speed * np.radians(0.5)
    for r in obs.itertuples():
        truth = ds[r.variable].sel(time=r.time).interp(lat=r.lat, lon=r.lon % 360).item()
        tol = {"t": 0.05, "u": wind_tol, "v": wind_tol, "z": 0.5 * G0}[r.variable[0]]
        assert abs(r.value - truth) <= tol + 1e-9, r


def test_simulate_noise_statistics_and_seed():
    ds = _truth(times=pd.date_range("2020-01-01", periods=40, freq="12h"))
    rng = np.random.default_rng(5)
    st = pd.DataFrame({"id": [f"S{i:010d}" for i in range(200)],
                       "lat": rng.uniform(-80, 80, 200), "lon": rng.uniform(-180, 180, 200)})
    clean = simulate_soundings(ds, st, errors={"t": 0, "u": 0, "v": 0, "z": 0})
    noisy = simulate_soundings(ds, st, errors={"t": 0.5, "z": 3 * G0}, seed=1)
    dt = (noisy["temperature"] - clean["temperature"]).to_numpy()
    dz = (noisy["gph"] - clean["gph"]).to_numpy()
    du = (noisy["u"] - clean["u"]).to_numpy()
    n = dt.size  # 16000 samples: the sample std is within ~3 % of the true std
    assert n == 40 * 200 * 2
    assert abs(dt.std() - 0.5) < 0.03 and abs(dt.mean()) < 0.02
    assert abs(dz.std() - 3.0) < 0.15
    assert abs(du.std() - 2.0) < 0.1  # default u error
    again = simulate_soundings(ds, st, errors={"t": 0.5, "z": 3 * G0}, seed=1)
    np.testing.assert_array_equal(again["temperature"], noisy["temperature"])


def test_simulate_errors():
    ds = _truth()
    with pytest.raises(ArgumentError, match="hours"):
        simulate_soundings(ds, STATIONS, hours=(3,))
    with pytest.raises(ArgumentError, match="not in truth_ds"):
        simulate_soundings(ds, STATIONS, times=["2021-01-01"])
    with pytest.raises(UnitsError, match="z850"):
        simulate_soundings(ds.assign(z850=ds["z850"].assign_attrs(units="m")), STATIONS)
    with pytest.raises(ArgumentError, match="no variables"):
        simulate_soundings(ds[["sp"]], STATIONS)
    with pytest.raises(CoordinateError, match="time"):
        simulate_soundings(ds.expand_dims(number=2), STATIONS)
    regional = ds.sel(lat=slice(0, 60), lon=slice(0, 60))
    with pytest.warns(Warning, match="outside"):
        out = simulate_soundings(regional, STATIONS)
    assert set(out["station"]) == {"A0000000001"}
    sel = simulate_soundings(ds, STATIONS, times=pd.to_datetime(["2020-01-01 06:00"]))
    assert sel["time"].unique().tolist() == [pd.Timestamp("2020-01-01 06:00")]


@needs_list
@needs_era5
def test_simulate_real_stations_on_era5():
    ens = xr.open_dataset(ENS).isel(number=0)
    flat = xr.Dataset({f"{v}{lev}": ens[v].sel(isobaricInhPa=lev, drop=True)
                       for v in ("t", "z") for lev in (850, 500)})
    stations = active_stations(read_station_list(LIST), 2017)
    europe = subset_network(stations, bbox=(-10, 35, 30, 60))
    sim = simulate_soundings(flat, europe, errors={"t": 0, "z": 0})
    assert sim["station"].nunique() == len(europe) > 20
    assert sim["time"].nunique() == 4  # 2017-01-01/02 at 00 and 12 UTC
    obs = soundings_to_observations(sim, list(flat.data_vars))
    assert len(obs) == 4 * len(europe) * 4
    # check one station against a direct bilinear interpolation with xarray
    r = obs[(obs["station"] == "AUM00011035") & (obs["variable"] == "t850")].iloc[0]
    ref = flat["t850"].sel(time=r.time).interp(latitude=r.lat, longitude=r.lon).item()
    assert r.value == pytest.approx(ref, rel=1e-10)
    z = obs[obs["variable"] == "z500"]["value"] / G0
    assert z.between(4600, 6000).all()


# ------------------------------------------------------------------------------------------
def test_subset_network_on_stations_and_observations():
    st = STATIONS
    assert subset_network(st, drop=["A0000000001"])["id"].tolist() == ["B0000000002",
                                                                      "C0000000003"]
    assert subset_network(st, keep="B0000000002")["id"].tolist() == ["B0000000002"]
    # box across the antimeridian keeps 200E and -170E
    assert subset_network(st, bbox=(150, -30, -150, 60))["id"].tolist() == ["B0000000002",
                                                                           "C0000000003"]
    sim = simulate_soundings(_truth(), st, errors={"t": 0})
    sim.attrs["note"] = "kept"
    sub = subset_network(sim, drop=["C0000000003"], bbox=(-180, -90, 180, 45))
    assert set(sub["station"]) == {"A0000000001", "B0000000002"}
    assert sub.attrs["note"] == "kept" and sub.index.tolist() == list(range(len(sub)))
    with pytest.warns(Warning, match="ZZZ"):
        subset_network(st, drop=["ZZZ"])


def test_subset_network_fraction():
    st = pd.DataFrame({"id": [f"S{i:03d}" for i in range(100)], "lat": 0.0,
                       "lon": np.linspace(0, 350, 100)})
    a = subset_network(st, fraction=0.3, seed=4)
    b = subset_network(st, fraction=0.3, seed=4)
    c = subset_network(st, fraction=0.3, seed=5)
    assert len(a) == 30 and a["id"].tolist() == b["id"].tolist()
    assert a["id"].tolist() != c["id"].tolist()
    assert a["id"].is_unique and set(a["id"]) <= set(st["id"])
    with pytest.raises(ArgumentError, match="fraction"):
        subset_network(st, fraction=0)
    with pytest.raises(ArgumentError, match="station"):
        subset_network(st.rename(columns={"id": "name"}))


def test_simulated_errors_travel_with_the_frame_into_the_assimilation():
    """A frame simulated with 3x the default errors is assimilated with them, not the
    defaults (``super_resolve`` converts raw sounding frames itself)."""
    from types import SimpleNamespace

    from xdiffsr.observations.sources import as_source
    from xdiffsr.observations.vertical import DEFAULT_ERRORS

    ds = _truth()
    variables = ["t850", "u500", "z500"]
    units = {"t": "K", "u": "m s-1", "z": "m2 s-2"}
    prior = SimpleNamespace(variables=variables, units={v: units[v[0]] for v in variables})
    scaled = {k: 3 * v for k, v in DEFAULT_ERRORS.items()}  # every key of the table is accepted
    frame = simulate_soundings(ds, STATIONS, errors=scaled, seed=2)
    assert frame.attrs["errors"] == scaled
    tidy = as_source(frame, prior).data
    for v in variables:
        got = tidy.loc[tidy["variable"] == v, "error"].unique()
        np.testing.assert_allclose(got, 3 * DEFAULT_ERRORS[v[0]])
    clean = simulate_soundings(ds, STATIONS, errors={"t": 0, "u": 0, "v": 0, "z": 0})
    assert "errors" not in clean.attrs
