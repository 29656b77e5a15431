"""Pure-torch core: schedule, operators, Gaussian reference, guidance and the Heun sampler.

The central check: with a Gaussian prior and linear observations the exact posterior is known, so
the sampler's ensemble can be compared with it (issue: MMPS within 5 % of the prior-to-posterior
distance for the mean and 15 % for the spread; the paper's guidance measured and better than none).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tests.conftest import smooth_covariance
from xdiffsr.core.gaussian import GaussianDenoiser, gaussian_posterior
from xdiffsr.core.likelihood import (
    GaussianLikelihood,
    MMPSGuidance,
    ScoreGuidance,
    conjugate_gradient,
)
from xdiffsr.core.operators import CallableOperator, SparseOperator
from xdiffsr.core.sampler import heun_sampler
from xdiffsr.core.schedule import karras_sigmas
from xdiffsr.errors import ArgumentError, DivergenceError, XDiffSRWarning
from xdiffsr.reconstruct.settings import SamplerSettings

H = W = 16
N = H * W


def test_karras_sigmas_endpoints_and_order():
    s = karras_sigmas(18, sigma_min=0.002, sigma_max=80.0)
    assert s.shape == (19,)
    assert s[0].item() == pytest.approx(80.0) and s[17].item() == pytest.approx(0.002)
    assert s[-1].item() == 0.0 and bool((s[1:] < s[:-1]).all())
    # rho = 1 gives equal steps
    lin = karras_sigmas(5, sigma_min=1.0, sigma_max=5.0, rho=1.0)[:-1]
    assert torch.allclose(lin, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=lin.dtype))
    with pytest.raises(ArgumentError, match="steps"):
        karras_sigmas(0)


@pytest.mark.parametrize("dense_below", [0, 2**21], ids=["sparse", "dense"])
def test_sparse_operator_matches_dense_and_adjoint(device, dense_below):
    rng = np.random.default_rng(0)
    A = sp.random(40, 2 * N, density=0.05, random_state=1, format="csr")
    b = rng.normal(size=40)
    op = SparseOperator(A, (2, H, W), offset=b, dense_below=dense_below).to(device)
    assert (op.A.layout == torch.strided) == (dense_below > 0)
    np.testing.assert_allclose(
        op.row_norms_sq().cpu().numpy(), np.asarray(A.multiply(A).sum(axis=1)).ravel(), rtol=1e-5
    )
    x = torch.randn(3, 2, H, W, device=device)
    y = op(x)
    ref = x.reshape(3, -1).cpu().double().numpy() @ A.T.toarray() + b
    np.testing.assert_allclose(y.cpu().numpy(), ref, rtol=1e-5, atol=1e-5)
    v = torch.randn(3, 40, device=device)
    lhs = (op.linear(x) * v).sum()
    rhs = (x * op.adjoint(v)).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-4)
    # autograd through the operator equals the adjoint
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((op(xg) * v).sum(), xg)
    torch.testing.assert_close(g, op.adjoint(v))
    with pytest.raises(ArgumentError, match="columns"):
        SparseOperator(A, (1, H, W))


def test_callable_operator_adjoint_is_transpose():
    M = torch.randn(7, N)
    op = CallableOperator(lambda x: x.reshape(x.shape[0], -1) @ M.T, (1, H, W))
    v = torch.randn(2, 7)
    torch.testing.assert_close(op.adjoint(v).reshape(2, -1), v @ M, rtol=1e-5, atol=1e-5)


def test_conjugate_gradient_solves_spd():
    g = torch.Generator().manual_seed(0)
    Q = torch.randn(20, 20, generator=g)
    A = Q @ Q.T + 20 * torch.eye(20)
    b = torch.randn(3, 20, generator=g)
    u = conjugate_gradient(lambda v: v @ A, b, iters=40)
    torch.testing.assert_close(u @ A, b, rtol=1e-4, atol=1e-4)


def test_conjugate_gradient_stops_at_non_positive_curvature():
    # indefinite A (an untrained network's Jacobian can make MMPS's system so): at the second
    # iteration p^T A p = -179 < 0; plain CG divides by it and diverges, truncated CG keeps the
    # first iterate (u = b / 1 since p^T A p = r^T r = 4 at the first step)
    A = torch.diag(torch.tensor([1.0, 2.0, -3.0, 4.0]))
    b = torch.ones(2, 4)
    u = conjugate_gradient(lambda v: v @ A, b, iters=10)
    torch.testing.assert_close(u, torch.ones(2, 4))
    # rows are independent: an SPD row in the same batch still converges
    b2 = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    u2 = conjugate_gradient(lambda v: v @ A, b2, iters=10)
    torch.testing.assert_close(u2[0], torch.tensor([1.0, 0.5, 0.0, 0.25]))
    assert torch.isfinite(u2).all()


@pytest.fixture(scope="module")
def gaussian_problem():
    """256-dimensional Gaussian prior, 62 point observations with error std 0.1."""
    K = smooth_covariance(H, W)
    lam, U = np.linalg.eigh(K)
    prior = GaussianDenoiser(
        torch.full((1, H, W), 0.5),
        torch.tensor(U, dtype=torch.float32),
        torch.tensor(lam, dtype=torch.float32),
    )
    rng = np.random.default_rng(1)
    idx = rng.choice(N, 62, replace=False)
    A = sp.csr_matrix((np.ones(62), (np.arange(62), idx)), shape=(62, N))
    op = SparseOperator(A, (1, H, W))
    truth = prior.sample(1, generator=torch.Generator().manual_seed(3))
    R = 0.1**2
    y = op(truth)[0] + 0.1 * torch.randn(62, generator=torch.Generator().manual_seed(4))
    mean, var, _ = gaussian_posterior(prior, [op], [y], [torch.full((62,), R)])
    return dict(prior=prior, K=K, A=A, op=op, y=y, R=R, mean=mean, var=var)


def test_gaussian_denoiser_is_exact(gaussian_problem):
    p = gaussian_problem
    x = torch.randn(2, 1, H, W)
    for sigma in (0.05, 1.0, 30.0):
        D = p["prior"](x, torch.tensor([sigma, sigma]))
        K = p["K"]
        ref = 0.5 + (x.reshape(2, -1).double().numpy() - 0.5) @ np.linalg.solve(
            K + sigma**2 * np.eye(N), K
        )
        np.testing.assert_allclose(D.reshape(2, -1).numpy(), ref, atol=2e-4)


def test_gaussian_posterior_matches_dense_formula(gaussian_problem):
    p = gaussian_problem
    K, A, R = p["K"], p["A"].toarray(), p["R"]
    S = A @ K @ A.T + R * np.eye(62)
    gain = K @ A.T @ np.linalg.inv(S)
    mean = 0.5 + gain @ (p["y"].double().numpy() - A @ np.full(N, 0.5))
    var = np.diag(K - gain @ A @ K)
    np.testing.assert_allclose(p["mean"].reshape(-1).numpy(), mean, atol=1e-4)
    np.testing.assert_allclose(p["var"].reshape(-1).numpy(), var, atol=1e-4)


def test_gaussian_posterior_samples_have_posterior_moments(gaussian_problem):
    p = gaussian_problem
    _, _, samples = gaussian_posterior(
        p["prior"],
        [p["op"]],
        [p["y"]],
        [torch.full((62,), p["R"])],
        members=4000,
        generator=torch.Generator().manual_seed(0),
    )
    m = samples.mean(0)
    assert ((m - p["mean"]).norm() / (p["mean"] - 0.5).norm()).item() < 0.03
    ratio = (samples.var(0).mean() / p["var"].mean()).sqrt().item()
    assert abs(ratio - 1) < 0.05


def _ensemble_errors(p, denoiser, members=512, steps=18, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sig = karras_sigmas(steps, sigma_min=0.002, sigma_max=80.0)
    x = heun_sampler(denoiser, torch.randn(members, 1, H, W, generator=gen), sig, generator=gen)
    assert torch.isfinite(x).all()
    dist = (p["mean"] - 0.5).norm()
    mean_err = ((x.mean(0) - p["mean"]).norm() / dist).item()
    spread = (x.var(0).mean() / p["var"].mean()).sqrt().item()
    return mean_err, spread


def test_mmps_recovers_exact_posterior(gaussian_problem):
    p = gaussian_problem
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"])
    mean_err, spread = _ensemble_errors(p, MMPSGuidance(p["prior"], [lik], cg_iters=10))
    assert mean_err < 0.05, mean_err
    assert abs(spread - 1) < 0.15, spread


def test_sda_guidance_beats_unguided(gaussian_problem):
    """The paper's guidance at Gamma = 0.1 (measured here: mean error 0.13 of the prior-to-posterior
    distance, spread 1.37x the exact one); unguided: mean error 1.0, spread 6.3x."""
    p = gaussian_problem
    err_none, spread_none = _ensemble_errors(p, p["prior"])
    assert err_none > 0.8 and spread_none > 3  # the prior is far from the posterior
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"], gamma=0.1)
    err, spread = _ensemble_errors(p, ScoreGuidance(p["prior"], [lik]))
    assert err < 0.5 * err_none and err < 0.3, err
    assert spread < 0.5 * spread_none and spread < 2.0, spread


def test_mmps_source_weight_tempers_error_variance(gaussian_problem):
    """Eq. 14 with weight w equals one source with Sigma_y / w."""
    p = gaussian_problem
    x = torch.randn(4, 1, H, W, generator=torch.Generator().manual_seed(5))
    sigma = torch.full((4,), 0.7)
    a = MMPSGuidance(p["prior"], [GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"], weight=4.0)])
    b = MMPSGuidance(p["prior"], [GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"] / 4)])
    torch.testing.assert_close(a(x, sigma), b(x, sigma))


def test_sda_weights_add_log_likelihoods(gaussian_problem):
    """Two sources with weights w1, w2 give the guidance step w1 s1 + w2 s2."""
    p = gaussian_problem
    x = torch.randn(3, 1, H, W, generator=torch.Generator().manual_seed(6))
    sigma = torch.full((3,), 2.0)
    prior = p["prior"]
    D = prior(x, sigma)

    def step(liks):
        return ScoreGuidance(prior, liks)(x, sigma) - D

    l1 = GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"], gamma=0.5)
    l2 = GaussianLikelihood(p["y"] + 1.0, p["op"], sigma_y=0.3, gamma=0.2)
    l1w = GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"], gamma=0.5, weight=0.3)
    l2w = GaussianLikelihood(p["y"] + 1.0, p["op"], sigma_y=0.3, gamma=0.2, weight=2.0)
    torch.testing.assert_close(
        step([l1w, l2w]), 0.3 * step([l1]) + 2.0 * step([l2]), rtol=1e-4, atol=1e-5
    )


def test_sampler_reproducible_and_callback(gaussian_problem):
    p = gaussian_problem
    sig = karras_sigmas(6)
    seen = []

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return heun_sampler(
            p["prior"],
            torch.randn(4, 1, H, W, generator=g),
            sig,
            S_churn=10,
            generator=g,
            callback=lambda d: seen.append(d["i"]),
        )

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert seen[:6] == list(range(6))


def test_clip_bounds_guidance_step(gaussian_problem):
    p = gaussian_problem
    lik = GaussianLikelihood(p["y"] + 50, p["op"], sigma_y=1e-4, gamma=0.0)
    x = torch.randn(2, 1, H, W)
    sigma = torch.full((2,), 5.0)
    D = p["prior"](x, sigma)
    step = ScoreGuidance(p["prior"], [lik], clip=0.5)(x, sigma) - D
    rms = step.flatten(1).square().mean(1).sqrt()
    assert torch.all(rms <= 0.5 + 1e-5) and torch.all(rms > 0.49)


def test_likelihood_rejects_bad_input(gaussian_problem):
    p = gaussian_problem
    with pytest.raises(ArgumentError, match="NaN"):
        GaussianLikelihood(torch.tensor([float("nan")] * 62), p["op"])
    with pytest.raises(ArgumentError, match="sigma_y"):
        GaussianLikelihood(p["y"], p["op"], sigma_y=torch.ones(3))
    with pytest.raises(ArgumentError, match="weight"):
        GaussianLikelihood(p["y"], p["op"], weight=-1)


def test_guided_sampling_on_device(gaussian_problem, device):
    """Both guidances run on the selected device (``--device cuda`` on a GPU machine) with a
    generator there, and MMPS still recovers the exact posterior mean."""
    p = gaussian_problem
    prior = GaussianDenoiser(p["prior"].mean, p["prior"].U, p["prior"].lam).to(device)
    lik = GaussianLikelihood(p["y"], SparseOperator(p["A"], (1, H, W)), sigma_y=p["R"]).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    sig = karras_sigmas(18)
    for guided in (ScoreGuidance(prior, [lik], clip=1.0), MMPSGuidance(prior, [lik])):
        x = heun_sampler(
            guided,
            torch.randn(512, 1, H, W, generator=gen, device=device),
            sig,
            S_churn=5.0,
            generator=gen,
        )
        assert x.device.type == device.type and torch.isfinite(x).all()
    err = ((x.mean(0).cpu() - p["mean"]).norm() / (p["mean"] - 0.5).norm()).item()
    assert err < 0.05  # the last run is MMPS


def test_conjugate_gradient_stops_on_relative_tolerance():
    """CG ends once every row's relative residual is below tol (fewer matvecs than the cap)."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(30, 30, generator=g))[0]
    A = Q @ torch.diag(torch.linspace(1.0, 3.0, 30)) @ Q.T
    b = torch.randn(3, 30, generator=g)
    calls = []

    def matvec(v):
        calls.append(1)
        return v @ A

    u = conjugate_gradient(matvec, b, iters=100, tol=1e-3)
    assert len(calls) < 30
    exact = torch.linalg.solve(A, b.T).T
    assert ((u - exact).norm() / exact.norm()).item() < 1e-2
    calls.clear()
    conjugate_gradient(matvec, b, iters=4, tol=0.0)
    assert len(calls) == 4


def test_mmps_trust_region_never_binds_for_gaussian_prior(gaussian_problem):
    p = gaussian_problem
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"])
    x = 3 * torch.randn(4, 1, H, W, generator=torch.Generator().manual_seed(7))
    for s in (80.0, 2.0, 0.05):
        sigma = torch.full((4,), s)
        a = MMPSGuidance(p["prior"], [lik], cg_iters=40, cg_tol=0.0)(x, sigma)
        b = MMPSGuidance(p["prior"], [lik], cg_iters=40, cg_tol=0.0, trust_region=False)(x, sigma)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_mmps_trust_region_bounds_an_overshooting_correction(gaussian_problem):
    """A denoiser whose Jacobian is 10x a covariance overshoots: the trust region keeps the
    observation-space correction within the innovation and never increases the residual."""
    p = gaussian_problem
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=p["R"])
    prior = p["prior"]

    def bad(x, sigma):  # Jacobian 10 J: ten times Tweedie's covariance
        return prior.mean + 10 * (prior(x, sigma) - prior.mean)

    x = torch.randn(2, 1, H, W, generator=torch.Generator().manual_seed(8))
    sigma = torch.full((2,), 1.0)
    D = bad(x, sigma)
    out = MMPSGuidance(bad, [lik], cg_iters=10)(x, sigma)
    r0 = (p["y"] - p["op"](D)).norm(dim=1)
    r1 = (p["y"] - p["op"](out)).norm(dim=1)
    step = (p["op"].linear(out - D)).norm(dim=1)
    assert torch.all(r1 <= r0 * (1 + 1e-5)) and torch.all(step <= r0 * (1 + 1e-5))


def test_sampler_flags_divergence(gaussian_problem):
    """Paper's guidance with Gamma = 0 and precise data diverges to non-finite states: a typed
    error with the fix, never NaN members; an exploded finite member warns and is kept."""
    p = gaussian_problem
    lik = GaussianLikelihood(p["y"], p["op"], sigma_y=1e-6, gamma=0.0)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(DivergenceError, match="guidance='mmps'"):
        heun_sampler(
            ScoreGuidance(p["prior"], [lik]),
            torch.randn(3, 1, H, W, generator=gen),
            karras_sigmas(8, sigma_min=0.002, sigma_max=80.0),
        )
    # a finite state beyond the bound (here: a tiny bound) warns and is returned unchanged
    lat = torch.randn(3, 1, H, W, generator=torch.Generator().manual_seed(1))
    ref = heun_sampler(p["prior"], lat, karras_sigmas(8), divergence_bound=None)
    with pytest.warns(XDiffSRWarning, match="cannot be right"):
        out = heun_sampler(p["prior"], lat, karras_sigmas(8), divergence_bound=1e-3)
    assert torch.isfinite(out).all() and torch.equal(out, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error", XDiffSRWarning)
        y = heun_sampler(p["prior"], torch.randn(3, 1, H, W, generator=gen), karras_sigmas(8))
    assert torch.isfinite(y).all()


def test_cg_tol_setting_validated():
    assert SamplerSettings().cg_tol == 1e-3 and SamplerSettings().guidance == "jf"
    assert SamplerSettings(cg_tol=0).cg_tol == 0.0
    for bad in (-1e-3, 1.0, math.nan, "x"):
        with pytest.raises(ArgumentError, match="cg_tol"):
            SamplerSettings(cg_tol=bad)
