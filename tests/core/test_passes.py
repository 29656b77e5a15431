"""Network passes per evaluation (issue 15): MMPS without its last backward pass, the circular
padding of the convolutions, the counted cost of each guidance."""

from __future__ import annotations

import pytest
import torch

import xdiffsr
from tests.conftest import tiny_model
from xdiffsr.core import SongUNet, UNetConfig, layers
from xdiffsr.core.likelihood import (
    GaussianLikelihood,
    MMPSGuidance,
    PassCounter,
    ScoreGuidance,
)
from xdiffsr.core.operators import CallableOperator
from xdiffsr.core.sampler import heun_sampler, randn
from xdiffsr.core.schedule import karras_sigmas


def _guided(cg_iters: int, cg_tol: float, trust_region: bool = True, seed: int = 1):
    """A tiny random SongUNet prior (2 x 8 x 16) and 40 observations: a point-like operator of
    random rows and a coarse average of the second channel."""
    prior = PassCounter(tiny_model().denoiser("cpu"))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(24, 2 * 8 * 16, generator=g) / 16
    op1 = CallableOperator(lambda x: x.flatten(1) @ w.T, (2, 8, 16))
    op2 = CallableOperator(
        lambda x: torch.nn.functional.avg_pool2d(x[:, 1:], 2).flatten(1)[:, :16], (2, 8, 16)
    )
    liks = [
        GaussianLikelihood(torch.randn(24, generator=g), op1, sigma_y=0.05),
        GaussianLikelihood(torch.randn(16, generator=g), op2, sigma_y=0.1, weight=2.0),
    ]
    guided = MMPSGuidance(prior, liks, cg_iters=cg_iters, cg_tol=cg_tol, trust_region=trust_region)
    return guided, prior


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("cg_iters, cg_tol, trust", [(2, 1e-3, True), (5, 0.0, False),
                                                     (10, 0.3, True), (1, 0.0, True)])
def test_mmps_reuses_cg_products_and_saves_one_backward_pass(cg_iters, cg_tol, trust):
    guided, prior = _guided(cg_iters, cg_tol, trust)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 2, 8, 16, generator=g) * torch.tensor([0.5, 3.0, 20.0]).reshape(-1, 1, 1, 1)
    sigma = torch.tensor([0.5, 3.0, 20.0])
    fast = guided(x, sigma)
    n_fast = (prior.forward_passes, prior.backward_passes)
    guided._reuse_vjps = False
    prior.forward_passes = prior.backward_passes = 0
    ref = guided(x, sigma)
    n_ref = (prior.forward_passes, prior.backward_passes)
    assert _rel(fast, ref) < 1e-5
    assert n_fast[0] == n_ref[0] == 1
    assert n_ref[1] == n_fast[1] + 1
    assert 1 <= n_fast[1] <= cg_iters
    if cg_tol == 0.0:
        assert n_fast[1] == cg_iters  # no early stop: cg_iters backward passes, not cg_iters + 1


def test_mmps_members_equal_the_reference_path():
    """Whole stochastic Heun trajectories, same noise: the same members within 1e-5."""
    guided, prior = _guided(2, 1e-3)
    sigmas = karras_sigmas(8, sigma_min=0.002, sigma_max=80.0)
    out = []
    for reuse in (True, False):
        guided._reuse_vjps = reuse
        prior.forward_passes = prior.backward_passes = 0
        gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
        x = heun_sampler(guided, randn((2, 2, 8, 16), gens), sigmas, S_churn=10.0,
                         generator=gens)
        out.append((x, prior.forward_passes, prior.backward_passes))
    (fast, f1, b1), (ref, f2, b2) = out
    assert _rel(fast, ref) < 1e-5
    evaluations = 2 * 8 - 1
    assert f1 == f2 == evaluations
    assert b2 - b1 == evaluations  # one backward pass saved per evaluation
    assert b1 <= 2 * evaluations


def test_pass_counts_of_each_guidance():
    guided, prior = _guided(2, 0.0)
    x, s = torch.randn(2, 2, 8, 16), torch.tensor([1.0, 1.0])
    sda = ScoreGuidance(prior, list(guided.likelihoods))
    prior.forward_passes = prior.backward_passes = 0
    sda(x, s)
    assert (prior.forward_passes, prior.backward_passes) == (1, 1)
    prior.forward_passes = prior.backward_passes = 0
    with torch.no_grad():
        prior(x, s)
    assert (prior.forward_passes, prior.backward_passes) == (1, 0)


def _cat_wrap(x: torch.Tensor, p: int) -> torch.Tensor:  # the padding before issue 15
    return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)


@pytest.mark.parametrize("width, p", [(16, 1), (2, 1), (1, 1), (9, 2), (4, 2)])
def test_wrap_longitude_and_its_gradients_match_cat(width, p):
    x = torch.randn(2, 3, 5, width, dtype=torch.float64, requires_grad=True)
    assert torch.equal(layers.wrap_longitude(x, p), _cat_wrap(x, p))
    assert torch.autograd.gradcheck(lambda t: layers.wrap_longitude(t, p), (x,))
    assert torch.autograd.gradgradcheck(lambda t: layers.wrap_longitude(t, p), (x,))


@pytest.mark.parametrize("config", ["tiny", "default"])
def test_network_and_its_vjp_unchanged_by_the_padding(config, monkeypatch):
    if config == "tiny":
        torch.manual_seed(0)
        net = SongUNet.from_config(UNetConfig.tiny(3, (16, 32)))
    else:
        net = xdiffsr.load_model("default").denoiser("cpu")
    shape = (3, 3, 16, 32) if config == "tiny" else (2, 13, 64, 128)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    s = torch.tensor([0.3, 2.0, 30.0][: shape[0]])
    v = torch.randn(shape, generator=g)

    def run():
        xi = x.clone().requires_grad_(True)
        out = net(xi, s)
        (grad,) = torch.autograd.grad(out, xi, v)
        return out.detach(), grad

    new = run()
    monkeypatch.setattr(layers, "wrap_longitude", _cat_wrap)
    ref = run()
    for a, b in zip(new, ref):
        assert _rel(a, b) < 1e-5
