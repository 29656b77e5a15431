"""Tests of EDM preconditioning and loss (xdiffsr.core.precond)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xdiffsr.core.precond import EDMLoss, EDMPrecond, edm_coefficients
from xdiffsr.core.unet import SongUNet, UNetConfig
from xdiffsr.errors import ArgumentError


class _Recorder(nn.Module):
    """Stub network F: records its inputs and returns a fixed field."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, c_noise):
        self.calls.append((x.clone(), c_noise.clone()))
        return self.out.expand_as(x)


def _table1(sigma: float, sd: float) -> tuple[float, float, float, float]:
    """Karras et al. (2022) Table 1, "Ours" column, evaluated in float64."""
    return (sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sd**2 + sigma**2),
            1 / math.sqrt(sigma**2 + sd**2), 0.25 * math.log(sigma))


@pytest.mark.parametrize("sd", [0.5, 1.0])
def test_coefficients_table1(sd):
    sigmas = [0.002, 0.1, 0.5, 1.0, 7.3, 80.0]
    got = edm_coefficients(torch.tensor(sigmas, dtype=torch.float64), sd)
    expected = np.array([_table1(s, sd) for s in sigmas]).T
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-12)


def test_coefficients_unit_variance_properties():
    """EDM design (Karras et al. 2022, App. B.6): c_in gives the network inputs of unit
    variance, and c_skip, c_out give its effective target (y - c_skip (y + n)) / c_out unit
    variance, for data of variance sd² and noise of variance σ²."""
    s = torch.logspace(-3, 2, 11, dtype=torch.float64)
    sd = 0.5
    c_skip, c_out, c_in, _ = edm_coefficients(s, sd)
    torch.testing.assert_close(c_in**2 * (sd**2 + s**2), torch.ones_like(s))
    # Var of the target (y - c_skip (y + n)) / c_out is 1 for y ~ (0, sd²), n ~ (0, σ²).
    var_target = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * s**2) / c_out**2
    torch.testing.assert_close(var_target, torch.ones_like(s))


def test_precond_combines_network_as_table1():
    b, sd = 3, 0.5
    f_out = torch.randn(1, 2, 4, 8)
    net = _Recorder(f_out)
    pre = EDMPrecond(net, sigma_data=sd)
    x = torch.randn(b, 2, 4, 8)
    sigma = torch.tensor([0.01, 1.0, 30.0])
    d = pre(x, sigma)
    assert d.shape == x.shape and d.dtype == torch.float32
    x_in, c_noise = net.calls[-1]
    for i, s in enumerate(sigma.tolist()):
        c_skip, c_out, c_in, cn = _table1(s, sd)
        torch.testing.assert_close(x_in[i], c_in * x[i])
        assert c_noise[i].item() == pytest.approx(cn, rel=1e-6)
        torch.testing.assert_close(d[i], c_skip * x[i] + c_out * f_out[0], rtol=1e-5, atol=1e-6)


def test_sigma_forms_agree():
    net = _Recorder(torch.zeros(1))
    pre = EDMPrecond(net)
    x = torch.randn(2, 1, 4, 8)
    ref = pre(x, torch.tensor([0.7, 0.7]))
    for s in (0.7, torch.tensor(0.7), torch.tensor([0.7]), torch.full((2, 1, 1, 1), 0.7)):
        torch.testing.assert_close(pre(x, s), ref)
        assert net.calls[-1][1].shape == (2,)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_scalar_sigma_raises(bad):
    with pytest.raises(ArgumentError, match="sigma"):
        EDMPrecond(_Recorder(torch.zeros(1)))(torch.zeros(1, 1, 2, 2), bad)


def test_bad_sigma_shape_and_x_raise():
    pre = EDMPrecond(_Recorder(torch.zeros(1)))
    with pytest.raises(ArgumentError, match="B=2"):
        pre(torch.zeros(2, 1, 2, 2), torch.ones(3))
    with pytest.raises(ArgumentError, match=r"\(B, C, H, W\)"):
        pre(torch.zeros(1, 2, 2), 1.0)


@pytest.mark.parametrize(
    "kw", [{"sigma_data": 0.0}, {"sigma_min": -1.0}, {"sigma_min": 5.0, "sigma_max": 1.0},
           {"sigma_max": float("inf")}],
)
def test_bad_precond_arguments(kw):
    with pytest.raises(ArgumentError):
        EDMPrecond(_Recorder(torch.zeros(1)), **kw)


def test_bad_loss_arguments():
    with pytest.raises(ArgumentError, match="P_std"):
        EDMLoss(P_std=0.0)
    with pytest.raises(ArgumentError, match="P_mean"):
        EDMLoss(P_mean=float("nan"))


def _tiny_precond(seed: int = 0) -> EDMPrecond:
    torch.manual_seed(seed)
    net = SongUNet.from_config(UNetConfig.tiny(2, (8, 16)))
    with torch.no_grad():  # non-trivial F (the default init makes the output ~1e-5)
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return EDMPrecond(net.eval())


def test_denoiser_tends_to_identity_at_small_sigma():
    pre = _tiny_precond()
    x = torch.randn(2, 2, 8, 16)
    with torch.no_grad():
        errs = [(pre(x, s) - x).abs().max().item() for s in (1e-1, 1e-3, 1e-5)]
        exact = pre(x, torch.zeros(2))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-3
    torch.testing.assert_close(exact, x, rtol=0, atol=0)  # c_out(0) = 0, c_skip(0) = 1


def test_round_sigma_identity():
    pre = EDMPrecond(_Recorder(torch.zeros(1)))
    torch.testing.assert_close(pre.round_sigma(0.3), torch.tensor(0.3))


def test_input_gradient_through_precond():
    """Gradient w.r.t. x (used by guided samplers) matches a central finite difference."""
    pre = _tiny_precond()
    x = torch.randn(1, 2, 8, 16, requires_grad=True)
    w = torch.randn(1, 2, 8, 16)
    loss = (pre(x, 0.8) * w).sum()
    (g,) = torch.autograd.grad(loss, x)
    v = torch.randn_like(x)
    eps = 1e-2
    with torch.no_grad():
        fd = ((pre(x + eps * v, 0.8) * w).sum() - (pre(x - eps * v, 0.8) * w).sum()) / (2 * eps)
    assert (g * v).sum().item() == pytest.approx(fd.item(), rel=2e-2, abs=1e-3)


def test_bf16_autocast_output_is_fp32_and_close():
    pre = _tiny_precond()
    x = torch.randn(2, 2, 8, 16)
    with torch.no_grad():
        ref = pre(x, 0.5)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = pre(x, 0.5)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_loss_weight_and_noise_statistics():
    """With a stub denoiser returning its input, (D - y) = n = σ ε, so the loss is
    λ(σ) σ² ε² = (σ² + sd²)/sd² · ε²; σ is log-normal(P_mean, P_std)."""
    seen = {}

    def identity_denoiser(x_noisy, sigma):
        seen["sigma"] = sigma
        return x_noisy

    loss_fn = EDMLoss(P_mean=-0.4, P_std=0.8, sigma_data=0.5)
    y = torch.zeros(20000, 1, 1, 2)
    loss = loss_fn(identity_denoiser, y, generator=torch.Generator().manual_seed(3))
    sigma = seen["sigma"]
    assert loss.shape == y.shape and sigma.shape == (20000, 1, 1, 1)
    log_s = sigma.log().flatten()
    assert log_s.mean().item() == pytest.approx(-0.4, abs=0.03)
    assert log_s.std().item() == pytest.approx(0.8, rel=0.03)
    eps2 = loss / ((sigma**2 + 0.25) / 0.25)  # should be ε², ε ~ N(0, 1)
    assert eps2.mean().item() == pytest.approx(1.0, abs=0.03)
    torch.testing.assert_close(loss_fn.weight(torch.tensor(0.5)), torch.tensor(8.0))


def test_loss_with_zero_denoiser_equals_weighted_signal():
    seen = {}

    def zero_denoiser(x_noisy, sigma):
        seen["sigma"] = sigma
        return torch.zeros_like(x_noisy)

    y = torch.randn(4, 2, 3, 5)
    loss = EDMLoss()(zero_denoiser, y)
    s = seen["sigma"]
    torch.testing.assert_close(loss, (s**2 + 0.25) / (0.25 * s**2) * y**2)


def test_loss_reproducible_with_generator():
    pre = _tiny_precond()
    y = torch.randn(2, 2, 8, 16)
    a = EDMLoss()(pre, y, generator=torch.Generator().manual_seed(5))
    b = EDMLoss()(pre, y, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loss_decreases_when_training_tiny_model():
    torch.manual_seed(0)
    net = SongUNet.from_config(UNetConfig.tiny(2, (8, 16)))
    pre = EDMPrecond(net).train()
    loss_fn = EDMLoss()
    # A fixed, structured batch: smooth fields scaled to std ~ sigma_data.
    lat = torch.linspace(-1, 1, 8)[:, None]
    lon = torch.linspace(0, 2 * math.pi, 17)[:-1][None, :]
    y = 0.5 * torch.stack([torch.stack([torch.cos(lon + k) * (1 - lat**2),
                                        torch.sin(2 * lon) * lat + 0.1 * k]) for k in range(4)])

    def objective():
        return loss_fn(pre, y, generator=torch.Generator().manual_seed(11)).mean()

    opt = torch.optim.Adam(pre.parameters(), lr=3e-3)
    with torch.no_grad():
        start = objective().item()
    for _ in range(15):
        opt.zero_grad()
        loss = objective()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = objective().item()
    assert math.isfinite(start) and end < 0.7 * start
