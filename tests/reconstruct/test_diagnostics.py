"""Observation-space diagnostics of super_resolve results (Gaussian prior, exact posterior).

The model grid is 8 x 16, variables t850 [K] (prior std 5 K) and z500; the observations are t850
at grid centres with an error std of 5 K, comparable to the prior's, where the chi-square of
assimilated observations is well determined.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from tests.test_accessor import LAT, LON, _covariance, _mean_ds
from xdiffsr.reconstruct import diagnostics as dg

TIMES = pd.date_range("2021-01-01", periods=3, freq="6h")
MU = np.stack([_mean_ds()[v].values for v in ("t850", "z500")]).ravel()


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior(_mean_ds(), _covariance())


def _truths(n: int, seed: int) -> np.ndarray:
    L = np.linalg.cholesky(_covariance() + 1e-6 * np.eye(256))
    g = np.random.default_rng(seed)
    return (MU[:, None] + L @ g.normal(size=(256, n))).T.reshape(n, 2, 8, 16)


def _obs(truths, noise_var: float, n: int = 40, seed: int = 1, times=TIMES) -> pd.DataFrame:
    """``n`` t850 values per time at distinct grid centres, noise of variance ``noise_var``."""
    g = np.random.default_rng(seed)
    rows = []
    for k, t in enumerate(times):
        idx = g.choice(128, n, replace=False)
        i, j = np.unravel_index(idx, (8, 16))
        val = truths[k, 0, i, j] + g.normal(0, np.sqrt(noise_var), n)
        rows.append(pd.DataFrame({"time": t, "lat": LAT[i], "lon": LON[j], "variable": "t850",
                                  "value": val, "units": "K"}))
    return pd.concat(rows, ignore_index=True)


def _exact_members(prior, src, times, members: int, seed: int) -> np.ndarray:
    """Exact posterior samples (time, member, 2, 8, 16) for the source's linear blocks."""
    K = _covariance()
    g = np.random.default_rng(seed)
    out = []
    for t in np.asarray(times, "datetime64[ns]"):
        b = src.at_time(t, prior)
        A = b.matrix.toarray()
        S = A @ K @ A.T + np.diag(b.variance)
        gain = K @ A.T @ np.linalg.inv(S)
        mean = MU + gain @ (b.y - A @ MU)
        cov = K - gain @ A @ K
        L = np.linalg.cholesky(0.5 * (cov + cov.T) + 1e-8 * np.eye(256))
        out.append((mean[:, None] + L @ g.normal(size=(256, members))).T.reshape(-1, 2, 8, 16))
    return np.stack(out)


def _pooled(sums: np.ndarray, assimilated: bool = True) -> dict:
    return dg._statistics(sums.sum(axis=(0, 1)), assimilated)


def test_chi2_of_exact_posterior_is_one_and_detects_wrong_sigma(prior):
    """Exact posterior samples: chi2 about 1 with the true error variance (25 K^2), about the
    predicted ratio S_true / S_assumed with sigma_y wrong by 10x either way."""
    times = pd.date_range("2021-01-01", periods=8, freq="6h")
    truths = _truths(len(times), 5)
    df = _obs(truths, 25.0, n=40, seed=6, times=times)
    chi2 = {}
    for sy in (25.0, 250.0, 2.5):
        src = xdiffsr.PointObservations(df, sigma_y={"t850": sy})
        members = _exact_members(prior, src, times, 200, seed=7)
        sums = dg.diagnose(prior, [src], [1.0], times.values, members)
        chi2[sy] = float(_pooled(sums)["chi2"])
        if sy == 25.0:  # the naive (y - H mean)^2 / (R + var) of assimilated data: well below 1
            assert float(_pooled(sums)["misfit"]) < 0.7
    assert 0.8 < chi2[25.0] < 1.25, chi2
    assert chi2[250.0] < dg.CHI2_LOW, chi2
    assert chi2[2.5] > 3.0, chi2  # S_true / S_assumed <= 10; about 5 at these leverages


def test_unassimilated_source_uses_independent_form(prior):
    """A source of weight 0 is independent of the members: d^2 / (R + v) about 1."""
    times = pd.date_range("2021-01-01", periods=8, freq="6h")
    truths = _truths(len(times), 8)
    members = np.stack(
        [np.concatenate([truths[k : k + 1], _truths(199, 20 + k)]) for k in range(len(times))]
    )  # prior samples: the truth is one more draw
    src = xdiffsr.PointObservations(_obs(truths, 25.0, seed=9, times=times), sigma_y=25.0)
    sums = dg.diagnose(prior, [src], [0.0], times.values, members)
    chi2 = float(_pooled(sums, assimilated=False)["chi2"])
    assert 0.7 < chi2 < 1.4


def _run(prior, df, sigma_y, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = xr.Dataset(coords={"time": TIMES}).diffsr.super_resolve(
            [xdiffsr.PointObservations(df, sigma_y=sigma_y, name="t850 points")],
            model=prior,
            members=48,
            steps=18,
            guidance="mmps",
            cg_iters=10,
            seed=1,
            **kw,
        )
    return out, [str(w.message) for w in rec if issubclass(w.category, xdiffsr.XDiffSRWarning)]


def test_result_carries_diagnostics_and_is_consistent(prior):
    truths = _truths(3, 0)
    out, msgs = _run(prior, _obs(truths, 25.0), 25.0)
    for v in ("obs_count", "obs_rms", "obs_spread", "obs_error", "obs_chi2"):
        assert out[v].dims == ("time", "source")
    assert list(out["source"].values) == ["t850 points"]
    np.testing.assert_array_equal(out["obs_count"].values[:, 0], 40)
    np.testing.assert_allclose(out["obs_error"].values, 5.0)
    assert out["t850"].dims == ("time", "member", "lat", "lon")  # members unchanged
    # rms and spread recomputed by hand from the Dataset (grid centres: H selects values)
    df = _obs(truths, 25.0)
    d0 = df[df["time"] == TIMES[0]]
    hx = out["t850"].isel(time=0).sel(lat=xr.DataArray(d0["lat"].values, dims="obs"),
                                      lon=xr.DataArray(d0["lon"].values, dims="obs"))
    rms = np.sqrt(((d0["value"].values - hx.mean("member").values) ** 2).mean())
    np.testing.assert_allclose(out["obs_rms"].values[0, 0], rms, rtol=1e-4)
    spread = np.sqrt(hx.var("member", ddof=1).values.mean())
    np.testing.assert_allclose(out["obs_spread"].values[0, 0], spread, rtol=1e-4)
    pooled = (out["obs_chi2"] * 1.0).mean().item()
    assert 0.6 < pooled < 1.6, out["obs_chi2"].values
    assert not any("chi-square" in m or "climate" in m or "far from" in m for m in msgs), msgs


def test_misspecified_sigma_warns(prior):
    truths = _truths(3, 0)
    out, msgs = _run(prior, _obs(truths, 250.0), 25.0)  # errors 10x larger than assumed
    assert out["obs_chi2"].mean().item() > dg.CHI2_HIGH
    assert any("chi-square" in m and "larger" in m for m in msgs), msgs
    out, msgs = _run(prior, _obs(truths, 25.0), 250.0)  # errors 10x smaller than assumed
    assert out["obs_chi2"].mean().item() < dg.CHI2_LOW
    assert any("chi-square" in m and "smaller" in m for m in msgs), msgs


def test_climate_warning(prior):
    truths = _truths(3, 0)
    df = _obs(truths, 1.0, n=12)
    src = xdiffsr.PointObservations(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frac = dg.check_climate(prior, [src], TIMES.values)
    assert frac[src.describe()] == 0.0
    hot = xdiffsr.PointObservations(df.assign(value=df["value"] + 50.0))
    with pytest.warns(xdiffsr.XDiffSRWarning, match="prior's climate"):
        frac = dg.check_climate(prior, [hot], TIMES.values)
    assert frac[hot.describe()] == 1.0
    with pytest.warns(xdiffsr.XDiffSRWarning, match="prior's climate"):
        xr.Dataset(coords={"time": TIMES}).diffsr.super_resolve(
            [hot], model=prior, members=2, steps=3
        )


def test_lazy_result_has_no_diagnostics_but_function_gives_them(prior):
    truths = _truths(3, 0)
    df = _obs(truths, 25.0, n=20)
    kw = dict(model=prior, members=4, steps=4, guidance="mmps", cg_iters=5)
    target = xr.Dataset(coords={"time": TIMES})
    lazy = target.diffsr.super_resolve([df], chunks={"time": 2}, **kw)
    assert "obs_chi2" not in lazy
    eager = target.diffsr.super_resolve([df], **kw)
    diag = dg.observation_diagnostics(lazy.compute(), [df], prior, warn=False)
    for v in ("obs_count", "obs_rms", "obs_spread", "obs_chi2"):
        np.testing.assert_allclose(diag[v].values, eager[v].values, rtol=1e-5)
    # a result on a permuted (descending-latitude) grid gives the same diagnostics
    flipped = eager.isel(lat=slice(None, None, -1))
    diag2 = dg.observation_diagnostics(flipped, [df], prior, warn=False)
    np.testing.assert_allclose(diag2["obs_rms"].values, eager["obs_rms"].values, rtol=1e-5)


def test_climate_of_a_gaussian_prior_is_its_range_of_means():
    """A Gaussian prior with a pole-to-equator t850 mean (230-305 K) and a 1 K standard
    deviation: observations of its own mean field everywhere are in its climate (not 30
    scales from the average mean); values 10 K beyond the warmest mean are not."""
    mean = _mean_ds()
    lat = mean["t850"]["lat"]
    mean["t850"] = (230.0 + 75.0 * np.cos(np.deg2rad(lat)) ** 2).broadcast_like(mean["t850"])
    mean["t850"].attrs["units"] = "K"
    g = xdiffsr.GaussianPrior(mean, np.eye(256))
    low, _, scale = g.climate()
    assert low[0] == pytest.approx(float(mean["t850"].min())) and scale[0] == pytest.approx(1.0)
    i, j = np.meshgrid(np.arange(8), np.arange(16), indexing="ij")
    df = pd.DataFrame({"time": TIMES[0], "lat": LAT[i.ravel()], "lon": LON[j.ravel()],
                       "variable": "t850", "units": "K",
                       "value": mean["t850"].values[i.ravel(), j.ravel()]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frac = dg.check_climate(g, [xdiffsr.PointObservations(df)], TIMES.values[:1])
    assert list(frac.values()) == [0.0]
    hot = xdiffsr.PointObservations(df.assign(value=float(mean["t850"].max()) + 10.0))
    with pytest.warns(xdiffsr.XDiffSRWarning, match="prior's climate"):
        frac = dg.check_climate(g, [hot], TIMES.values[:1])
    assert list(frac.values()) == [1.0]
