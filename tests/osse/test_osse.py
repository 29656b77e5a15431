"""Tests of the OSSE nature run (dinosaur Held-Suarez core) and its checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("dinosaur", reason="the OSSE needs the optional dependency dinosaur (+ jax)")

from xdiffsr.errors import ArgumentError, ModelError
from xdiffsr.osse import (
    EPOCH,
    check_mass_conservation,
    global_mean_surface_pressure,
    held_suarez_check,
    nature_run,
    restart_path,
)
from xdiffsr.osse import nature as nature_mod

# small and fast: T21, 6 layers, 1 h step, output every 6 h
FAST = dict(truncation=21, layers=6, dt_minutes=60, spinup_days=0.5, chunk_days=0.5, progress=False)
NAMES = [f"{q}{p}" for q in "tuvz" for p in (850, 500, 250)] + ["sp"]
R_DRY, G = 287.04, 9.80665


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("nature") / "full.zarr"
    return nature_run(store, days=1.5, **FAST).load()


def test_names_grid_attrs_and_time(full_run):
    ds = full_run
    assert list(ds.data_vars) == NAMES
    assert ds.sizes == {"time": 6, "lat": 64, "lon": 128}
    # WeatherBench 2.8125 deg grid: cell centres, latitude ascending, longitude from 0
    np.testing.assert_allclose(ds.lat, -90 + 2.8125 * (np.arange(64) + 0.5), atol=1e-9)
    np.testing.assert_allclose(ds.lon, 2.8125 * np.arange(128), atol=1e-9)
    assert ds.lat.attrs["units"] == "degrees_north" and ds.lon.attrs["units"] == "degrees_east"
    expected_times = pd.date_range(EPOCH, periods=6, freq="6h")
    np.testing.assert_array_equal(ds.time.values, expected_times.values)
    assert ds.t850.attrs["standard_name"] == "air_temperature" and ds.t850.attrs["units"] == "K"
    assert ds.z500.attrs["standard_name"] == "geopotential"
    assert ds.u250.attrs["units"] == "m s-1" and ds.v250.attrs["standard_name"] == "northward_wind"
    assert ds.sp.attrs == {
        "standard_name": "surface_air_pressure",
        "units": "Pa",
        "long_name": "Surface pressure",
    }
    assert ds.attrs["truncation"] == 21 and ds.attrs["layers"] == 6
    assert ds.attrs["orography"] == "flat"


def test_fields_finite_and_physical(full_run):
    ds = full_run
    for name in NAMES:
        assert np.isfinite(ds[name]).all(), name
    assert 180 < float(ds.t250.min()) and float(ds.t850.max()) < 330
    assert float(np.abs(ds[["u850", "u500", "u250", "v850", "v500", "v250"]].to_array()).max()) < 60
    assert 9e4 < float(ds.sp.min()) and float(ds.sp.max()) < 1.1e5
    # geopotential increases upward and 500 hPa heights are near 5.5 km
    assert (ds.z250 > ds.z500).all() and (ds.z500 > ds.z850).all()
    assert 4500 < float(ds.z500.mean()) / G < 6500
    # hydrostatic consistency: the 850-500 hPa thickness equals R <T> ln(850/500) within the
    # range spanned by the layer's bounding temperatures
    thick = (ds.z500 - ds.z850) / (R_DRY * np.log(850 / 500))
    tmin = np.minimum(ds.t850, ds.t500) - 1.0
    tmax = np.maximum(ds.t850, ds.t500) + 1.0
    assert ((thick > tmin) & (thick < tmax)).mean() > 0.99


def test_mass_is_conserved(full_run):
    mean = check_mass_conservation(full_run, rtol=1e-3)
    assert mean.dims == ("time",)
    assert float(np.abs(mean - mean[0]).max()) / 1e5 < 1e-4
    # a deficit like the one of inexact GPU transforms (8 %) is caught
    with pytest.raises(ModelError, match="mass"):
        check_mass_conservation(full_run.assign(sp=full_run.sp * 0.92))
    np.testing.assert_allclose(global_mean_surface_pressure(full_run), mean)


def test_held_suarez_check_on_synthetic_jets():
    lat = -90 + 2.8125 * (np.arange(64) + 0.5)
    lon = 2.8125 * np.arange(128)
    prof = lambda lat0, amp: amp * np.exp(-(((lat - lat0) / 10) ** 2))  # noqa: E731
    north_lat, south_lat = lat[47], lat[14]  # 43.59375, -49.21875: grid latitudes
    u = {
        p: prof(north_lat, a) + prof(south_lat, b)
        for p, a, b in ((850, 8, 6), (500, 20, 18), (250, 31, 28))
    }
    data = {
        f"u{p}": (("time", "lat", "lon"), np.broadcast_to(u[p][None, :, None], (2, 64, 128)))
        for p in u
    }
    data["t850"] = (
        ("time", "lat", "lon"),
        np.broadcast_to((260 + 40 * np.cos(np.deg2rad(lat)))[None, :, None], (2, 64, 128)),
    )
    out = held_suarez_check(xr.Dataset(data, coords={"lat": lat, "lon": lon}))
    north, south = out.loc["north"], out.loc["south"]
    assert north.speed == pytest.approx(31, rel=1e-6) and south.speed == pytest.approx(28, rel=1e-6)
    assert north.latitude == pytest.approx(43.59375) and south.latitude == pytest.approx(49.21875)
    assert north.pressure == 250 and south.pressure == 250
    coslat = np.cos(np.deg2rad(lat))
    expected = 40 * (coslat[np.abs(lat) < 10].mean() - coslat[np.abs(lat) > 70].mean())
    assert north.t850_equator_minus_pole == pytest.approx(expected, rel=1e-6)
    assert south.t850_equator_minus_pole == pytest.approx(expected, rel=1e-6)


def test_resume_after_interruption_is_bit_identical(full_run, tmp_path, monkeypatch):
    store = tmp_path / "cut.zarr"
    calls = {"n": 0}
    original = nature_mod._to_dataset

    def crash_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(nature_mod, "_to_dataset", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        nature_run(store, days=1.5, **FAST)
    monkeypatch.setattr(nature_mod, "_to_dataset", original)
    assert xr.open_zarr(store, consolidated=False).sizes["time"] == 2
    # a half-written append (times without a restart record) is discarded on resume
    partial = xr.open_zarr(store, consolidated=False).load().isel(time=[0])
    partial["time"] = [EPOCH + pd.Timedelta("12h")]
    partial.to_zarr(store, append_dim="time", consolidated=False)
    resumed = nature_run(store, days=1.5, **FAST).load()
    xr.testing.assert_identical(resumed, full_run)


def test_extend_and_argument_errors(full_run, tmp_path):
    store = tmp_path / "ext.zarr"
    nature_run(store, days=0.5, **FAST)
    extended = nature_run(store, days=1.5, **FAST).load()
    xr.testing.assert_identical(extended, full_run)
    with pytest.raises(ArgumentError, match="resume"):
        nature_run(store, days=1.5, resume=False, **FAST)
    with pytest.raises(ArgumentError, match="configuration"):
        nature_run(store, days=1.5, **{**FAST, "layers": 7})
    with pytest.raises(ArgumentError, match="days/years"):
        nature_run(tmp_path / "x.zarr", **FAST)
    with pytest.raises(ArgumentError, match="dt_minutes"):
        nature_run(tmp_path / "y.zarr", days=1, **{**FAST, "dt_minutes": 25})
    with pytest.raises(ArgumentError, match="truncation"):
        nature_run(tmp_path / "z.zarr", days=1, **{**FAST, "truncation": 40})
    assert restart_path(store).name == "ext.zarr.restart.npz"


# ------------------------------------------------------------------------------------ emulator
@pytest.fixture(scope="module")
def emulator():
    from xdiffsr.osse.emulator import Emulator

    return Emulator(layers=6, dt_minutes=60)


def solid_body_state(lat, lon, *, u0=20.0, temp=250.0, times=None) -> xr.Dataset:
    """Isothermal atmosphere at 1000 hPa in solid-body rotation u = u0 cos(lat), v = 0."""
    shape = (lat.size, lon.size)
    u = u0 * np.cos(np.deg2rad(lat))[:, None] * np.ones(shape)
    data = {}
    for p in (850, 500, 250):
        data[f"t{p}"] = (("lat", "lon"), np.full(shape, temp))
        data[f"u{p}"] = (("lat", "lon"), u)
        data[f"v{p}"] = (("lat", "lon"), np.zeros(shape))
    data["sp"] = (("lat", "lon"), np.full(shape, 1e5))
    ds = xr.Dataset(data, coords={"lat": lat, "lon": lon})
    return ds if times is None else ds.expand_dims(time=times)


def test_emulator_initial_state_round_trip(emulator):
    # every field of this state is exactly representable at T21, so lead 0 reproduces it, and the
    # diagnosed geopotential is the isothermal hydrostatic one, z(p) = R T ln(p0 / p)
    from xdiffsr.grid import cell_centre_grid

    lat, lon = cell_centre_grid(64, 128)
    fc = emulator.forecast(solid_body_state(lat, lon), lead_days=0)
    out = fc.isel(init_time=0, lead_time=0)
    u_exact = 20 * np.cos(np.deg2rad(out.lat))
    for p in (850, 500, 250):
        np.testing.assert_allclose(out[f"t{p}"], 250.0, atol=0.05)
        np.testing.assert_allclose(out[f"u{p}"], u_exact.broadcast_like(out[f"u{p}"]), atol=0.3)
        np.testing.assert_allclose(out[f"v{p}"], 0.0, atol=0.05)
        np.testing.assert_allclose(out[f"z{p}"], R_DRY * 250 * np.log(1000 / p), rtol=1e-3)
    np.testing.assert_allclose(out.sp, 1e5, rtol=1e-4)


def test_emulator_forecast_dimensions(emulator):
    from xdiffsr.grid import cell_centre_grid

    lat, lon = cell_centre_grid(16, 32)
    times = pd.date_range("2000-01-01", periods=2, freq="6h")
    fc = emulator.forecast(solid_body_state(lat, lon, times=times), lead_days=1)
    assert dict(fc.sizes) == {"init_time": 2, "lead_time": 5, "lat": 32, "lon": 64}
    assert list(fc.data_vars) == NAMES
    np.testing.assert_array_equal(fc.lead_time.values, pd.to_timedelta(np.arange(5) * 6, "h"))
    assert fc.valid_time.sel(init_time=times[1], lead_time=pd.Timedelta("6h")).values == (
        np.datetime64("2000-01-01T12:00")
    )
    np.testing.assert_allclose(fc.lat, cell_centre_grid(32, 64)[0])
    assert np.isfinite(fc.to_array()).all()
    assert float(np.abs(fc.u500).max()) < 40 and float(np.abs(fc.t850 - 250).max()) < 20
    with pytest.raises(ArgumentError, match="every"):
        emulator.forecast(solid_body_state(lat, lon, times=times), every="9h")


def test_coarsen_conserves_area_mean():
    from xdiffsr.evaluation.metrics import latitude_weights
    from xdiffsr.grid import cell_centre_grid
    from xdiffsr.osse.emulator import coarsen

    lat, lon = cell_centre_grid(64, 128)
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {"t850": (("lat", "lon"), 280 + rng.normal(size=(64, 128)))},
        coords={"lat": lat, "lon": lon},
    )
    coarse = coarsen(ds)
    assert coarse.t850.shape == (16, 32)
    np.testing.assert_allclose(coarse.lat, -84.375 + 11.25 * np.arange(16))
    mean = lambda x: float(x.weighted(latitude_weights(x.lat)).mean())  # noqa: E731
    assert mean(coarse.t850) == pytest.approx(mean(ds.t850), rel=1e-12)
    # coarse cell (lat 0, lon 1) spans lat -90..-78.75 (fine rows 0-3) and lon 5.625..16.875:
    # fine columns 3-5 entirely and half of columns 2 and 6 (cells are centred on multiples
    # of 2.8125 deg)
    block = ds.t850.values[0:4, 2:7]
    expected = (block * np.array([0.5, 1, 1, 1, 0.5])).sum(axis=1) / 4.0
    bounds = np.deg2rad(-90 + 2.8125 * np.arange(5))
    area = np.diff(np.sin(bounds))  # exact cell areas of fine rows 0-3 (per radian of lon)
    expected = float((expected * area).sum() / area.sum())
    assert float(coarse.t850[0, 1]) == pytest.approx(expected, rel=1e-12)


def test_sequential_experiment_cycles(emulator):
    from xdiffsr.evaluation.cycling import sequential_experiment
    from xdiffsr.grid import cell_centre_grid

    lat, lon = cell_centre_grid(16, 32)
    init = solid_body_state(lat, lon, times=pd.DatetimeIndex(["2000-01-01"]))
    seen = []

    def reconstruct(background, valid_time):
        seen.append(valid_time)
        return background + 0.0

    out = sequential_experiment(emulator, init, reconstruct, days=1)
    assert out.sizes["time"] == 4 and len(seen) == 4
    assert pd.Timestamp(out.time.values[-1]) == pd.Timestamp("2000-01-02")
    assert np.isfinite(out.to_array()).all()


def test_gpu_precision_fix_applied_only_on_gpu(monkeypatch):
    import jax
    from dinosaur import jax_numpy_utils

    from xdiffsr.osse._dycore import apply_gpu_precision_fix

    default = jax_numpy_utils.FLOAT32_DOT_ALGORITHM
    monkeypatch.setattr(jax_numpy_utils, "FLOAT32_DOT_ALGORITHM", default)
    if jax.default_backend() != "gpu":
        assert apply_gpu_precision_fix() == jax.default_backend()
        assert jax_numpy_utils.FLOAT32_DOT_ALGORITHM == default
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert apply_gpu_precision_fix() == "gpu"
    assert jax_numpy_utils.FLOAT32_DOT_ALGORITHM == jax.lax.Precision.HIGHEST


def test_mass_check_inside_run(tmp_path):
    # 1000 hPa is the initial global mean; a tolerance below the perturbation's rounding trips
    with pytest.raises(ModelError, match="surface pressure"):
        nature_run(tmp_path / "m.zarr", days=0.5, mass_rtol=1e-12, **FAST)


@pytest.mark.slow
def test_held_suarez_climate_short(tmp_path):
    # 150-day spin-up and 30-day mean at T21 with 6 layers: westerly jets of Held & Suarez (1994)
    # type near 250 hPa in mid-latitudes of both hemispheres, equator warmer than poles
    cfg = {**FAST, "spinup_days": 150, "chunk_days": 30}
    ds = nature_run(tmp_path / "hs.zarr", days=30, **cfg)
    out = held_suarez_check(ds)
    for hemi in ("north", "south"):
        row = out.loc[hemi]
        assert 20 < row.speed < 45, row
        assert 25 < row.latitude < 55, row
        assert row.pressure == 250, row
        assert 20 < row.t850_equator_minus_pole < 50, row
    check_mass_conservation(ds)


def test_branch_with_extra_temperature_levels_continues_the_same_trajectory(full_run, tmp_path):
    """A branch from a 0.5-day run, 1 day long, with temperature also at 925, 700 and 300 hPa:
    its times and 13 variables are those of the 1.5-day run (the extra output does not change
    the trajectory), the source store is untouched, the extra levels lie between their
    neighbours' temperatures on average, and the branch resumes like a nature run."""
    from xdiffsr.osse import branch_nature_run

    src = tmp_path / "src.zarr"
    nature_run(src, days=0.5, **FAST)
    before = xr.open_zarr(src, consolidated=False).load()
    kw = dict(extra_temperature_levels=(925, 700, 300), chunk_days=0.5, progress=False)
    branch = branch_nature_run(src, tmp_path / "branch.zarr", days=1.0, **kw).load()
    assert list(branch.data_vars) == [*NAMES, "t925", "t700", "t300"]
    xr.testing.assert_allclose(branch[NAMES], full_run[NAMES].isel(time=slice(2, None)),
                               rtol=1e-5, atol=1e-5)
    xr.testing.assert_identical(xr.open_zarr(src, consolidated=False).load(), before)
    assert branch["t700"].attrs["units"] == "K"
    assert branch["t700"].attrs["pressure_level_hPa"] == 700
    means = {p: float(branch[f"t{p}"].mean()) for p in (925, 850, 700, 500, 300, 250)}
    assert list(means.values()) == sorted(means.values(), reverse=True), means  # T falls with p
    # resume: a longer branch appends (same configuration), another configuration refuses
    longer = branch_nature_run(src, tmp_path / "branch.zarr", days=1.5, **kw).load()
    xr.testing.assert_identical(longer.isel(time=slice(0, 4)), branch)
    assert longer.sizes["time"] == 6
    with pytest.raises(ArgumentError, match="configuration"):
        branch_nature_run(src, tmp_path / "branch.zarr", days=1.5,
                          extra_temperature_levels=(700,), progress=False)
    with pytest.raises(ArgumentError, match="extra_temperature_levels"):
        branch_nature_run(src, tmp_path / "b2.zarr", days=1, extra_temperature_levels=(850,))
