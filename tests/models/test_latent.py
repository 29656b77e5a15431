"""Latent diffusion models (SLAMS): the autoencoder, guidance through the decoder, the exact
Gaussian posterior of a linear decoder, the two-part file and super_resolve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

import xdiffsr
from xdiffsr.core import (
    EDMPrecond,
    SongUNet,
    SparseOperator,
    StackedOperator,
    UNetConfig,
    stack_operators,
)
from xdiffsr.core.autoencoder import (
    AutoencoderConfig,
    DecodedOperator,
    LatLonAutoencoder,
    NormalisedDecoder,
)
from xdiffsr.core.gaussian import GaussianDenoiser
from xdiffsr.core.likelihood import GaussianLikelihood, MMPSGuidance, ScoreGuidance
from xdiffsr.core.sampler import heun_sampler
from xdiffsr.core.schedule import karras_sigmas
from xdiffsr.errors import ArgumentError, ModelError
from xdiffsr.grid import Grid
from xdiffsr.models.latent import LatentDiffusionModel, model_kind
from xdiffsr.observations.column import ColumnObservations

LAT = -78.75 + 22.5 * np.arange(8)
LON = 22.5 * np.arange(16)
VARS = ["t850", "t500", "t250"]


def latent_model(factor: int = 2, variational: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    ae = LatLonAutoencoder(AutoencoderConfig(3, 2, (8, 16), factor=factor, channels=8,
                                             variational=variational))
    h, w = 8 // factor, 16 // factor
    net = SongUNet.from_config(UNetConfig.tiny(2, (h, w)).__class__(
        **{**UNetConfig.tiny(2, (h, w)).to_dict(), "channel_mult": [1, 2], "attn_levels": []}))
    return LatentDiffusionModel(
        ae, EDMPrecond(net), VARS, {v: "K" for v in VARS}, Grid(LAT, LON),
        [280.0, 255.0, 225.0], [5.0, 4.0, 3.0], [0.1, -0.2], [1.5, 0.5], name="tiny-latent",
    )


def test_autoencoder_shapes_circular_and_bad_config():
    ae = LatLonAutoencoder(AutoencoderConfig(3, 4, (8, 16), factor=4, channels=8))
    x = torch.randn(2, 3, 8, 16)
    z, logvar = ae.encode(x)
    assert z.shape == (2, 4, 2, 4) and logvar is None and ae.decode(z).shape == x.shape
    # circular in longitude: rolling the input by one latent cell rolls the output alike
    shift = 4
    out = ae.decode(ae.encode(x)[0])
    out_r = ae.decode(ae.encode(torch.roll(x, shift, dims=-1))[0])
    torch.testing.assert_close(out_r, torch.roll(out, shift, dims=-1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ArgumentError, match="factor"):
        AutoencoderConfig(3, 4, (8, 16), factor=3)
    with pytest.raises(ArgumentError, match="divisible"):
        AutoencoderConfig(3, 4, (6, 16), factor=4)
    with pytest.raises(ArgumentError, match="expected"):
        ae.decode(torch.zeros(1, 4, 3, 4))


def test_guidance_through_the_decoder_matches_finite_differences():
    """The gradient of log p(y | z) through M(Dec(z)) equals central differences (float64)."""
    torch.manual_seed(1)
    ae = LatLonAutoencoder(AutoencoderConfig(3, 2, (8, 16), channels=8)).double()
    dec = NormalisedDecoder(ae.decode, [0.3, -0.1], [1.2, 0.7]).double()
    A = torch.randn(5, 3 * 8 * 16, dtype=torch.float64) / 10
    op = DecodedOperator(SparseOperator(A, (3, 8, 16), dtype=torch.float64), dec, (2, 4, 8))
    y = torch.randn(5, dtype=torch.float64)
    z = torch.randn(1, 2, 4, 8, dtype=torch.float64, requires_grad=True)

    def logp(zz):
        return -0.5 * (y - op(zz)).square().sum() / 0.3

    (g,) = torch.autograd.grad(logp(z), z)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (0, 1, 2, 7), (0, 0, 3, 5)]:
        zp, zm = z.detach().clone(), z.detach().clone()
        zp[idx] += eps
        zm[idx] -= eps
        with torch.no_grad():
            fd = (logp(zp) - logp(zm)) / (2 * eps)
        assert abs(float(fd) - float(g[idx])) < 1e-6 * max(1.0, abs(float(fd)))
    # linear/adjoint are the Jacobian at the last forward point: <J dz, v> = <dz, J^T v>
    op(z.detach())
    dz, v = torch.randn_like(z.detach()), torch.randn(1, 5, dtype=torch.float64)
    lhs = (op.linear(dz) * v).sum()
    rhs = (dz * op.adjoint(v)).sum()
    assert abs(float(lhs - rhs)) < 1e-9 * max(1.0, abs(float(lhs)))
    with torch.no_grad():
        fd = (op(z.detach() + 1e-6 * dz) - op(z.detach() - 1e-6 * dz)) / 2e-6
    op(z.detach())
    torch.testing.assert_close(op.linear(dz), fd, atol=1e-6, rtol=1e-6)


def test_sources_of_a_latent_prior_share_one_decoder_linearisation():
    """Stacked decoded sources become ``[M_1; M_2] o Dec``: the same forward, linear and
    adjoint as decoding per source, with one linearisation of the decoder per point however
    many products CG takes, rebuilt when the point moves."""
    torch.manual_seed(2)
    ae = LatLonAutoencoder(AutoencoderConfig(3, 2, (8, 16), channels=8)).double()
    dec = NormalisedDecoder(ae.decode, [0.3, -0.1], [1.2, 0.7]).double()
    pix = [SparseOperator(torch.randn(n, 3 * 8 * 16, dtype=torch.float64) / 10, (3, 8, 16),
                          dtype=torch.float64) for n in (5, 7)]
    ops = [DecodedOperator(p, dec, (2, 4, 8)) for p in pix]
    merged, plain = stack_operators(ops), StackedOperator(ops)
    assert isinstance(merged, DecodedOperator) and isinstance(plain, StackedOperator)
    for z in (torch.randn(3, 2, 4, 8, dtype=torch.float64),
              torch.randn(3, 2, 4, 8, dtype=torch.float64)):
        torch.testing.assert_close(merged(z), plain(z))
        v = torch.randn(3, 12, dtype=torch.float64)
        dz = torch.randn_like(z)
        n0 = merged.linearisations
        for _ in range(4):
            torch.testing.assert_close(merged.adjoint(v), plain.adjoint(v))
            torch.testing.assert_close(merged.linear(dz), plain.linear(dz))
        assert merged.linearisations == n0 + 1
        # against torch.func at the new point (a stale linearisation would differ)
        _, jdz = torch.func.jvp(dec, (z,), (dz,))
        torch.testing.assert_close(merged.linear(dz),
                                   torch.cat([p.linear(jdz) for p in pix], dim=1))


class _Linear(nn.Module):
    def __init__(self, W: torch.Tensor, shape):
        super().__init__()
        self.register_buffer("W", W)
        self.shape = shape

    def forward(self, z):
        return (z.reshape(z.shape[0], -1) @ self.W.T).reshape(z.shape[0], *self.shape)


@pytest.mark.parametrize("guidance", ["mmps", "sda"])
def test_linear_decoder_gaussian_latent_posterior_is_exact(guidance):
    """z ~ N(0, I), x = W z, y = A x + e: the sampled latent posterior matches the analytic
    one (mean within 5 standard errors, std within 20 %)."""
    g = torch.Generator().manual_seed(0)
    nz, shape = 8, (1, 2, 4)  # latent (2, 2, 2) -> pixel (1, 2, 4)
    W = torch.randn(8, nz, generator=g, dtype=torch.float64) / 2
    A = torch.randn(3, 8, generator=g, dtype=torch.float64)
    R = 0.2
    z_true = torch.randn(nz, generator=g, dtype=torch.float64)
    y = A @ W @ z_true + R**0.5 * torch.randn(3, generator=g, dtype=torch.float64)
    H = A @ W
    cov = torch.linalg.inv(torch.eye(nz, dtype=torch.float64) + H.T @ H / R)
    mean = cov @ H.T @ y / R
    prior = GaussianDenoiser(torch.zeros(2, 2, 2), torch.eye(nz), torch.ones(nz))
    op = DecodedOperator(SparseOperator(A.float(), shape), _Linear(W.float(), shape), (2, 2, 2))
    gamma = 0.0 if guidance == "mmps" else 1.0
    lik = GaussianLikelihood(y.float(), op, sigma_y=R, gamma=gamma)
    den = (MMPSGuidance(prior, [lik], cg_iters=20) if guidance == "mmps"
           else ScoreGuidance(prior, [lik]))
    n = 2000
    gens = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, 2, 2, generator=gens)
    out = heun_sampler(den, x, karras_sigmas(64 if guidance == "mmps" else 128),
                       generator=gens).reshape(n, -1).double()
    std = cov.diag().sqrt()
    err = (out.mean(0) - mean).abs() / (std / n**0.5)
    if guidance == "mmps":  # exact for linear-Gaussian: sampling error only
        assert float(err.max()) < 5.0
        assert float(((out.std(0) / std) - 1).abs().max()) < 0.2
    else:  # the paper's guidance is approximate: the mean within 0.5 posterior std
        assert float(((out.mean(0) - mean).abs() / std).max()) < 0.5


def test_save_load_round_trip_and_kind(tmp_path):
    model = latent_model(variational=True)
    path = model.save(tmp_path / "lat.safetensors")
    assert model_kind(path) == "latent"
    back = xdiffsr.load_model(path)
    assert isinstance(back, LatentDiffusionModel)
    assert back.fingerprint() == model.fingerprint()
    assert back.sample_shape == (2, 4, 8) and back.state_shape == (3, 8, 16)
    z = np.random.default_rng(0).normal(size=(2, 2, 4, 8))
    np.testing.assert_allclose(back.to_state(z), model.to_state(z), rtol=1e-6)
    np.testing.assert_allclose(back.latent_scale, [1.5, 0.5])
    # a pixel model file still opens as before
    from tests.conftest import tiny_model

    pix = tiny_model().save(tmp_path / "pix.safetensors")
    assert model_kind(pix) == "pixel"
    assert isinstance(xdiffsr.load_model(pix), xdiffsr.DiffusionModel)
    with pytest.raises(ModelError, match="not an xdiffsr latent model"):
        LatentDiffusionModel.load(pix)


def test_encode_decode_consistent_with_normalisation():
    model = latent_model()
    state = np.random.default_rng(1).normal(250, 5, size=(3, 3, 8, 16))
    z = model.encode(state)
    assert z.shape == (3, 2, 4, 8)
    x = model.autoencoder.decode(torch.as_tensor(z * model.latent_scale[:, None, None]
                                                 + model.latent_center[:, None, None],
                                                 dtype=torch.float32)).detach().double().numpy()
    np.testing.assert_allclose(model.to_state(z), model.denormalise(x), rtol=1e-5)


@pytest.mark.filterwarnings("ignore:source column")  # random weights: far from the obs
@pytest.mark.parametrize("guidance", ["mmps", "sda"])
def test_super_resolve_with_latent_model_and_column_obs(guidance):
    model = latent_model()
    times = pd.date_range("2001-01-01", periods=1, freq="6h")
    obs = pd.DataFrame({"time": np.repeat(times.values, 6), "lat": np.linspace(-60, 60, 6),
                        "lon": np.linspace(0, 300, 6), "channel": ["ch1", "ch2", "ch3"] * 2,
                        "value": [265.0, 255.0, 235.0] * 2, "error": 0.5})
    pts = pd.DataFrame({"time": times.values[0], "lat": [10.0], "lon": [20.0],
                        "variable": ["t850"], "value": [281.0], "units": "K"})
    out = xdiffsr.super_resolve(xr.Dataset(coords={"time": times}),
                                [ColumnObservations(obs), pts], model=model, members=2,
                                steps=4, guidance=guidance, seed=0, device="cpu")
    assert set(out.data_vars) >= set(VARS)
    assert out["t850"].shape[-2:] == (8, 16)
    assert np.isfinite(out["t500"].values).all()


def test_packaged_latent_model_opens_reconstructs_and_assimilates():
    """The shipped latent model (``load_model("latent")``, docs/model-card-latent.md): the pixel
    default model's variables and grid; its autoencoder reconstructs held-out states well inside
    each variable's climatological spread (the floor of every member); guided sampling through
    the decoder returns finite members closer to the radiosondes than the prior mean."""
    from xdiffsr.evaluation.datasets import load_heldout, load_stations
    from xdiffsr.observations.vertical import soundings_to_observations
    from xdiffsr.osse.stations import simulate_soundings

    model = xdiffsr.load_model("latent")
    pixel = xdiffsr.load_model("default")
    assert isinstance(model, LatentDiffusionModel)
    assert model.variables == pixel.variables
    np.testing.assert_allclose(model.grid.lat, pixel.grid.lat)
    truth = load_heldout().isel(time=slice(0, 1))[list(model.variables)]
    x = np.stack([truth[v].values for v in model.variables], axis=1)
    rec = model.to_state(model.encode(x))
    rmse = np.sqrt(((rec - x) ** 2).mean(axis=(0, 2, 3)))
    assert (rmse < 0.35 * model.scale).all(), dict(zip(model.variables, rmse / model.scale))
    sondes = simulate_soundings(truth, load_stations(), seed=0)
    out = truth.drop_vars(list(truth.data_vars)).diffsr.super_resolve(
        [sondes], model=model, members=2, steps=6)
    assert np.isfinite(out["t850"].values).all()
    obs = soundings_to_observations(sondes, ["t850"])
    pts = dict(lat=xr.DataArray(obs["lat"].values, dims="p"),
               lon=xr.DataArray(obs["lon"].values % 360, dims="p"))
    mean_at = out["t850"].isel(time=0).mean("member").interp(**pts).values
    prior_at = np.full_like(mean_at, model.center[0])
    ok = np.isfinite(mean_at)
    misfit = np.sqrt(np.mean((mean_at[ok] - obs["value"].values[ok]) ** 2))
    assert misfit < np.sqrt(np.mean((prior_at[ok] - obs["value"].values[ok]) ** 2))
