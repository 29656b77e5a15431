"""The members of the default settings are those of the last release (0.x, before the guidance
family of issue 25): the library's members equal an independent reference written here from the
method's equations (Heun sampler, with the stochastic churn of Karras et al. 2022, Algorithm 2,
where asked for; Jacobian-free moment matching with MMPS in the noise band (1.3, 3.0);
Jacobi-preconditioned conjugate gradients with Steihaug's stop; the observation-space trust
region), each member's system solved on its own and every product formed densely. A Gaussian
prior's own churn is 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import xdiffsr
from tests.test_accessor import LAT, LON, _covariance, _mean_ds
from xdiffsr.reconstruct.sample import member_seeds, sample_time
from xdiffsr.reconstruct.settings import SamplerSettings

TIME = np.datetime64("2021-01-01T00:00", "ns")


@pytest.fixture(scope="module")
def problem():
    prior = xdiffsr.GaussianPrior(_mean_ds(), _covariance())
    g = np.random.default_rng(11)
    n = 30
    i, j = g.integers(0, 8, n), g.integers(0, 16, n)
    df = pd.DataFrame({"time": TIME, "lat": LAT[i] + 3.0, "lon": LON[j] + 5.0,
                       "variable": np.where(np.arange(n) % 3, "t850", "z500"),
                       "units": np.where(np.arange(n) % 3, "K", "m2 s-2")})
    mean = np.where(df["variable"] == "t850", 270.0, 54000.0)
    spread = np.where(df["variable"] == "t850", 3.0, 300.0)
    df["value"] = mean + spread * g.normal(size=n)
    return prior, xdiffsr.PointObservations(df, sigma_y={"t850": 1.0, "z500": 900.0})


def _cg(matvec, b, diag, iters, tol):
    """One system ``A u = b`` (vectors), Jacobi-preconditioned; stops when the preconditioned
    residual falls below ``tol`` of the first one, or at non-positive curvature."""
    u = torch.zeros_like(b)
    r = b.clone()
    z = r / diag
    p = z.clone()
    rz = (r * z).sum()
    floor = tol**2 * rz
    for _ in range(iters):
        if not rz > floor:
            break
        Ap = matvec(p)
        pAp = (p * Ap).sum()
        if not (torch.isfinite(pAp) and pAp > 0):
            break
        alpha = rz / pAp
        u = u + alpha * p
        r = r - alpha * Ap
        z = r / diag
        rz_new = (r * z).sum()
        p = z + rz_new / rz * p
        rz = rz_new
    return u


def _trust(m_step, r, var):
    mm, rr, rm = ((a * b / var).sum() for a, b in ((m_step, m_step), (r, r), (r, m_step)))
    if not mm > 0:
        return 1.0
    return float(torch.clamp(torch.minimum((rr / mm).sqrt(), 2 * rm / mm), 0.0, 1.0))


def _reference_members(prior, source, settings: SamplerSettings) -> np.ndarray:
    C, H, W = prior.state_shape
    block = source.at_time(TIME, prior)
    s = np.repeat(prior.scale, H * W)
    c = np.repeat(prior.center, H * W)
    A = block.matrix.toarray()
    M = torch.tensor(A * s, dtype=torch.float32)  # normalised state -> observations
    m0 = torch.tensor(A @ c, dtype=torch.float32)
    y = torch.tensor(block.y, dtype=torch.float32)
    var_y = torch.tensor(block.variance, dtype=torch.float32)
    row2 = torch.tensor((A * s) ** 2, dtype=torch.float32).sum(dim=1)
    den = prior.denoiser("cpu")
    cov = prior.covariance("cpu")
    lo, hi = settings.mmps_sigmas

    def obs(x):  # (C, H, W) -> (n,)
        return M @ x.reshape(-1) + m0

    def posterior(x, sigma):  # one member (C, H, W) at noise level sigma (float)
        sig = torch.tensor([sigma], dtype=torch.float32)
        D = den(x[None], sig)[0]
        r = y - obs(D)
        if lo <= sigma <= hi:  # MMPS: the denoiser's Jacobian
            s2 = torch.tensor(sigma, dtype=torch.float32) ** 2
            _, vjp = torch.func.vjp(lambda v: den(v[None], sig)[0], x)

            def JtMt(v):
                return vjp((M.T @ v).reshape(C, H, W))[0]

            u = _cg(lambda v: var_y * v + s2 * (M @ JtMt(v).reshape(-1)), r,
                    var_y + s2 / (1 + s2) * row2, settings.cg_iters, settings.cg_tol)
            step = s2 * JtMt(u)
        else:  # Jacobian-free: Tweedie's covariance of the stationary prior covariance
            def SMt(v):
                return cov((M.T @ v).reshape(1, C, H, W), sig)[0]

            diag = var_y + cov.variance(sig).mean() * row2
            u = _cg(lambda v: var_y * v + M @ SMt(v).reshape(-1), r, diag, 10, settings.cg_tol)
            step = SMt(u)
        return D + step * _trust(M @ step.reshape(-1), r, var_y)

    t = xdiffsr.core.karras_sigmas(settings.steps, sigma_min=prior.sigma_min,
                                   sigma_max=prior.sigma_max).tolist()
    out = []
    for seed in member_seeds(settings.seed, TIME, settings.members):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn((C, H, W), generator=gen) * t[0]
        n = len(t) - 1
        for i in range(n):
            # Algorithm 2: raise the noise from t_i to t_hat with fresh noise of the member's own
            churn = prior.S_churn if settings.S_churn is None else settings.S_churn
            gamma = min(churn / n, math.sqrt(2) - 1) \
                if settings.S_tmin <= t[i] <= settings.S_tmax else 0.0
            t_hat = t[i] * (1 + gamma)
            if t_hat > t[i]:
                eps = torch.randn((C, H, W), generator=gen)
                x = x + math.sqrt(t_hat**2 - t[i] ** 2) * settings.S_noise * eps
            d = (x - posterior(x, t_hat)) / t_hat
            x_next = x + (t[i + 1] - t_hat) * d
            if t[i + 1] > 0:
                d2 = (x_next - posterior(x_next, t[i + 1])) / t[i + 1]
                x_next = x + (t[i + 1] - t_hat) * (0.5 * d + 0.5 * d2)
            x = x_next
        out.append(x.double().numpy())
    return prior.to_state(np.stack(out))


@pytest.mark.parametrize("churn", [{}, {"S_churn": 10.0}])
def test_default_members_equal_the_reference(problem, churn):
    prior, source = problem
    settings = SamplerSettings(members=3, **churn)
    with torch.no_grad():
        got, counts = sample_time(prior, [source], [1.0], TIME, device="cpu", settings=settings)
    ref = _reference_members(prior, source, settings)
    assert counts == [30]
    scale = prior.scale.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(got / scale, ref / scale, rtol=0, atol=2e-4)
    # the guidance moved the members: the comparison is not one of prior samples
    unguided, _ = sample_time(prior, [source], [1.0], TIME, device="cpu",
                              settings=settings.replace(guidance="none"))
    assert np.abs((got - unguided) / scale).max() > 0.1


@pytest.mark.parametrize("options", [{}, {"guidance": "mmps"}, {"mmps_sigmas": None}])
def test_corrector_guidance_off_changes_the_members(problem, options):
    """``corrector_guidance=False`` runs the Heun corrector on the prior: under the default
    settings (the noise band of 'jf') too."""
    prior, source = problem
    settings = SamplerSettings(members=2, steps=6, **options)
    on, _ = sample_time(prior, [source], [1.0], TIME, device="cpu", settings=settings)
    off, _ = sample_time(prior, [source], [1.0], TIME, device="cpu",
                         settings=settings.replace(corrector_guidance=False))
    scale = prior.scale.reshape(1, -1, 1, 1)
    assert np.abs((on - off) / scale).max() > 1e-2
