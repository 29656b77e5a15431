"""Stationary spectral covariances and Jacobian-free moment matching (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xdiffsr.core.covariance import SpectralCovariance
from xdiffsr.core.gaussian import GaussianDenoiser, gaussian_posterior
from xdiffsr.core.likelihood import GaussianLikelihood, JFGuidance, PassCounter
from xdiffsr.core.operators import SparseOperator
from xdiffsr.core.sampler import heun_sampler
from xdiffsr.core.schedule import karras_sigmas
from xdiffsr.errors import ArgumentError

C, H, W = 2, 8, 16
N = C * H * W


def _smooth_power(length: float = 2.0) -> torch.Tensor:
    """A Gaussian-shaped spectrum, even in the latitude wavenumber, two channels of different
    variance."""
    ky = torch.fft.fftfreq(2 * H).abs().reshape(-1, 1)
    kx = torch.fft.rfftfreq(W).reshape(1, -1)
    shape = torch.exp(-2 * (np.pi * length) ** 2 * (ky**2 + kx**2)) + 1e-3
    return torch.stack([4.0 * shape, 0.5 * shape]) / shape.mean()


def _dense(op, shape=(C, H, W)) -> np.ndarray:
    eye = torch.eye(int(np.prod(shape))).reshape(-1, *shape)
    return op(eye).reshape(eye.shape[0], -1).double().numpy().T


def test_covariance_is_symmetric_positive_and_tweedie_is_exact():
    cov = SpectralCovariance(_smooth_power())
    B = _dense(cov)
    np.testing.assert_allclose(B, B.T, atol=1e-5)
    assert np.linalg.eigvalsh(B).min() > -1e-5
    # variance() is the mean diagonal per channel
    diag = np.diag(B).reshape(C, H * W).mean(1)
    np.testing.assert_allclose(cov.variance().numpy(), diag, rtol=1e-4)
    for s in (0.1, 1.0, 10.0):
        S = _dense(lambda v, s=s: cov(v, torch.full((v.shape[0],), s)))
        ref = np.linalg.inv(np.linalg.inv(B) + np.eye(N) / s**2)
        np.testing.assert_allclose(S, ref, atol=1e-4 * max(1.0, s**2) * np.abs(ref).max())


def test_white_covariance_is_a_multiple_of_identity():
    cov = SpectralCovariance.white((C, H, W), 2.5)
    np.testing.assert_allclose(_dense(cov), 2.5 * np.eye(N), atol=1e-5)


def test_from_states_recovers_a_known_covariance():
    cov = SpectralCovariance(_smooth_power())
    B = _dense(cov)
    L = np.linalg.cholesky(B + 1e-9 * np.eye(N))
    rng = np.random.default_rng(0)
    x = torch.tensor((L @ rng.standard_normal((N, 4000))).T.reshape(-1, C, H, W) + 3.0)
    est = _dense(SpectralCovariance.from_states(x))
    # the estimate is the reflection-symmetrised stationary part of B: compare variances and the
    # correlation at one cell's neighbourhood
    np.testing.assert_allclose(np.diag(est), np.diag(B), rtol=0.15)
    i = (0 * H + 4) * W + 7
    np.testing.assert_allclose(est[i, i - 3 : i + 4], B[i, i - 3 : i + 4], atol=0.15 * B[i, i])


@pytest.mark.parametrize(
    "bad", [torch.ones(2, 8), -torch.ones(1, 4, 3), torch.full((1, 4, 3), np.nan)]
)
def test_bad_power_is_refused(bad):
    with pytest.raises(ArgumentError, match="power"):
        SpectralCovariance(bad)


def test_from_states_refuses_one_sample_and_odd_width():
    with pytest.raises(ArgumentError, match="N >= 2"):
        SpectralCovariance.from_states(torch.zeros(1, 1, 4, 8))
    with pytest.raises(ArgumentError, match="even W"):
        SpectralCovariance.from_states(torch.zeros(3, 1, 4, 7))


@pytest.fixture(scope="module")
def spectral_problem():
    cov = SpectralCovariance(_smooth_power())
    lam, U = np.linalg.eigh(_dense(cov))
    prior = GaussianDenoiser(
        torch.full((C, H, W), 0.5),
        torch.tensor(U, dtype=torch.float32),
        torch.tensor(np.clip(lam, 0, None), dtype=torch.float32),
    )
    rng = np.random.default_rng(1)
    idx = rng.choice(N, 40, replace=False)
    op = SparseOperator(sp.csr_matrix((np.ones(40), (np.arange(40), idx)), shape=(40, N)),
                        (C, H, W))
    truth = prior.sample(1, generator=torch.Generator().manual_seed(3))
    y = op(truth)[0] + 0.1 * torch.randn(40, generator=torch.Generator().manual_seed(4))
    mean, var, _ = gaussian_posterior(prior, [op], [y], [torch.full((40,), 0.01)])
    return dict(cov=cov, prior=prior, op=op, y=y, mean=mean, var=var)


def test_jf_guidance_recovers_exact_posterior_without_backward_passes(spectral_problem):
    """With the prior's own covariance, Jacobian-free moment matching is exact."""
    p = spectral_problem
    counter = PassCounter(p["prior"])
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=0.01)
    den = JFGuidance(counter, [lik], p["cov"], cg_iters=100, cg_tol=1e-6)
    gen = torch.Generator().manual_seed(0)
    x = heun_sampler(den, torch.randn(512, C, H, W, generator=gen), karras_sigmas(18))
    assert torch.isfinite(x).all()
    err = ((x.mean(0) - p["mean"]).norm() / (p["mean"] - 0.5).norm()).item()
    spread = (x.var(0).mean() / p["var"].mean()).sqrt().item()
    assert err < 0.05, err
    assert abs(spread - 1) < 0.1, spread
    assert counter.forward_passes == 35 and counter.backward_passes == 0


def test_jf_guidance_with_a_wrong_covariance_is_not_exact(spectral_problem):
    """A white covariance in place of the smooth one spreads no information to unobserved
    cells: the test above can fail."""
    p = spectral_problem
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=0.01)
    white = SpectralCovariance.white((C, H, W), float(p["cov"].variance().mean()))
    den = JFGuidance(p["prior"], [lik], white, cg_iters=100, cg_tol=1e-6)
    gen = torch.Generator().manual_seed(0)
    x = heun_sampler(den, torch.randn(256, C, H, W, generator=gen), karras_sigmas(18))
    err = ((x.mean(0) - p["mean"]).norm() / (p["mean"] - 0.5).norm()).item()
    assert err > 0.1, err


def test_jf_guidance_without_observations_is_the_prior(spectral_problem):
    p = spectral_problem
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=0.01, weight=0.0)
    den = JFGuidance(p["prior"], [lik], p["cov"])
    x = torch.randn(3, C, H, W)
    sigma = torch.full((3,), 0.7)
    torch.testing.assert_close(den(x, sigma), p["prior"](x, sigma))


def test_multivariate_covariance_keeps_channel_correlations_and_is_exact():
    """Two channels correlated at 0.8 scale by scale: the cross-spectral estimate keeps the
    correlation (a per-channel one has none), stays symmetric positive semi-definite, and its
    Tweedie filter equals (B^-1 + sigma^-2 I)^-1."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(400, 1, H, W, generator=g)
    x = torch.cat([base, 0.8 * base + 0.6 * torch.randn(400, 1, H, W, generator=g)], dim=1)
    cov = SpectralCovariance.from_states(x, isotropic=True, multivariate=True)
    assert cov.multivariate
    B = _dense(cov)
    np.testing.assert_allclose(B, B.T, atol=1e-5)
    assert np.linalg.eigvalsh(B).min() > -1e-5
    i, j = 3 * W + 5, H * W + 3 * W + 5  # one cell, channel 0 and channel 1
    assert abs(B[i, j] / np.sqrt(B[i, i] * B[j, j]) - 0.8) < 0.05
    diag_only = _dense(SpectralCovariance.from_states(x, isotropic=True))
    assert abs(diag_only[i, j]) < 1e-6
    np.testing.assert_allclose(cov.variance().numpy(), np.diag(B).reshape(C, -1).mean(1),
                               rtol=1e-4)
    S = _dense(lambda v: cov(v, torch.full((v.shape[0],), 0.7)))
    ref = np.linalg.inv(np.linalg.inv(B + 1e-9 * np.eye(N)) + np.eye(N) / 0.49)
    np.testing.assert_allclose(S, ref, atol=1e-4 * np.abs(ref).max())
