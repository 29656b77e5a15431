"""The guidance contract: a method defined outside the package (here, in this file) through
:class:`xdiffsr.core.guidance.Guidance` and one row of the table runs end to end: settings
accept its name, the sampler builds it, batches across times regroup it, and the unguided
corrector finds its prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xdiffsr
from tests.test_accessor import TIMES, _covariance, _mean_ds, _points
from xdiffsr.core.guidance import GUIDANCE_BUILDERS, Guidance, batch_guidances
from xdiffsr.core.guidance.base import as_sigma
from xdiffsr.core.operators import row_norms_sq
from xdiffsr.reconstruct.settings import SamplerSettings


class NudgeGuidance(Guidance):
    """Nudging: ``D + strength * sum_k M_k^T (y_k - M_k D) / (Sigma_k / w_k + |m_k|^2)``."""

    option_names = ("strength",)

    def __init__(self, denoiser, likelihoods, *, strength: float = 0.5):
        super().__init__(denoiser, likelihoods)
        self.strength = float(strength)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        with torch.no_grad():
            D = self.prior(x, sigma)
            step = torch.zeros_like(D)
            for lik in self.likelihoods:  # y, sigma_y: (n,) or, regrouped, (B, n)
                norms = row_norms_sq(lik.operator, lik.n_obs)
                r = (lik.y - lik.operator(D)) / (lik.sigma_y / lik.weight + norms)
                step = step + lik.operator.adjoint(r)
        return D + self.strength * step


def build_nudge(denoiser, likelihoods, options, covariance):
    return NudgeGuidance(denoiser, likelihoods, strength=0.5 * options["lambda_g"])


@pytest.fixture
def nudge(monkeypatch):
    monkeypatch.setitem(GUIDANCE_BUILDERS, "nudge", build_nudge)


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior(_mean_ds(), _covariance())


def test_an_unregistered_name_is_refused():
    with pytest.raises(xdiffsr.ArgumentError, match="nudge"):
        SamplerSettings(guidance="nudge")


def test_a_guidance_defined_here_runs_end_to_end(nudge, prior):
    truth = np.stack([_mean_ds()[v].values for v in ("t850", "z500")]) + 3.0
    obs = _points(truth, n=40, times=TIMES[:2])
    target = xr.Dataset(coords={"time": TIMES[:2]})
    kw = dict(model=prior, members=2, steps=6, seed=4)
    guided = target.diffsr.super_resolve([obs], guidance="nudge", **kw)
    assert guided.attrs["sampler"].count('"guidance": "nudge"') == 1
    free = target.diffsr.super_resolve([obs], guidance="none", **kw)
    x = guided["t850"].values
    assert np.isfinite(x).all()
    # nudged towards the observations (the truth + 3 K at 40 of 128 cells)
    assert np.abs(x.mean(1) - truth[0]).mean() < np.abs(free["t850"].values.mean(1)
                                                          - truth[0]).mean()
    # both times in one batch (regrouped through the contract) = one time per batch
    alone = target.diffsr.super_resolve([obs], guidance="nudge", batch_size=2, **kw)
    np.testing.assert_allclose(x, alone["t850"].values, rtol=0, atol=1e-4)
    # the unguided corrector runs on the guidance's prior
    off = target.diffsr.super_resolve([obs], guidance="nudge", corrector_guidance=False, **kw)
    assert np.abs(off["t850"].values - x).max() > 1e-3


def test_regrouping_refuses_other_options(prior):
    den = prior.denoiser()
    a, b = NudgeGuidance(den, [], strength=0.5), NudgeGuidance(den, [], strength=1.0)
    with pytest.raises(xdiffsr.ArgumentError, match="strength"):
        batch_guidances([a, b], [1, 1])
