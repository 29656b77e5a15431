"""The steps of docs/howto-cloud.md, offline: every code path the page describes, on a real store.

The page opens WeatherBench 2 / ARCO-ERA5 zarr stores on Google Cloud Storage. Here the same
calls run on an fsspec ``memory://`` store holding real ERA5 data (the 3-degree ensemble file of
``tests.conftest.SHARED_DATA / "era5"``, member 0) in those stores' layout: ``temperature`` and
``geopotential`` with a ``level`` dimension in hPa, ``latitude``/``longitude``, latitude ascending
as in WeatherBench 2 or descending as in ARCO-ERA5. The tests prove the page's steps work, not
the internet.
"""

from __future__ import annotations

import uuid
import warnings

import dask
import fsspec
import numpy as np
import pytest
import xarray as xr

import xdiffsr
from xdiffsr.grid import cell_centre_grid, latlon_dataset
from xdiffsr.names import to_model_layout
from xdiffsr.regrid import Regridder

pytestmark = pytest.mark.filterwarnings("ignore::xdiffsr.errors.XDiffSRWarning")

FAST = {"members": 2, "steps": 3, "seed": 0}
CHANNELS = ["t850", "z500"]


def _no_compute(*args, **kwargs):
    raise AssertionError("a lazy step computed dask arrays")


@pytest.fixture(scope="module")
def era5(shared_data) -> xr.Dataset:
    path = shared_data / "era5" / "era5_ens10_3deg_z_t_2017-01.nc"
    if not path.exists():
        pytest.skip(f"{path} (real ERA5 sample for the cloud how-to) is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_dataset(path).sel(number=0).load()
    return ds


@pytest.fixture(scope="module", params=["weatherbench2", "arco-era5"])
def url(request, era5) -> str:
    """A memory:// zarr store in the WeatherBench 2 (latitude ascending) or ARCO-ERA5 (latitude
    descending) layout, chunked one time per chunk as those stores are."""
    ds = era5.drop_vars(["number", "step", "valid_time"]).rename(
        t="temperature", z="geopotential", isobaricInhPa="level"
    )
    ds["level"].attrs = {"long_name": "pressure_level"}  # no units attribute, as in WB2
    if request.param == "weatherbench2":
        ds = ds.sortby("latitude")
    out = f"memory://xdiffsr-howto-{uuid.uuid4().hex}/{request.param}.zarr"
    ds.chunk(time=1).to_zarr(out, mode="w")
    yield out
    fsspec.filesystem("memory").rm(out.removeprefix("memory://").split("/")[0], recursive=True)


@pytest.fixture(scope="module")
def model_grid() -> xr.Dataset:
    return latlon_dataset(*cell_centre_grid(8, 16))


def _open_and_select(url: str) -> xr.Dataset:
    """The page's first two steps: open lazily, select variables, levels and times."""
    store = xr.open_zarr(url, chunks={})
    sub = store[["temperature", "geopotential"]].sel(
        level=[500, 850], time=slice("2017-01-01", "2017-01-01T12")
    )
    return to_model_layout(sub, CHANNELS)


def test_open_select_and_convert_stay_lazy(url, era5):
    with dask.config.set(scheduler=_no_compute):
        flat = _open_and_select(url)
    assert list(flat.data_vars) == CHANNELS
    assert flat["t850"].dims == ("time", "latitude", "longitude")
    assert flat["t850"].chunks is not None  # dask-backed: nothing read yet
    assert flat.sizes["time"] == 2
    ref = era5["t"].sel(isobaricInhPa=850.0, time=flat["time"])
    np.testing.assert_array_equal(flat["t850"].sortby("latitude"), ref.sortby("latitude"))
    assert flat["z500"].attrs["source_variable"] == "geopotential"
    assert flat["z500"].attrs["units"]  # units travel with the data (checked by super_resolve)


def test_regrid_to_the_model_grid_conserves_the_mean(url, model_grid):
    flat = _open_and_select(url)
    coarse = Regridder(flat, model_grid, method="conservative")(flat)
    assert coarse["t850"].shape == (2, 8, 16)
    w = np.cos(np.deg2rad(model_grid["lat"]))
    fine_w = np.cos(np.deg2rad(flat["latitude"]))
    mean_coarse = float(coarse["t850"].weighted(w).mean())
    mean_fine = float(flat["t850"].weighted(fine_w).mean())
    assert mean_coarse == pytest.approx(mean_fine, abs=0.5)


@pytest.fixture(scope="module")
def prior(era5, model_grid) -> xdiffsr.GaussianPrior:
    """A tiny prior on the 8 x 16 model grid, fitted to the sample's four times."""
    flat = to_model_layout(era5, CHANNELS)
    return xdiffsr.GaussianPrior.fit(
        Regridder(flat, model_grid, method="conservative")(flat), rank=3
    )


def test_super_resolve_from_the_store(url, prior):
    flat = _open_and_select(url)
    target = xr.Dataset(coords={"time": flat["time"]})
    ens = xdiffsr.super_resolve(target, [flat], model=prior, **FAST)
    assert ens["t850"].dims == ("time", "member", "lat", "lon")
    assert ens["t850"].shape == (2, 2, 8, 16)
    assert np.isfinite(ens["t850"]).all() and np.isfinite(ens["z500"]).all()
    assert "grid(61x120" in ens.attrs["sources"]  # the store's own grid entered the likelihood
    assert 220 < float(ens["t850"].mean()) < 300


def test_write_results_to_local_and_fsspec_stores(url, prior, tmp_path):
    """reconstruct_to_zarr to a local path, a memory:// URL, a file:// URL (auto_mkdir) and an
    fsspec mapper: the same members everywhere, reopened with xr.open_zarr."""
    flat = _open_and_select(url)
    target = xr.Dataset(coords={"time": flat["time"]})
    ref = xdiffsr.super_resolve(target, [flat], model=prior, **FAST)
    mem = f"memory://xdiffsr-howto-out-{uuid.uuid4().hex}/ens.zarr"
    stores = [
        (str(tmp_path / "ens.zarr"), None),
        (mem, None),
        (f"file://{tmp_path}/sub/ens.zarr", {"auto_mkdir": True}),
        (fsspec.get_mapper(f"memory://xdiffsr-howto-map-{uuid.uuid4().hex}/ens.zarr"), None),
    ]
    for store, options in stores:
        out = xdiffsr.reconstruct_to_zarr(
            target, [flat], store, model=prior, storage_options=options, progress=False, **FAST
        )
        again = xr.open_zarr(store, storage_options=options) if options else xr.open_zarr(store)
        for ds in (out, again):  # the eager run fills one batch with both times: rounding
            np.testing.assert_allclose(ds["t850"], ref["t850"].transpose(*ds["t850"].dims),
                                       rtol=1e-5)
    assert not (tmp_path / "ens.zarr.xdiffsr-lock").exists()  # the lock is released
    assert not (tmp_path / "ens.zarr" / "xdiffsr.lock").exists()  # nothing inside the store
    # a rerun into the finished store resumes: nothing left to do, same data
    out = xdiffsr.reconstruct_to_zarr(target, [flat], mem, model=prior, progress=False, **FAST)
    np.testing.assert_allclose(out["t850"], ref["t850"].transpose(*out["t850"].dims), rtol=1e-5)
