"""Tests of xdiffsr.regrid: analytic references, coordinate orders, weight files, xarray."""

from __future__ import annotations

import sys
import types
import warnings

import dask
import dask.array as dsa
import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_DATA
from xdiffsr.errors import (
    ArgumentError,
    CoordinateError,
    FormatError,
    ObservationError,
    XDiffSRError,
)
from xdiffsr.regrid import (
    Regridder,
    cell_areas,
    grid_bounds,
    point_weights,
    read_weights,
    regrid_weights,
    write_weights,
)

DATA = SHARED_DATA
ERAINT = DATA / "era5" / "eraint_monthly_uvz_0.75deg.nc"


# ---------------------------------------------------------------- helpers
def global_grid(n_lat: int, n_lon: int, *, lon0: float = 0.0, half: bool = False):
    """Cell-centred global grid: lat at (i + 1/2) * 180/n_lat - 90, lon from lon0."""
    lat = -90.0 + (np.arange(n_lat) + 0.5) * 180.0 / n_lat
    lon = lon0 + (np.arange(n_lon) + (0.5 if half else 0.0)) * 360.0 / n_lon
    return lat, lon


def arrange(lat, lon, lat_desc: bool, lon_180: bool):
    """The same grid with descending latitudes and/or longitudes in [-180, 180) sorted."""
    lat = lat[::-1] if lat_desc else lat
    if lon_180:
        lon = np.sort((lon + 180.0) % 360.0 - 180.0)
    return lat, lon


def on_grid(fn, lat, lon):
    """fn(lat, lon in [0, 360)) sampled on a grid, shape (n_lat, n_lon)."""
    la, lo = np.meshgrid(lat, np.mod(lon, 360.0), indexing="ij")
    return fn(la, lo)


def lon_index(src_lon, dst_lon):
    """Index into src_lon of each dst_lon value (same longitudes modulo 360)."""
    src = np.round(np.mod(src_lon, 360.0), 9)
    dst = np.round(np.mod(dst_lon, 360.0), 9)
    order = np.argsort(src)
    return order[np.searchsorted(src[order], dst)]


def area_mean(values, lat, lon):
    a = cell_areas(lat, lon)
    return float((a * values.reshape(a.shape)).sum() / a.sum())


def keys_kernel(s):
    """Keys (1981) cubic convolution kernel with a = -1/2 (his eq. 15)."""
    s = np.abs(s)
    inner = 1.5 * s**3 - 2.5 * s**2 + 1
    outer = -0.5 * s**3 + 2.5 * s**2 - 4 * s + 2
    return np.where(s <= 1, inner, np.where(s < 2, outer, 0.0))


# ---------------------------------------------------------------- bounds and areas
def test_grid_bounds_midpoints_and_clipping():
    np.testing.assert_allclose(grid_bounds([0.0, 1.0, 3.0]), [-0.5, 0.5, 2.0, 4.0])
    np.testing.assert_allclose(grid_bounds([10.0, 5.0]), [12.5, 7.5, 2.5])
    np.testing.assert_allclose(grid_bounds([90, 0, -90], latitude=True), [90, 45, -45, -90])
    with pytest.raises(CoordinateError, match="monotonic"):
        grid_bounds([0.0, 2.0, 1.0])
    with pytest.raises(CoordinateError, match="at least 2"):
        grid_bounds([1.0])


def test_cell_areas_analytic():
    # lat cells [-90, 0], [0, 90]; lon cells of width 180 deg: each area = 1 * pi.
    np.testing.assert_allclose(cell_areas([-45, 45], [0, 180]), np.full((2, 2), np.pi))
    for desc, l180 in [(False, False), (True, True)]:
        lat, lon = arrange(*global_grid(30, 72), desc, l180)
        assert cell_areas(lat, lon).sum() == pytest.approx(4 * np.pi, rel=1e-13)
    # a polar band [60, 90] x 360 deg has area 2 pi (1 - sin 60)
    a = cell_areas([75.0, 45.0], [0, 90, 180, 270])
    assert a[0].sum() == pytest.approx(2 * np.pi * (1 - np.sin(np.pi / 3)), rel=1e-13)


# ---------------------------------------------------------------- conservative
@pytest.mark.parametrize("src_desc", [False, True])
@pytest.mark.parametrize("src_180", [False, True])
@pytest.mark.parametrize("dst_desc,dst_180", [(False, False), (True, True)])
def test_conservative_preserves_area_mean(src_desc, src_180, dst_desc, dst_180):
    slat, slon = arrange(*global_grid(64, 128), src_desc, src_180)
    dlat, dlon = arrange(*global_grid(16, 32), dst_desc, dst_180)
    w = regrid_weights(slat, slon, dlat, dlon, "conservative", backend="builtin")
    assert w.shape == (16 * 32, 64 * 128)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-13)
    f = np.random.default_rng(1).normal(size=(64, 128))
    assert area_mean(w @ f.ravel(), dlat, dlon) == pytest.approx(
        area_mean(f, slat, slon), abs=1e-14
    )


def test_conservative_exact_on_cell_averages():
    """Nested grids: cell averages of g = sin(lat) + cos(lon) map to exact coarse averages."""

    def averages(lat, lon):
        lb = np.deg2rad(grid_bounds(lat, latitude=True))
        ob = np.deg2rad(grid_bounds(lon))
        # mean of sin(phi) w.r.t. cos(phi) dphi: (sin phi1 + sin phi2) / 2
        lat_part = 0.5 * (np.sin(lb[:-1]) + np.sin(lb[1:]))
        lon_part = (np.sin(ob[1:]) - np.sin(ob[:-1])) / (ob[1:] - ob[:-1])
        return lat_part[:, None] + lon_part[None, :]

    slat, slon = global_grid(64, 128, half=True)
    dlat, dlon = global_grid(16, 32, half=True)
    w = regrid_weights(slat[::-1], slon, dlat, dlon, "conservative")
    out = w @ averages(slat[::-1], slon).ravel()
    np.testing.assert_allclose(out.reshape(16, 32), averages(dlat, dlon), atol=1e-13)


def test_conservative_regional_partial_cells():
    slat, slon = np.arange(0.5, 40), np.arange(10.5, 30)  # cells [0, 40] x [10, 30]
    field = np.repeat(slat[:, None], slon.size, axis=1)  # value = cell-centre latitude
    with pytest.raises(CoordinateError, match=r"latitude.*41"):
        regrid_weights(slat, slon, [38.0, 41.0], [15.0, 25.0])
    w = regrid_weights(slat, slon, [38.0, 41.0, 46.0], [15.0, 25.0], allow_partial=True)
    rows = w.sum(axis=1).A1.reshape(3, 2)
    np.testing.assert_allclose(rows[:2], 1.0, atol=1e-13)
    assert np.all(rows[2] == 0)  # cell [43.5, 48.5] has no source data: empty row
    out = (w @ field.ravel()).reshape(3, 2)
    # cell [39.5, 43.5] only overlaps source cell [39, 40]: renormalised value = 39.5
    np.testing.assert_allclose(out[1], 39.5, rtol=1e-13)
    with pytest.raises(CoordinateError, match="longitude"):
        regrid_weights(slat, slon, [20.0, 30.0], [5.0, 28.0])
    with pytest.raises(CoordinateError, match="dst_lat needs at least 2"):
        regrid_weights(slat, slon, [20.0], [15.0, 25.0])


def test_conservative_regional_across_greenwich():
    slat = np.arange(40.5, 50)
    slon = np.concatenate([np.arange(350.5, 360), np.arange(0.5, 10)])  # [350, 10] in [0, 360)
    w = regrid_weights(slat, slon, [42.5, 47.5], [-7.5, -2.5, 2.5, 7.5])
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-13)
    field = on_grid(lambda la, lo: np.mod(lo + 180, 360) - 180, slat, slon)  # lon in [-180, 180)
    np.testing.assert_allclose((w @ field.ravel()).reshape(2, 4)[0], [-7.5, -2.5, 2.5, 7.5])


# ---------------------------------------------------------------- bilinear / bicubic regridding
def lin(la, lo):
    return 3.0 + 0.7 * la - 0.2 * lo + 0.01 * la * lo


def quad(la, lo):
    return lin(la, lo) + 0.02 * la**2 - 0.005 * la * lo + 0.003 * lo**2


@pytest.mark.parametrize("method,fn", [("bilinear", lin), ("bicubic", lin), ("bicubic", quad)])
@pytest.mark.parametrize("desc,l180", [(False, False), (True, True)])
def test_interpolation_exact_away_from_seam(method, fn, desc, l180):
    slat, slon = arrange(*global_grid(45, 90), desc, l180)  # 4-degree grid
    dlat = np.linspace(slat.min(), slat.max(), 23)  # up to the outermost centres
    dlon = np.linspace(12.3, 347.1, 31)  # at least 2 cells from the 0/360 seam
    w = regrid_weights(slat, slon, dlat, dlon, method)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-13)
    out = w @ on_grid(fn, slat, slon).ravel()
    np.testing.assert_allclose(out, on_grid(fn, dlat, dlon).ravel(), rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_regrid_equals_point_operator_on_destination_centres(method):
    slat, slon = arrange(*global_grid(20, 36), True, True)
    dlat, dlon = np.array([-80.0, -3.3, 0.0, 41.0, 85.5]), np.array([-179.9, -0.05, 90.0, 179.9])
    la, lo = np.meshgrid(dlat, dlon, indexing="ij")
    w = regrid_weights(slat, slon, dlat, dlon, method)
    p = point_weights(slat, slon, la.ravel(), lo.ravel(), method)
    assert abs(w - p).max() < 1e-14


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(["conservative", "bilinear", "bicubic"]))
def test_weights_follow_any_coordinate_order(rnd, method):
    """Shuffling the source coordinates permutes the columns of the weights, nothing else."""
    slat, slon = global_grid(8, 12)
    dlat, dlon = np.array([-50.0, 0.0, 30.0]), np.array([5.0, 200.0, 355.0])
    pl, po = list(range(8)), list(range(12))
    rnd.shuffle(pl)
    rnd.shuffle(po)
    shift = rnd.choice([0.0, -360.0, 360.0])
    ref = regrid_weights(slat, slon, dlat, dlon, method).toarray().reshape(-1, 8, 12)
    got = regrid_weights(slat[pl], slon[po] + shift, dlat, dlon, method).toarray()
    np.testing.assert_allclose(got.reshape(-1, 8, 12), ref[:, pl][:, :, po], atol=1e-14)


# ---------------------------------------------------------------- point operator
@pytest.mark.parametrize("lon0", [0.0, -180.0])
def test_point_bilinear_across_the_seam(lon0):
    lat, lon = np.array([-10.0, 0.0, 10.0]), lon0 + np.arange(360.0)  # 1-degree longitudes
    f = np.random.default_rng(2).normal(size=(3, 360))

    def node(lo):
        return f[1, lon_index(lon, [lo])[0]]

    pts = {  # lon -> expected value at lat 0 (two-node convex combinations)
        359.9: 0.1 * node(359) + 0.9 * node(0),
        -0.05: 0.05 * node(359) + 0.95 * node(0),
        179.9: 0.1 * node(179) + 0.9 * node(180),
        -179.5: 0.5 * node(180) + 0.5 * node(181),
        360.0: node(0),
        0.25: 0.75 * node(0) + 0.25 * node(1),
    }
    p = point_weights(lat, lon, np.zeros(len(pts)), list(pts))
    np.testing.assert_allclose(p @ f.ravel(), list(pts.values()), rtol=1e-12)
    # half-way in latitude too
    p = point_weights(lat, lon, [5.0], [359.9])
    want = 0.5 * (0.1 * f[1, lon_index(lon, [359])[0]] + 0.9 * f[1, lon_index(lon, [0])[0]])
    want += 0.5 * (0.1 * f[2, lon_index(lon, [359])[0]] + 0.9 * f[2, lon_index(lon, [0])[0]])
    np.testing.assert_allclose(p @ f.ravel(), [want], rtol=1e-12)


@pytest.mark.parametrize("lon0", [0.0, -180.0])
def test_point_bicubic_across_the_seam(lon0):
    lat, lon = np.arange(-30.0, 31, 10), lon0 + np.arange(0.0, 360, 2)  # 2-degree longitudes
    f = np.random.default_rng(3).normal(size=(lat.size, lon.size))
    j = lon_index(lon, [356.0, 358.0, 0.0, 2.0])
    # lon 359.8 (= -0.2) is 1.8 steps of 2 deg past 356: distances to the 4 nodes
    wts = keys_kernel(np.array([1.9, 0.9, -0.1, -1.1]))
    p = point_weights(lat, lon, [0.0], [-0.2], "bicubic")
    np.testing.assert_allclose(p @ f.ravel(), [wts @ f[3, j]], rtol=1e-12)


def test_point_bicubic_exact_on_quadratics_up_to_the_edges():
    lat, lon = np.arange(20.0, 61, 2.5), np.arange(-30.0, 31, 3)  # regional grid
    f = on_grid(lambda la, lo: quad(la, np.mod(lo + 180, 360) - 180), lat, lon)
    rng = np.random.default_rng(4)
    plat, plon = rng.uniform(20, 60, 300), rng.uniform(-30, 30, 300)
    p = point_weights(lat, lon, plat, plon, "bicubic")
    np.testing.assert_allclose(p @ f.ravel(), quad(plat, plon), rtol=1e-11, atol=1e-9)


def test_point_poleward_of_last_centre_is_clamped():
    lat, lon = global_grid(90, 180)  # outermost centres at +/-89
    f = on_grid(lambda la, lo: la + 0.1 * lo, lat, lon)
    for method in ("bilinear", "bicubic"):
        p = point_weights(lat[::-1], lon, [89.6, 90.0, -90.0], [11.0, 11.0, 11.0], method)
        np.testing.assert_allclose(p @ f[::-1].ravel(), [90.1, 90.1, -87.9], rtol=1e-12)


def test_point_outside_regional_grid_raises():
    lat, lon = np.arange(50.0, 58.1, 0.25), np.arange(-10.0, 2.1, 0.25)  # UK box
    with pytest.raises(ObservationError, match=r"2 of 4 points.*\(40\.0, 0\.0\)") as err:
        point_weights(lat, lon, [52.0, 40.0, 55.0, 52.0], [0.0, 0.0, 1.0, 20.0])
    assert isinstance(err.value, XDiffSRError) and isinstance(err.value, ValueError)
    # inside the outermost cells (half a step beyond the centres) is allowed and clamped
    p = point_weights(lat, lon, [58.1, 49.9], [2.1, 350.0])
    assert p.shape == (2, lat.size * lon.size)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(lat=[0.0, 1.0], lon=[0.0]), ArgumentError, "equal length"),
        (dict(lat=[np.nan], lon=[0.0]), ObservationError, "non-finite"),
        (dict(lat=[91.0], lon=[0.0]), ObservationError, r"\|lat\| > 90"),
        (dict(method="nearest"), ArgumentError, "method"),
        (dict(grid_lon=[0.0, 90.0, 180.0, 270.0, 360.0]), CoordinateError, "repeats"),
        (dict(grid_lat=[-95.0, 0.0, 45.0]), CoordinateError, r"\[-90, 90\]"),
        (dict(grid_lat=np.zeros((2, 2))), CoordinateError, "1-D"),
        (dict(grid_lat=[10.0]), CoordinateError, "at least 2"),
    ],
)
def test_point_bad_inputs(kwargs, exc, match):
    args = dict(grid_lat=[-45.0, 0.0, 45.0], grid_lon=[0, 90, 180, 270], lat=[0.0], lon=[0.0])
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        point_weights(**args)


def test_regrid_bad_choices():
    lat, lon = global_grid(4, 8)
    with pytest.raises(ArgumentError, match="method"):
        regrid_weights(lat, lon, lat, lon, "patch")
    with pytest.raises(ArgumentError, match="backend"):
        regrid_weights(lat, lon, lat, lon, backend="esmpy")
    with pytest.raises(ArgumentError, match="bicubic"):
        regrid_weights(lat, lon, lat, lon, "bicubic", backend="xesmf")


def test_xesmf_backend_missing_is_explained():
    try:
        import xesmf  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("xesmf is installed here, so backend='xesmf' works")
    lat, lon = global_grid(4, 8)
    with pytest.raises(ArgumentError, match="conda"):
        regrid_weights(lat, lon, lat, lon, backend="xesmf")


def test_xesmf_backend_plumbing_with_a_stand_in(monkeypatch):
    """xESMF sees sorted grids with bounds; its matrix is permuted back to the input order."""
    seen = {}

    class FakeRegridder:  # computes ESMF-like weights on whatever sorted grid it is handed
        def __init__(self, ds_in, ds_out, method, periodic=False):
            seen.update(lat_b=ds_in["lat_b"].values, periodic=periodic)
            assert np.all(np.diff(ds_in["lat"].values) > 0)
            w = regrid_weights(
                ds_in["lat"].values,
                ds_in["lon"].values,
                ds_out["lat"].values,
                ds_out["lon"].values,
                method,
                backend="builtin",
            ).tolil()
            w[0, :] = 0  # an unmapped row, as ESMF leaves poleward of the outermost centres
            self.weights = types.SimpleNamespace(data=sp.coo_matrix(w))

    monkeypatch.setitem(sys.modules, "xesmf", types.SimpleNamespace(Regridder=FakeRegridder))
    slat, slon = arrange(*global_grid(12, 24), True, True)
    dlat, dlon = arrange(*global_grid(6, 8), True, False)
    for method in ("conservative", "bilinear"):
        ref = regrid_weights(slat, slon, dlat, dlon, method, backend="builtin")
        got = regrid_weights(slat, slon, dlat, dlon, method, backend="xesmf")
        assert abs(got - ref).max() < 1e-14
    assert seen["periodic"] is True
    np.testing.assert_allclose(seen["lat_b"][[0, -1]], [-90, 90])


# ---------------------------------------------------------------- weight files
def test_weight_file_round_trip(tmp_path):
    slat, slon = global_grid(16, 32)
    dlat, dlon = global_grid(4, 8)
    w = regrid_weights(slat, slon, dlat, dlon)
    path = write_weights(
        tmp_path / "w.nc", w, src_shape=(16, 32), dst_shape=(4, 8), method="conservative"
    )
    raw = xr.load_dataset(path)
    assert raw["S"].dims == raw["row"].dims == raw["col"].dims == ("n_s",)
    assert raw["row"].min() == 1 and raw["col"].min() == 1  # 1-based, as ESMF/xESMF
    assert raw["row"].max() == 32 and raw["col"].max() == 512
    np.testing.assert_array_equal(raw["src_grid_dims"], [32, 16])  # ESMF order (n_lon, n_lat)
    back, meta = read_weights(path)
    assert back.shape == w.shape and abs(back - w).max() == 0
    assert meta["src_shape"] == (16, 32) and meta["dst_shape"] == (4, 8)
    assert meta["method"] == "conservative"
    with pytest.raises(ArgumentError, match="shape"):
        write_weights(tmp_path / "x.nc", w, src_shape=(16, 31), dst_shape=(4, 8), method="x")


def test_read_hand_made_xesmf_file(tmp_path):
    """A file as xESMF's Regridder.to_netcdf writes it: only S, row, col (1-based) on n_s."""
    xr.Dataset(
        {
            "S": ("n_s", [0.25, 0.75, 1.0, 0.5, 0.5]),
            "row": ("n_s", np.array([1, 1, 2, 3, 3], dtype=np.int32)),
            "col": ("n_s", np.array([1, 2, 4, 2, 3], dtype=np.int32)),
        }
    ).to_netcdf(tmp_path / "xesmf.nc")
    w, meta = read_weights(tmp_path / "xesmf.nc")
    want = np.array([[0.25, 0.75, 0, 0], [0, 0, 0, 1.0], [0, 0.5, 0.5, 0]])
    np.testing.assert_array_equal(w.toarray(), want)
    assert meta["src_shape"] is None and meta["method"] is None
    # a Regridder pads the size-less matrix to its grids (4th destination cell unmapped -> NaN)
    src = xr.Dataset(coords={"lat": [-45.0, 45.0], "lon": [0.0, 180.0]})
    dst = xr.Dataset(coords={"lat": [-45.0, 45.0], "lon": [90.0, 270.0]})
    rg = Regridder(src, dst, "bilinear", weights=tmp_path / "xesmf.nc")
    out = rg(xr.DataArray([[1.0, 2.0], [3.0, 4.0]], coords=src.coords, dims=("lat", "lon")))
    np.testing.assert_allclose(out.values, [[1.75, 4.0], [2.5, np.nan]])


@pytest.mark.parametrize(
    "variables,match",
    [
        ({"S": [1.0], "row": [0], "col": [1]}, "1-based"),
        ({"S": [1.0], "row": [1]}, "missing"),
        ({"S": [np.nan], "row": [1], "col": [1]}, "non-finite"),
        ({"S": [1.0], "row": [1], "col": [9], "src_grid_dims": ("r", [2, 2])}, "exceed"),
    ],
)
def test_read_malformed_weight_files(tmp_path, variables, match):
    ds = xr.Dataset({k: v if isinstance(v, tuple) else ("n_s", v) for k, v in variables.items()})
    ds.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(FormatError, match=match):
        read_weights(tmp_path / "bad.nc")
    (tmp_path / "junk.nc").write_text("not netCDF")
    with pytest.raises(FormatError):
        read_weights(tmp_path / "junk.nc")


# ---------------------------------------------------------------- Regridder
def cf_field(lat, lon, ntime=6, chunks=None):
    rng = np.random.default_rng(5)
    da = xr.DataArray(
        rng.normal(size=(ntime, lat.size, lon.size)).astype(np.float32),
        dims=("time", "y", "x"),
        coords={
            "time": np.arange(ntime),
            "y": ("y", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "x": ("x", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        name="t850",
        attrs={"units": "K"},
    )
    return da.chunk({"time": chunks}) if chunks else da


def test_regridder_eager_equals_lazy_and_stays_lazy():
    slat, slon = arrange(*global_grid(32, 64), True, True)
    dlat, dlon = global_grid(8, 16)
    target = xr.Dataset(
        coords={
            "lat": ("lat", dlat, {"units": "degrees_north"}),
            "lon": ("lon", dlon, {"units": "degrees_east"}),
        }
    )
    rg = Regridder(cf_field(slat, slon), target, "conservative")
    eager = rg(cf_field(slat, slon))
    computes = []

    def counting_scheduler(dsk, keys, **kwargs):
        computes.append(1)
        return dask.get(dsk, keys, **kwargs)

    with dask.config.set(scheduler=counting_scheduler):
        lazy = rg(cf_field(slat, slon, chunks=2))
        assert isinstance(lazy.data, dsa.Array) and not computes
        assert lazy.dims == ("time", "lat", "lon") and lazy.shape == (6, 8, 16)
        result = lazy.compute()
    assert computes
    assert eager.dtype == np.float32 and eager.attrs["units"] == "K"
    np.testing.assert_array_equal(result.values, eager.values)
    np.testing.assert_array_equal(eager["lat"].values, dlat)
    w = regrid_weights(slat, slon, dlat, dlon)
    f = cf_field(slat, slon).values.reshape(6, -1).astype(np.float64)
    np.testing.assert_allclose(eager.values.reshape(6, -1), (w @ f.T).T, rtol=1e-6)


def test_regridder_dataset_repr_and_weights_file(tmp_path):
    slat, slon = global_grid(18, 36)
    ds = xr.Dataset({"t850": cf_field(slat, slon), "step": ("time", np.arange(6.0))})
    coarse = xr.Dataset(
        coords={"latitude": global_grid(6, 12)[0], "longitude": global_grid(6, 12)[1]}
    )
    rg = Regridder(ds, coarse, "bilinear", backend="builtin")
    text = repr(rg)
    assert "bilinear" in text and "(18, 36)" in text and "(6, 12)" in text
    out = rg(ds)
    assert set(out.data_vars) == {"t850", "step"}
    assert out["t850"].dims == ("time", "latitude", "longitude")
    np.testing.assert_array_equal(out["step"], ds["step"])
    rg.to_netcdf(tmp_path / "w.nc")
    again = Regridder(ds, coarse, weights=tmp_path / "w.nc")
    assert again.method == "bilinear"
    np.testing.assert_array_equal(again(ds)["t850"].values, out["t850"].values)
    with pytest.raises(ArgumentError, match="shape"):
        Regridder(coarse, ds, weights=tmp_path / "w.nc")


def test_regridder_coordinate_errors():
    slat, slon = global_grid(6, 12)
    by_name = xr.Dataset(coords={"lat": slat, "lon": slon})  # no attributes: found by name
    Regridder(by_name, by_name, "bilinear")
    with pytest.raises(CoordinateError, match="latitude"):
        Regridder(xr.Dataset(coords={"a": slat, "lon": slon}), by_name)
    curvi = xr.Dataset(
        coords={"lat": (("y", "x"), np.zeros((2, 2))), "lon": (("y", "x"), np.zeros((2, 2)))}
    )
    with pytest.raises(CoordinateError):
        Regridder(curvi, by_name)
    rg = Regridder(by_name, by_name, "bilinear")
    other = xr.DataArray(np.zeros((6, 12)), coords={"lat": slat + 1, "lon": slon})
    with pytest.raises(CoordinateError, match="differ"):
        rg(other)


# ---------------------------------------------------------------- real grid
def test_real_eraint_grid_coarsened_to_3_degrees():
    if not ERAINT.exists():
        pytest.skip(f"real ERA-Interim sample {ERAINT} is absent (../shared/data next to the repo)")
    with warnings.catch_warnings():  # the file's NaN _FillValue on float64 is non-conforming
        warnings.simplefilter("ignore", xr.SerializationWarning)
        ds = xr.open_dataset(ERAINT)
    with ds:
        z = ds["z"].isel(month=0).sel(level=500).load()
    lat3, lon3 = np.arange(88.5, -90, -3.0), np.arange(-178.5, 180, 3.0)
    target = xr.Dataset(
        coords={
            "lat": ("lat", lat3, {"units": "degrees_north"}),
            "lon": ("lon", lon3, {"units": "degrees_east"}),
        }
    )
    rg = Regridder(z, target, "conservative")
    assert rg.shape_in == (241, 480) and rg.shape_out == (60, 120)
    np.testing.assert_allclose(rg.weights.sum(axis=1), 1.0, atol=1e-12)
    out = rg(z)
    src_mean = area_mean(z.values, z["latitude"].values, z["longitude"].values)
    assert area_mean(out.values, lat3, lon3) == pytest.approx(src_mean, rel=1e-13)
    assert np.isfinite(out.values).all()
    # 500 hPa geopotential: coarse values stay within the range of the fine field
    assert z.values.min() <= out.values.min() and out.values.max() <= z.values.max()


def test_gaussian_grid_closes_at_the_poles_and_regrids_conservatively():
    """T42 Gaussian latitudes (outermost centre 87.86 deg): the outer cells close at the poles, so
    a conservative map to the paper's 16 x 32 grid covers every cell and keeps the global mean."""
    x, _ = np.polynomial.legendre.leggauss(64)
    lat, lon = np.rad2deg(np.arcsin(x)), np.arange(128) * 2.8125
    b = grid_bounds(lat, latitude=True)
    assert b[0] == -90.0 and b[-1] == 90.0
    assert np.all(np.diff(b) > 0)
    clat = -90 + 11.25 * (np.arange(16) + 0.5)
    clon = np.arange(32) * 11.25
    W = regrid_weights(lat, lon, clat, clon, "conservative")
    la = np.deg2rad(lat)[:, None]
    field = 280 + 20 * np.cos(la) * np.ones((1, 128))
    out = (W @ field.ravel()).reshape(16, 32)
    a_src = cell_areas(lat, lon)
    a_dst = cell_areas(clat, clon)
    mean_src = (field * a_src).sum() / a_src.sum()
    np.testing.assert_allclose((out * a_dst).sum() / a_dst.sum(), mean_src, rtol=1e-10)
    # a regional grid ending far from the pole keeps its half-spacing bound
    assert grid_bounds(np.array([50.0, 55.0, 60.0]), latitude=True)[-1] == 62.5
