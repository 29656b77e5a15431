"""Super-observations (issue 12): dense sources averaged onto model cells, checked against the exact
Gaussian posterior, and the default settings on dense and real observations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from tests.test_accessor import LAT, LON, _coarse, _covariance, _mean_ds
from xdiffsr.observations.sources import as_source
from xdiffsr.observations.superobs import superobs_rows
from xdiffsr.regrid import regrid_weights

T0 = pd.Timestamp("2021-01-01")
MU = np.stack([_mean_ds()[v].values for v in ("t850", "z500")]).ravel()


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior(_mean_ds(), _covariance())


@pytest.fixture(scope="module")
def truth():
    g = np.random.default_rng(0)
    L = np.linalg.cholesky(_covariance() + 1e-6 * np.eye(256))
    return (MU + L @ g.normal(size=256)).reshape(2, 8, 16)


def _fine_grid(truth, f=4, error=1.0, seed=1):
    """t850 on a grid ``f`` times finer than the model's, nested in its cells (f^2 per cell)."""
    d = 22.5 / f
    lat, lon = -90 + d * (np.arange(8 * f) + 0.5), -11.25 + d * (np.arange(16 * f) + 0.5)
    vals = np.repeat(np.repeat(truth[0], f, axis=0), f, axis=1)
    vals = vals + np.random.default_rng(seed).normal(0, error, vals.shape)
    return xr.Dataset(
        {"t850": (("time", "lat", "lon"), vals[None], {"units": "K"})},
        coords={
            "time": [T0],
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )


def _dense_points(truth, per_cell=16, seed=2):
    g = np.random.default_rng(seed)
    n = 128 * per_cell
    i, j = np.repeat(np.arange(8), 16 * per_cell), np.tile(np.repeat(np.arange(16), per_cell), 8)
    return pd.DataFrame(
        {
            "time": T0,
            "lat": LAT[i] + g.uniform(-1, 1, n),
            "lon": np.mod(LON[j] + g.uniform(-1, 1, n), 360),
            "variable": "z500",
            "value": truth[1, i, j] + g.normal(0, 98.0665, n),
            "units": "m2 s-2",
        }
    )


def _blocks(prior, sources):
    blocks = [as_source(s, prior).at_time(np.datetime64(T0), prior) for s in sources]
    A = np.vstack([b.matrix.toarray() for b in blocks])
    return A, np.concatenate([b.y for b in blocks]), np.concatenate([b.variance for b in blocks])


def _exact(prior, sources):
    """Dense optimal interpolation (information form) with the blocks the sampler sees."""
    A, y, R = _blocks(prior, sources)
    P = np.linalg.inv(np.linalg.inv(_covariance() + 1e-6 * np.eye(256)) + A.T @ (A / R[:, None]))
    return (MU + P @ (A.T @ ((y - A @ MU) / R))).reshape(2, 8, 16), np.diag(P).reshape(2, 8, 16)


def _run(prior, sources, **kw):
    out = xr.Dataset(coords={"time": [T0]}).diffsr.super_resolve(sources, model=prior, **kw)
    return out, np.stack([out[v].values[0] for v in ("t850", "z500")], axis=1)


def test_fine_grid_becomes_identity_superobs(prior, truth):
    ds = _fine_grid(truth)
    src = as_source(ds, prior)
    assert src.superobs is True and "super-obs(rho=0.25)" in src.describe()
    block = src.at_time(np.datetime64(T0), prior)
    assert block.n_obs == 128  # one per model cell instead of 2048
    np.testing.assert_allclose(block.matrix[:, :128].toarray(), np.eye(128), atol=1e-12)
    assert block.matrix[:, 128:].nnz == 0
    W = regrid_weights(ds.lat, ds.lon, LAT, LON, "conservative")
    expected = W @ ds["t850"].values[0].ravel()
    np.testing.assert_allclose(block.y, expected, rtol=1e-12)
    w2 = np.asarray(W.multiply(W).sum(axis=1)).ravel()  # 1 / n_eff; n_eff <= 16
    np.testing.assert_allclose(block.variance, 0.75 * w2 + 0.25, rtol=1e-10)
    assert (1 / w2 <= 16 + 1e-9).all() and (1 / w2 > 8).all()


def test_superobs_rows_formula():
    """Equal errors s^2, n values, correlation rho: s^2 (rho + (1 - rho) / n)."""
    n, s2 = 9, 4.0
    W = np.full((1, n), 1.0 / n)
    M, y, var, n_eff = superobs_rows(W, np.eye(n), np.arange(n), np.full(n, s2), 0.3)
    assert y[0] == pytest.approx(4.0) and n_eff[0] == pytest.approx(9)
    assert var[0] == pytest.approx(s2 * (0.3 + 0.7 / n))
    np.testing.assert_allclose(M.toarray(), W)


def test_coarse_grid_is_not_superobserved(prior, truth):
    src = as_source(_coarse(truth, times=[T0]), prior)
    assert src.superobs is False and "super-obs" not in src.describe()
    assert src.at_time(np.datetime64(T0), prior).n_obs == 32


def test_superobs_posterior_close_to_all_values_posterior(prior, truth):
    """With independent errors (rho = 0) and nested grids, the exact posterior given the 128
    super-observations is that given all 2048 values (up to the area weights of the average: the
    mean agrees within 2 % of the prior-to-posterior distance)."""
    ds = _fine_grid(truth)
    raw_mean, raw_var = _exact(prior, [xdiffsr.GridObservations(ds, superobs=False)])
    so_mean, so_var = _exact(prior, [xdiffsr.GridObservations(ds, superobs_rho=0.0)])
    dist = np.linalg.norm((raw_mean - MU.reshape(2, 8, 16))[0])
    assert np.linalg.norm((so_mean - raw_mean)[0]) < 0.02 * dist
    # the area-weighted average is slightly less informative than all values (measured: +8 %)
    assert raw_var[0].mean() <= so_var[0].mean() < 1.1 * raw_var[0].mean()


def test_default_settings_match_exact_posterior_with_superobs(prior, truth):
    """MMPS (2 CG iterations) with a 16-values-per-cell grid: the exact super-observation
    posterior (measured: mean error 0.16 of the prior-to-posterior distance at 128 members, 0.10
    with 10). The default ``jf`` is finite and far closer than the prior (measured 0.35; the
    prior's t850-z500 correlation is not in its per-variable covariance, docs/limitations.md)."""
    srcs = [_fine_grid(truth)]
    mean, var = _exact(prior, srcs)
    s = np.array([5.0, 400.0])[:, None, None]
    for guidance, bound in (("mmps", 0.25), ("jf", 0.5)):
        out, x = _run(prior, srcs, members=128, guidance=guidance)
        assert "super-obs" in out.attrs["sources"]
        err = np.linalg.norm((x.mean(0) - mean) / s) / np.linalg.norm(
            (mean - MU.reshape(2, 8, 16)) / s)
        spread = np.sqrt(np.mean(x.var(0) / s**2) / np.mean(var / s**2))
        assert np.isfinite(x).all() and err < bound, (guidance, err)
        assert abs(spread - 1) < (0.15 if guidance == "mmps" else 0.3), (guidance, spread)


def test_point_superobs_average_per_cell(prior, truth):
    pts = _dense_points(truth, per_cell=16)
    raw = xdiffsr.PointObservations(pts).at_time(np.datetime64(T0), prior)
    so = xdiffsr.PointObservations(pts, superobs=True, superobs_rho=0.0)
    block = so.at_time(np.datetime64(T0), prior)
    assert raw.n_obs == 2048 and block.n_obs == 128
    np.testing.assert_allclose(np.sort(block.y), np.sort(raw.y.reshape(128, 16).mean(1)))
    np.testing.assert_allclose(block.variance, 98.0665**2 / 16, rtol=1e-10)
    assert (block.var_index == 1).all() and np.allclose(block.gamma, 1.0)
    assert block.matrix[:, :128].nnz == 0  # z500 rows only
    np.testing.assert_allclose(block.matrix.sum(axis=1), 1.0)


def test_dense_points_default_finite_and_sda_divergence_is_flagged(prior, truth):
    """2048 precise points (16 per cell): the paper's guidance diverges (its step sums one gradient
    per observation); the sampler raises a typed error (non-finite) or warns (exploded), never
    NaN or silent garbage. The default (MMPS) is finite and fits the observations better than
    the prior mean."""
    pts = _dense_points(truth, per_cell=16)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            _, x_sda = _run(prior, [pts], members=4, guidance="sda")
            raised = False
        except xdiffsr.DivergenceError:
            raised = True
    if not raised:  # finite but exploded: kept, and the sampler says it cannot be right
        assert np.isfinite(x_sda).all()
        assert any("cannot be right" in str(w.message) for w in seen)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xdiffsr.XDiffSRWarning)
        _, x = _run(prior, [pts], members=4)
    assert np.isfinite(x).all()
    A, y, _ = _blocks(prior, [pts])
    misfit = np.sqrt(np.mean((y - A @ x.mean(0).ravel()) ** 2))
    assert misfit < 0.3 * np.sqrt(np.mean((y - A @ MU) ** 2))


def test_bad_superobs_options(prior, truth):
    with pytest.raises(xdiffsr.ArgumentError, match="superobs"):
        xdiffsr.GridObservations(_fine_grid(truth), superobs="yes").at_time(
            np.datetime64(T0), prior
        )
    with pytest.raises(xdiffsr.ArgumentError, match="superobs_rho"):
        xdiffsr.PointObservations(_dense_points(truth, 1), superobs=True, superobs_rho=2).at_time(
            np.datetime64(T0), prior
        )


# Real ERA5 / ERA-Interim samples as dense gridded sources for a Gaussian prior fitted on a
# coarse regular grid (4 x 4 source cells per model cell).
REAL = [
    ("era5_ens10_3deg_z_t_2017-01.nc", "t", {"isobaricInhPa": 850}),
    ("era5_ens10_3deg_z_t_2017-01.nc", "z", {"isobaricInhPa": 500}),
    ("eraint_monthly_uvz_0.75deg.nc", "z", {"level": 500}),
    ("eraint_monthly_uvz_0.75deg.nc", "u", {"level": 200}),
    ("era5_t2m_hourly_2019-03_uk_0.25deg.nc", "t2m", {}),
    ("era5_global_1deg_2026-03.zarr", "t2m", {}),
    ("era5_global_1deg_2026-03.zarr", "msl", {}),
]


def _real_problem(path, var, sel, factor=4):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(path) if path.suffix == ".zarr" else xr.open_dataset(path)
    da = ds[var].sel(sel)
    lat, lon = (d for d in da.dims if d in ("latitude", "longitude"))
    H, W = (da.sizes[lat] // factor) * factor, (da.sizes[lon] // factor) * factor
    da = da.isel({lat: slice(0, H), lon: slice(0, W)}).load()
    samples = [d for d in da.dims if d not in (lat, lon)]
    fine = da.stack(sample=samples).transpose("sample", lat, lon).values.astype(np.float64)
    coarse_lat = da[lat].values.reshape(-1, factor).mean(1)
    coarse_lon = da[lon].values.reshape(-1, factor).mean(1)
    R = regrid_weights(da[lat].values, da[lon].values, coarse_lat, coarse_lon, "conservative")
    X = (R @ fine.reshape(len(fine), -1).T).T.reshape(len(fine), H // factor, W // factor)
    units = da.attrs.get("units", "")
    coords = {
        "lat": ("lat", coarse_lat, {"units": "degrees_north"}),
        "lon": ("lon", coarse_lon, {"units": "degrees_east"}),
    }
    train = xr.Dataset({var: (("sample", "lat", "lon"), X, {"units": units})}, coords=coords)
    prior = xdiffsr.GaussianPrior.fit(train, dim="sample", rank=min(20, len(X) - 1))
    obs = xr.Dataset(
        {var: ((lat, lon), fine[-1], {"units": units})},
        coords={
            lat: (lat, da[lat].values, {"units": "degrees_north"}),
            lon: (lon, da[lon].values, {"units": "degrees_east"}),
        },
    )
    return prior, obs, X.mean(0)


@pytest.mark.parametrize("file, var, sel", REAL, ids=[f"{f[:12]}-{v}" for f, v, _ in REAL])
def test_real_dense_fields_default_settings(shared_data, file, var, sel):
    """Every shared ERA5 sample, many values per model cell: with the default settings the
    members are finite and their mean fits the (super-)observations better than the prior mean."""
    path = shared_data / "era5" / file
    if not path.exists():
        pytest.skip(f"{path} is absent")
    prior, obs, prior_mean = _real_problem(path, var, sel)
    src = as_source(obs, prior)
    assert src.superobs is True
    block = src.at_time(np.datetime64(T0), prior)
    out = xr.Dataset(coords={"time": [T0]}).diffsr.super_resolve([src], model=prior, members=4)
    x = out[var].values[0]
    assert np.isfinite(x).all()
    mis = np.sqrt(np.mean((block.y - block.matrix @ x.mean(0).ravel()) ** 2))
    mis0 = np.sqrt(np.mean((block.y - block.matrix @ prior_mean.ravel()) ** 2))
    assert mis < 0.7 * mis0, (mis, mis0)
