"""The spectral Gaussian prior (issue 27): exact denoiser and posterior on a small grid, the fit's
statistics, and the input it refuses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import xarray as xr

import xdiffsr
from xdiffsr.core.covariance import SpectralCovariance, extrapolate_power
from xdiffsr.core.gaussian import SpectralGaussianDenoiser, gaussian_posterior
from xdiffsr.core.likelihood import GaussianLikelihood, MMPSGuidance
from xdiffsr.core.operators import SparseOperator
from xdiffsr.core.sampler import heun_sampler
from xdiffsr.core.schedule import karras_sigmas
from xdiffsr.errors import ArgumentError, CoordinateError, XDiffSRError
from xdiffsr.models.spectral import effective_samples

H, W = 8, 16


def _fields(n: int = 6, h: int = H, w: int = W, seed: int = 0, lat=None) -> xr.Dataset:
    """Smooth random fields (a random walk in longitude, smoothed in latitude) on a global grid,
    two variables of different units and latitude-dependent amplitude."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(80, -80, h) if lat is None else lat
    lon = np.arange(w) * 360.0 / w
    amp = 1 + np.cos(np.deg2rad(lat))[:, None]
    base = np.cumsum(rng.normal(size=(n, h, w)), axis=-1)
    base -= base.mean(-1, keepdims=True) * np.linspace(0, 1, w)  # periodic-ish
    base = (base + np.roll(base, 1, axis=1)) / 2
    t = 250 + 20 * np.cos(np.deg2rad(lat))[:, None] + amp * base
    z = 50000 + 100 * amp * np.roll(base, 2, axis=-1) + rng.normal(size=(n, h, w))
    coords = {"time": np.arange(n), "lat": ("lat", lat, {"units": "degrees_north"}),
              "lon": ("lon", lon, {"units": "degrees_east"})}
    return xr.Dataset({"t850": (("time", "lat", "lon"), t, {"units": "K"}),
                       "z500": (("time", "lat", "lon"), z, {"units": "m2 s-2"})}, coords)


def _dense(fn, shape) -> np.ndarray:
    n = int(np.prod(shape))
    eye = torch.eye(n).reshape(n, *shape)
    return fn(eye).reshape(n, n).double().numpy().T


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior.fit(_fields(), covariance="spectral")


def test_fit_returns_a_spectral_prior_with_the_fitted_variance(prior):
    ds = _fields()
    assert isinstance(prior, xdiffsr.SpectralGaussianPrior)
    assert prior.variables == ("t850", "z500")
    # the prior's variance per latitude is the variance about the zonal mean, exactly
    zonal = ds.mean(("time", "lon"))
    var = ((ds - zonal) ** 2).mean(("time", "lon"))
    np.testing.assert_allclose(prior.std()[0, :, 0] ** 2, var["t850"].values, rtol=1e-4)
    np.testing.assert_allclose(prior.std()[1, :, 3] ** 2, var["z500"].values, rtol=1e-4)
    mean, _ = prior.normalisation()
    np.testing.assert_allclose(mean[0, :, 5], zonal["t850"].values, rtol=1e-10)
    # normalise/denormalise are inverse
    x = ds.isel(time=0).to_array().values
    np.testing.assert_allclose(prior.denormalise(prior.normalise(x)), x, rtol=1e-10)


def test_denoiser_is_the_exact_gaussian_denoiser(prior):
    den = prior.denoiser()
    shape = prior.state_shape
    B = _dense(lambda v: prior.covariance()(v), shape)
    np.testing.assert_allclose(B, B.T, atol=1e-5)
    assert np.linalg.eigvalsh(B).min() > -1e-5
    for s in (0.05, 1.0, 20.0):
        D = _dense(lambda v, s=s: den(v, torch.full((v.shape[0],), s)), shape)
        ref = B @ np.linalg.inv(B + s * s * np.eye(B.shape[0]))
        np.testing.assert_allclose(D, ref, atol=2e-4)


def test_gaussian_posterior_and_mmps_match_the_dense_posterior(prior):
    """The spectral denoiser's own gaussian_posterior equals the dense formula, and the MMPS
    ensemble samples it (mean and variance)."""
    den = prior.denoiser()
    shape = prior.state_shape
    N = int(np.prod(shape))
    B = _dense(lambda v: prior.covariance()(v), shape)
    rng = np.random.default_rng(2)
    idx = rng.choice(N, 40, replace=False)
    A = sp.csr_matrix((np.ones(40), (np.arange(40), idx)), shape=(40, N))
    op = SparseOperator(A, shape)
    truth = den.sample(1, generator=torch.Generator().manual_seed(3))
    R = 0.2**2
    y = op(truth)[0] + 0.2 * torch.randn(40, generator=torch.Generator().manual_seed(4))
    mean, var, _ = gaussian_posterior(den, [op], [y], [torch.full((40,), R)])
    Ad = A.toarray()
    K = B @ Ad.T @ np.linalg.inv(Ad @ B @ Ad.T + R * np.eye(40))
    np.testing.assert_allclose(mean.reshape(-1).numpy(), K @ y.double().numpy(), atol=1e-4)
    np.testing.assert_allclose(var.reshape(-1).numpy(), np.diag(B - K @ Ad @ B), atol=1e-4)
    # MMPS through the sampler
    gen = torch.Generator().manual_seed(0)
    guided = MMPSGuidance(den, [GaussianLikelihood(y, op, sigma_y=R)], cg_iters=20)
    sig = karras_sigmas(18, sigma_min=0.002, sigma_max=80.0)
    x = heun_sampler(guided, torch.randn(512, *shape, generator=gen), sig, generator=gen)
    # the ensemble mean's error is the sampling error of 512 members: chi-square ~ 1
    chi2 = ((x.mean(0) - mean).square() / (var.clamp_min(1e-6) / 512)).mean().item()
    assert chi2 < 1.5, chi2
    ratio = (x.var(0).mean() / var.mean()).sqrt().item()
    assert abs(ratio - 1) < 0.1, ratio


def test_super_resolve_samples_the_physical_posterior(prior):
    """End to end (normalisation per latitude folded into the operators): the ensemble mean of
    ``super_resolve`` on the spectral prior is the optimal-interpolation mean ``mu + S B S A^T
    (A S B S A^T + R)^-1 (y - A mu)`` computed densely in physical units."""
    truth = _fields(n=1, seed=9).isel(time=0, drop=True)
    cg = xr.Dataset(coords={"lat": ("lat", np.linspace(70, -70, 4), {"units": "degrees_north"}),
                            "lon": ("lon", np.arange(4) * 90.0 + 45, {"units": "degrees_east"})})
    rg = xdiffsr.regrid.Regridder(truth, cg, method="conservative")
    coarse = rg(truth).expand_dims(time=[np.datetime64("2020-01-01")])
    for v in coarse.data_vars:
        coarse[v].attrs["units"] = truth[v].attrs["units"]
    sig2 = {"t850": 0.3**2, "z500": 30.0**2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = xr.Dataset(coords={"time": coarse.time.values}).diffsr.super_resolve(
            obs=[xdiffsr.GridObservations(coarse, sigma_y=sig2)], model=prior, members=256,
            steps=18, guidance="mmps", seed=0)
    shape = prior.state_shape
    B = _dense(lambda v: prior.covariance()(v), shape)
    mu, S = (a.reshape(-1) for a in prior.normalisation())
    P = S[:, None] * B * S[None, :]
    Wm = rg.weights.toarray()
    A = sp.block_diag([Wm, Wm]).toarray()
    y = coarse.isel(time=0).to_array().values.reshape(-1)
    R = np.repeat([sig2["t850"], sig2["z500"]], Wm.shape[0])
    K = P @ A.T @ np.linalg.inv(A @ P @ A.T + np.diag(R))
    ref = (mu + K @ (y - A @ mu)).reshape(shape)
    sd = np.sqrt(np.diag(P - K @ A @ P)).reshape(shape)
    for i, v in enumerate(prior.variables):
        m = ens[v].isel(time=0).mean("member").values
        # 256 members: the mean's sampling error is sd / 16
        assert np.abs(m - ref[i]).mean() < 0.15 * sd[i].mean(), v
        ratio = float(ens[v].isel(time=0).std("member").mean() / sd[i].mean())
        assert abs(ratio - 1) < 0.1, (v, ratio)


def test_time_mean_and_cross_variable_coherence():
    ds = _fields(n=8)
    p = xdiffsr.GaussianPrior.fit(ds, covariance="spectral", mean="time", multivariate=True)
    assert p.covariance().multivariate
    mean, _ = p.normalisation()
    np.testing.assert_allclose(mean[1], ds["z500"].mean("time").values, rtol=1e-10)
    # z500 is t850's field shifted by two cells: their cross-spectrum is far from zero
    B = _dense(lambda v: p.covariance()(v), p.state_shape)
    n = H * W
    assert np.abs(B[:n, n:]).max() > 0.3 * np.abs(B[:n, :n]).max()
    # 8 independent-ish random fields: about 8 effective samples, the variance inflated by
    # (T + 1) / (T - 1) for a new state about their mean
    anom = ds.to_array().transpose("time", "variable", ...).values
    t = effective_samples(anom - anom.mean(0))
    assert np.all((t > 5) & (t <= 8)), t


def test_effective_samples_counts_ensemble_siblings_once():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(3, 1, 10, 20))
    members = states[:, None] + 0.01 * rng.normal(size=(3, 10, 1, 10, 20))
    x = members.reshape(30, 1, 10, 20)
    t = effective_samples(x - x.mean(0))
    assert 2.5 < t[0] < 3.5, t


def test_power_law_extrapolation_recovers_a_power_law():
    h2, w = 32, 64
    ky = torch.fft.fftfreq(h2).reshape(-1, 1)
    kx = torch.fft.rfftfreq(w).reshape(1, -1)
    k = torch.sqrt(ky**2 + kx**2) * w
    ring = torch.round(k).clamp_min(1)
    truth = (ring**-3.0)[None]
    damaged = torch.where(ring > 8, torch.zeros_like(truth), truth)  # unresolved: nothing
    out = extrapolate_power(damaged, w, 0.25)
    np.testing.assert_allclose(out.numpy(), truth.numpy(), rtol=1e-4)
    assert extrapolate_power(damaged, w, 1.0) is damaged
    with pytest.raises(ArgumentError, match="resolved"):
        extrapolate_power(damaged, w, 0.0)


def test_resolved_fit_extends_the_spectrum_beyond_the_resolved_scales():
    ds = _fields(n=6, h=16, w=32)
    full = xdiffsr.GaussianPrior.fit(ds, covariance="spectral")
    part = xdiffsr.GaussianPrior.fit(ds, covariance="spectral", resolved=0.5)
    assert not torch.equal(full.covariance().power, part.covariance().power)
    # the variance per latitude is the data's either way
    np.testing.assert_allclose(full.std(), part.std(), rtol=1e-4)


def test_gaussian_latitudes_and_lazy_input():
    """An irregular (Gaussian-like) latitude grid and dask-backed input fit the same prior as
    the eager input."""
    lat = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(H)[0]))[::-1]
    ds = _fields(lat=lat)
    eager = xdiffsr.GaussianPrior.fit(ds, covariance="spectral")
    lazy = xdiffsr.GaussianPrior.fit(ds.chunk({"time": 2}), covariance="spectral")
    assert eager.fingerprint() == lazy.fingerprint()
    assert eager.grid.shape == (H, W)


def test_ensemble_stacked_along_two_dims():
    ds = _fields(n=6)
    ens = xr.concat([ds, ds + 0.01], dim="number")
    p = xdiffsr.GaussianPrior.fit(ens, covariance="spectral", dim=("time", "number"))
    assert p.fit_stats.samples == 12


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda ds: ds.isel(time=slice(0, 1)), ArgumentError, "at least 2 fields"),
        (lambda ds: ds.isel(lon=slice(0, 8)), CoordinateError, "window='hann'"),
        (lambda ds: ds.isel(lon=slice(0, 15)), CoordinateError, "even number"),
    ],
)
def test_refuses_what_it_cannot_fit(change, error, match):
    with pytest.raises(error, match=match):
        xdiffsr.GaussianPrior.fit(change(_fields()), covariance="spectral")


def test_regional_grid_with_a_window():
    ds = _fields().isel(lon=slice(0, 8))
    p = xdiffsr.GaussianPrior.fit(ds, covariance="spectral", window="hann")
    assert p.grid.shape == (H, 8)


def test_nan_refused_with_the_count_or_skipped():
    ds = _fields()
    masked = ds.copy(deep=True)
    masked["t850"][:, 2, 3:6] = np.nan
    with pytest.raises(ArgumentError, match=r"18 missing \(NaN\) values.*nan='skip'"):
        xdiffsr.GaussianPrior.fit(masked, covariance="spectral")
    p = xdiffsr.GaussianPrior.fit(masked, covariance="spectral", nan="skip")
    full = xdiffsr.GaussianPrior.fit(ds, covariance="spectral")
    assert np.isfinite(p.std()).all()
    # the variance at the masked latitude comes from the valid values
    valid = masked["t850"].isel(lat=2)
    zonal = valid.mean()
    np.testing.assert_allclose(p.std()[0, 2, 0] ** 2, float(((valid - zonal) ** 2).mean()),
                               rtol=1e-4)
    np.testing.assert_allclose(p.std()[0, 5], full.std()[0, 5], rtol=1e-6)


def test_bad_options_are_typed_errors():
    for kwargs in ({"mean": "median"}, {"nan": "fill"}, {"window": "tukey"}):
        with pytest.raises(XDiffSRError, match=next(iter(kwargs))):
            xdiffsr.GaussianPrior.fit(_fields(), covariance="spectral", **kwargs)
    with pytest.raises(ArgumentError, match="covariance='sample'"):
        xdiffsr.GaussianPrior.fit(_fields(), covariance="kriging")
    with pytest.raises(ArgumentError, match="covariance='sample'"):
        xdiffsr.GaussianPrior.fit(_fields(), rank=3, mean="zonal")


def test_spectral_denoiser_checks_shapes():
    cov = SpectralCovariance.white((1, 4, 8))
    with pytest.raises(ArgumentError, match="shape"):
        SpectralGaussianDenoiser(torch.zeros(1, 4, 6), cov)


def test_real_era5_in_its_cfgrib_layout_lazily(shared_data):
    """The real 3-degree ensemble as cfgrib writes it (``t``, ``z`` with ``isobaricInhPa``,
    ``number``), opened lazily: ``variables=`` picks the channels, and the fit equals the one
    on the same fields flattened by hand."""
    path = shared_data / "era5" / "era5_ens10_3deg_z_t_2017-01.nc"
    if not path.is_file():
        pytest.skip(f"{path} (real ERA5 ensemble sample) is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = xr.open_dataset(path, chunks={"time": 1}).isel(time=[1, 2, 3])
        lazy = xdiffsr.GaussianPrior.fit(raw, covariance="spectral", variables=["t850", "z500"],
                                         dim=("time", "number"))
        flat = xr.Dataset({"t850": raw["t"].sel(isobaricInhPa=850, drop=True),
                           "z500": raw["z"].sel(isobaricInhPa=500, drop=True)}).load()
        eager = xdiffsr.GaussianPrior.fit(flat, covariance="spectral", dim=("time", "number"))
    assert lazy.variables == ("t850", "z500") and lazy.grid.shape == (61, 120)
    np.testing.assert_allclose(lazy.std(), eager.std(), rtol=1e-6)
    np.testing.assert_array_equal(lazy.covariance().power, eager.covariance().power)
    # 30 fields, three weather states: the fit counts about three
    anom = flat.to_array().stack(s=("time", "number")).transpose("s", "variable", ...).values
    t = effective_samples(anom - anom.mean(0))
    assert np.all((t > 2) & (t < 4)), t  # measured: 2.9 (t850), 2.3 (z500)
