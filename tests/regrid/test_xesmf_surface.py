"""xESMF's surface on Regridder: method names, call and constructor keywords (no ESMF needed)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

from tests.regrid.test_regrid import arrange, cf_field, global_grid
from xdiffsr.errors import ArgumentError
from xdiffsr.regrid import Regridder, read_weights, regrid_weights

LAT = {"standard_name": "latitude", "units": "degrees_north"}
LON = {"standard_name": "longitude", "units": "degrees_east"}


def grid(lat, lon) -> xr.Dataset:
    return xr.Dataset(coords={"lat": ("lat", lat, LAT), "lon": ("lon", lon, LON)})


def field(lat, lon, values=None) -> xr.DataArray:
    if values is None:
        la, lo = np.meshgrid(lat, lon, indexing="ij")
        values = 280.0 + np.cos(np.deg2rad(la)) * np.sin(np.deg2rad(lo))
    return xr.DataArray(values, dims=("lat", "lon"), coords=grid(lat, lon).coords,
                        name="t", attrs={"units": "K"})


def test_nearest_s2d_picks_the_nearest_centre_in_any_order():
    slat, slon = arrange(*global_grid(12, 24), True, True)
    dlat, dlon = np.array([-80.0, 1.0, 44.0, 89.9]), np.array([0.0, 7.0, 181.0, 359.0])
    w = regrid_weights(slat, slon, dlat, dlon, "nearest_s2d")
    assert np.all(np.diff(w.indptr) == 1) and np.allclose(w.data, 1)
    src = np.arange(slat.size * slon.size, dtype=float)
    got = (w @ src).reshape(4, 4)
    for i, la in enumerate(dlat):
        for j, lo in enumerate(dlon):
            dl = np.abs(((slon - lo) + 180) % 360 - 180)
            want = np.argmin(np.abs(slat - la)) * slon.size + np.argmin(dl)
            assert got[i, j] == want


def test_nearest_d2s_averages_the_sources_of_each_destination():
    slat, slon = global_grid(12, 24)
    dlat, dlon = global_grid(6, 12)
    w = regrid_weights(slat, slon, dlat, dlon, "nearest_d2s")
    assert np.allclose(w.sum(axis=1), 1) and w.shape == (72, 288)
    assert np.all(np.diff(w.indptr) > 0) and w.nnz == 288  # each source goes to one destination
    fine = regrid_weights(dlat, dlon, slat, slon, "nearest_d2s")  # coarse to fine: gaps
    assert np.any(np.diff(fine.indptr) == 0)
    out = Regridder(grid(dlat, dlon), grid(slat, slon), "nearest_d2s")(field(dlat, dlon))
    assert np.isnan(out.values).any() and np.isfinite(out.values).any()


def test_conservative_normed_renormalises_partial_cells():
    slat, slon = global_grid(18, 36)
    box_lat, box_lon = slat[6:12], slon[3:9]  # a regional source
    dlat, dlon = global_grid(6, 12)
    with pytest.raises(Exception, match="allow_partial"):
        Regridder(grid(box_lat, box_lon), grid(dlat, dlon), "conservative")
    rg = Regridder(grid(box_lat, box_lon), grid(dlat, dlon), "conservative_normed")
    ref = regrid_weights(box_lat, box_lon, dlat, dlon, "conservative", allow_partial=True)
    assert abs(rg.weights - ref).max() == 0
    out = rg(field(box_lat, box_lon, np.full((6, 6), 3.0)))
    ok = np.isfinite(out.values)
    assert ok.any() and np.allclose(out.values[ok], 3.0)
    assert rg.method == "conservative_normed"


def test_patch_and_other_unsupported_choices_name_the_closest():
    lat, lon = global_grid(4, 8)
    with pytest.raises(ArgumentError, match="'bicubic'"):
        Regridder(grid(lat, lon), grid(lat, lon), "patch")
    with pytest.raises(ArgumentError, match="nearest_s2d"):
        Regridder(grid(lat, lon), grid(lat, lon), "bilinear", extrap_method="inverse_dist")
    with pytest.raises(ArgumentError, match="built in"):
        regrid_weights(lat, lon, lat, lon, "nearest_s2d", backend="xesmf")
    rg = Regridder(grid(lat, lon), grid(lat, lon), "bilinear")
    with pytest.raises(ArgumentError, match="na_thres"):
        rg(field(lat, lon), skipna=True, na_thres=2)


def test_extrap_nearest_fills_cells_outside_a_regional_source():
    slat, slon = global_grid(18, 36)
    box_lat, box_lon = slat[6:12], slon[3:9]
    dlat, dlon = global_grid(6, 12)
    plain = Regridder(grid(box_lat, box_lon), grid(dlat, dlon), "bilinear", allow_partial=True)
    filled = Regridder(grid(box_lat, box_lon), grid(dlat, dlon), "bilinear", allow_partial=True,
                       extrap_method="nearest_s2d")
    src = field(box_lat, box_lon)
    a, b = plain(src).values, filled(src).values
    assert np.isnan(a).any() and np.isfinite(b).all()
    np.testing.assert_array_equal(b[np.isfinite(a)], a[np.isfinite(a)])


def test_skipna_and_na_thres():
    slat, slon = global_grid(12, 24, half=True)
    dlat, dlon = global_grid(6, 12, half=True)  # nested: 2 x 2 source cells per destination
    rg = Regridder(grid(slat, slon), grid(dlat, dlon), "conservative")
    values = np.full((12, 24), 5.0)
    values[0, 0] = np.nan  # a quarter of the first destination cell
    values[2:4, 2:4] = np.nan  # all of destination cell (1, 1)
    src = field(slat, slon, values)
    assert np.isnan(rg(src).values[0, 0])
    got = rg(src, skipna=True).values
    assert got[0, 0] == pytest.approx(5.0) and np.isnan(got[1, 1])
    assert np.isfinite(got).sum() == got.size - 1
    strict = rg(src, skipna=True, na_thres=0.1).values
    assert np.isnan(strict[0, 0]) and strict[0, 1] == pytest.approx(5.0)


def test_keep_attrs_and_output_chunks():
    slat, slon = global_grid(12, 24)
    dlat, dlon = global_grid(6, 12)
    src = cf_field(slat, slon)
    rg = Regridder(src, grid(dlat, dlon), "bilinear")
    assert rg(src).attrs["units"] == "K"
    assert "units" not in rg(src, keep_attrs=False).attrs
    lazy = rg(cf_field(slat, slon, chunks=2), output_chunks={"lat": 3, "lon": 4})
    assert lazy.chunks[1:] == ((3, 3), (4, 4, 4))
    assert rg(cf_field(slat, slon, chunks=2), output_chunks=(2, 6)).chunks[1] == (2, 2, 2)
    with pytest.raises(ArgumentError, match="output_chunks"):
        rg(cf_field(slat, slon, chunks=2), output_chunks={"y": 3})


def test_filename_and_reuse_weights(tmp_path, monkeypatch):
    slat, slon = global_grid(12, 24)
    dlat, dlon = global_grid(6, 12)
    path = tmp_path / "w.nc"
    first = Regridder(grid(slat, slon), grid(dlat, dlon), "bilinear", filename=path)
    assert path.exists() and read_weights(path)[1]["method"] == "bilinear"
    again = Regridder(grid(slat, slon), grid(dlat, dlon), "bilinear", filename=path,
                      reuse_weights=True)
    assert "file" in again.source and abs(again.weights - first.weights).max() == 0
    with pytest.raises(ArgumentError, match="reuse_weights"):
        Regridder(grid(slat, slon), grid(dlat, dlon), "conservative", filename=path,
                  reuse_weights=True)
    monkeypatch.chdir(tmp_path)  # xESMF's default name in the working directory
    Regridder(grid(slat, slon), grid(dlat, dlon), "nearest_s2d", reuse_weights=True)
    default = tmp_path / "nearest_s2d_12x24_6x12.nc"
    assert default.exists()
    w, meta = read_weights(default)
    assert meta["method"] == "nearest_s2d" and sp.issparse(w)
