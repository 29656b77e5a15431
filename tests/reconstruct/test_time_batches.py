"""Batches filled across times as well as members (issue 15): several times of a run share one
network batch, each row guided by its own time's observations.

References are the separate, time-by-time paths on the same noise: the grouped operator
against each group's operator, the grouped guidance against each time's guidance at one
evaluation, and the members of a run with filled batches against the run time by time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from tests.conftest import tiny_model, tiny_observations
from tests.models.test_latent import latent_model
from xdiffsr.core import SparseOperator
from xdiffsr.core.autoencoder import DecodedOperator
from xdiffsr.core.covariance import SpectralCovariance
from xdiffsr.core.gaussian import GaussianDenoiser
from xdiffsr.core.likelihood import (
    GaussianLikelihood,
    JFGuidance,
    MMPSGuidance,
    NoiseBandGuidance,
    ScoreGuidance,
    batch_guidances,
)
from xdiffsr.core.operators import RowGroupedOperator, group_operators
from xdiffsr.errors import ArgumentError
from xdiffsr.reconstruct.plan import make_plan
from xdiffsr.reconstruct.sample import run_times
from xdiffsr.reconstruct.settings import SamplerSettings

SHAPE = (2, 4, 8)
N_STATE = 2 * 4 * 8


def _sparse(n: int, seed: int) -> SparseOperator:
    g = np.random.default_rng(seed)
    a = g.normal(size=(n, N_STATE)) * (g.random((n, N_STATE)) < 0.2)
    return SparseOperator(a, SHAPE, offset=g.normal(size=n))


# ---------------------------------------------------------------------------------------------
# The grouped operator


def test_row_grouped_operator_is_each_groups_operator_padded():
    ops = [_sparse(5, 0), None, _sparse(3, 1)]
    rows, sizes = [2, 1, 3], [5, 0, 3]
    grouped = RowGroupedOperator(ops, rows, sizes)
    x = torch.randn(6, *SHAPE)
    y = grouped(x)
    assert y.shape == (6, 5)
    torch.testing.assert_close(y[:2], ops[0](x[:2]))
    assert (y[2] == 0).all()
    torch.testing.assert_close(y[3:, :3], ops[2](x[3:]))
    assert (y[3:, 3:] == 0).all()
    torch.testing.assert_close(grouped.linear(x)[:2], ops[0].linear(x[:2]))
    # the adjoint is the transpose of the linear part, padding included
    v = torch.randn(6, 5)
    lhs = (grouped.linear(x) * v).sum()
    rhs = (x * grouped.adjoint(v)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-4)
    assert (grouped.adjoint(v)[2] == 0).all()  # a group without observations
    norms = grouped.row_norms_sq()
    torch.testing.assert_close(norms[0, :5], ops[0].row_norms_sq())
    assert (norms[2] == 0).all() and (norms[3:, 3:] == 0).all()
    with pytest.raises(ArgumentError, match="exactly the groups' rows"):
        grouped(torch.randn(5, *SHAPE))
    with pytest.raises(ArgumentError, match="one entry per group"):
        RowGroupedOperator(ops, [2, 1], sizes)


# ---------------------------------------------------------------------------------------------
# The grouped guidance at one evaluation, on an analytic prior


def _gaussian_den() -> GaussianDenoiser:
    g = torch.Generator().manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(N_STATE, 12, generator=g))
    lam = torch.rand(12, generator=g) * 3 + 0.5
    return GaussianDenoiser(torch.randn(SHAPE, generator=g), u, lam, floor=0.2)


def _liks(seed: int, n: int) -> list[GaussianLikelihood]:
    g = np.random.default_rng(seed)
    return [
        GaussianLikelihood(g.normal(size=n), _sparse(n, seed), sigma_y=0.3, gamma=0.1),
        GaussianLikelihood(g.normal(size=2), _sparse(2, seed + 10), sigma_y=0.5, weight=0.5),
    ]


def _guidances(kind: str, den, liks):
    cov = SpectralCovariance(torch.rand(SHAPE[0], 2 * SHAPE[1], SHAPE[2] // 2 + 1) + 0.1)
    make = {
        "sda": lambda ls: ScoreGuidance(den, ls, clip=2.0),
        "mmps": lambda ls: MMPSGuidance(den, ls, cg_iters=5),
        "jf": lambda ls: JFGuidance(den, ls, cov, cg_iters=20),
        "band": lambda ls: NoiseBandGuidance(JFGuidance(den, ls, cov, cg_iters=20),
                                             MMPSGuidance(den, ls, cg_iters=5), (0.5, 2.0)),
    }[kind]
    return [make(ls) for ls in liks]


@pytest.mark.parametrize("kind", ["sda", "mmps", "jf", "band"])
@pytest.mark.parametrize("sigma", [0.2, 1.0, 5.0])
def test_batched_guidance_gives_each_row_its_own_times_correction(kind, sigma):
    den = _gaussian_den()
    liks = [_liks(0, 7), _liks(1, 4), _liks(2, 9)]  # three times, different observation counts
    dens = _guidances(kind, den, liks)
    rows = [2, 1, 3]
    batched = batch_guidances(dens, rows)
    x = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(5)) * sigma
    s = torch.full((6,), sigma)
    out = batched(x, s)
    ref = torch.cat([d(part, s[: len(part)]) for d, part in zip(dens, torch.split(x, rows))])
    assert not torch.equal(ref[:2], den(x[:2], s[:2]))  # the guidance moves the rows
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_batch_guidances_rejects_mixed_kinds_and_settings():
    den = _gaussian_den()
    liks = [_liks(0, 3), _liks(1, 3)]
    with pytest.raises(ArgumentError, match="one kind"):
        batch_guidances([MMPSGuidance(den, liks[0]), ScoreGuidance(den, liks[1])], [1, 1])
    with pytest.raises(ArgumentError, match="settings"):
        batch_guidances([MMPSGuidance(den, liks[0], cg_iters=2),
                         MMPSGuidance(den, liks[1], cg_iters=3)], [1, 1])
    assert batch_guidances([den, den], [2, 2]) is den  # unguided times share the network


# ---------------------------------------------------------------------------------------------
# Runs of times: the same members, fewer and fuller batches


TIMES = pd.date_range("2021-01-01", periods=3, freq="6h")


@pytest.fixture(scope="module")
def model():
    m = tiny_model("tiny-time-batches")
    w = m.precond.net.out_conv.weight
    with torch.no_grad():  # the network moves the state by O(0.1-1) (stock init: 1e-5)
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    return m


def _run(model, obs, batch_size, batch_times=True, **options) -> tuple[np.ndarray, list[float]]:
    settings = SamplerSettings.from_options(
        batch_size=batch_size, batch_times=batch_times, **options
    )
    plan = make_plan(xr.Dataset(coords={"time": TIMES}), obs, None, model, settings)
    calls: list[float] = []
    x = run_times(model, plan.sources, plan.weights, plan.times, device=torch.device("cpu"),
                  settings=plan.settings, ilat=plan.ilat, ilon=plan.ilon,
                  n_sources=len(plan.sources), progress=calls.append)
    return x, calls


OPTIONS = {
    "sda": dict(guidance="sda"),
    "mmps": dict(guidance="mmps", cg_iters=1),
    "jf": dict(guidance="jf", mmps_sigmas=None),
    "jf+mmps band": dict(guidance="jf", mmps_sigmas=(0.5, 5.0), cg_iters=1),
    "none": dict(guidance="none"),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_run_fills_batches_across_times_with_the_same_members(model, name):
    obs = tiny_observations(TIMES)
    # fp32: the bound below is fp32 rounding (bf16 kernels of other batch shapes round at 1e-4)
    kw = dict(members=2, steps=4, seed=3, S_churn=5.0, precision="fp32", **OPTIONS[name])
    ref, ref_calls = _run(model, obs, batch_size=2, **kw)  # one time per batch
    x, calls = _run(model, obs, batch_size=None, **kw)  # automatic: HOST_BATCH rows
    assert set(ref_calls) == {1}
    if name == "none":  # 8 unguided rows: the three times in one batch
        assert set(calls) == {3}
    else:  # 4 guided rows: a batch of two times, then the third alone
        assert sorted(set(calls)) == [1, 2]
    assert sum(calls) == sum(ref_calls) == 3 * 4  # times x steps
    assert np.isfinite(x).all() and np.abs(x - x[:, :1]).max() > 0  # distinct members
    # measured 2026-11-30: at most 3e-6 of max |ref| (float rounding of other batch shapes)
    scale = np.abs(ref).max(axis=(0, 1, 3, 4), keepdims=True)  # per variable (K, m2 s-2)
    diff = float((np.abs(x - ref) / scale).max())
    assert diff < 2e-5, f"{name}: max |diff| {diff:.3g} of the variable's max |ref|"
    x3, calls3 = _run(model, obs, batch_size=6, **kw)  # all three times in one batch
    assert set(calls3) == {3}
    assert float((np.abs(x3 - ref) / scale).max()) < 2e-5


@pytest.mark.parametrize("batch_size", [None, 6])
def test_times_share_no_batch_by_default(model, batch_size):
    """Without ``batch_times`` (the default) every batch holds one time's members, whatever
    ``batch_size`` allows: the members equal the time-by-time run bit for bit (issue 26)."""
    obs = tiny_observations(TIMES)
    kw = dict(members=2, steps=3, seed=3, guidance="jf", mmps_sigmas=(0.5, 5.0), cg_iters=1)
    ref, _ = _run(model, obs, batch_size=2, **kw)
    x, calls = _run(model, obs, batch_size=batch_size, batch_times=False, **kw)
    assert set(calls) == {1}  # one time per batch
    np.testing.assert_array_equal(x, ref)
    _, calls = _run(model, obs, batch_size=batch_size, **kw)
    assert max(calls) > 1  # the opt-in does fill batches across times


@pytest.mark.filterwarnings("ignore:source .* ends far")
def test_latent_run_fills_batches_through_one_decoder():
    model = latent_model()
    pts = pd.DataFrame({"time": np.repeat(TIMES.values, 3), "lat": [10.0, -30.0, 50.0] * 3,
                        "lon": [20.0, 200.0, 300.0] * 3, "variable": "t850",
                        "value": np.linspace(275, 285, 9), "units": "K"})
    kw = dict(members=1, steps=3, seed=1, guidance="jf", mmps_sigmas=(0.5, 5.0), cg_iters=1)
    ref, _ = _run(model, [pts], batch_size=1, **kw)
    x, calls = _run(model, [pts], batch_size=3, **kw)
    assert set(calls) == {3}
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
    assert np.abs(x[1] - x[0]).max() > 0


def test_group_operators_groups_inside_a_shared_decoder():
    model = latent_model()
    decoder = model.autoencoder.decode
    ops = [DecodedOperator(_pixel_op(n, s), decoder, model.sample_shape)
           for n, s in ((4, 0), (6, 1))]
    grouped = group_operators(ops, [2, 1], [4, 6])
    assert isinstance(grouped, DecodedOperator) and isinstance(grouped.op, RowGroupedOperator)
    z = torch.randn(3, *model.sample_shape)
    y = grouped(z)
    torch.testing.assert_close(y[:2, :4], ops[0](z[:2]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[2:], ops[1](z[2:]), rtol=1e-5, atol=1e-5)
    v = torch.randn(3, 6)
    g = grouped.adjoint(v)
    torch.testing.assert_close(g[2:], ops[1].adjoint(v[2:]), rtol=1e-4, atol=1e-5)
    assert grouped.linearisations == 1  # one decoder linearisation for both groups


def _pixel_op(n: int, seed: int) -> SparseOperator:
    g = np.random.default_rng(seed)
    return SparseOperator(g.normal(size=(n, 3 * 8 * 16)) * 0.1, (3, 8, 16))


def test_run_needs_one_batch_for_several_times(model):
    from xdiffsr.reconstruct.sample import draw_members

    settings = SamplerSettings.from_options(members=2, steps=2)
    with pytest.raises(ArgumentError, match="one batch"):
        draw_members(model.denoiser(), model, TIMES[:2].values, "cpu", settings, batch=2)


def test_cuda_rows_are_fitted_to_memory_when_times_can_fill_a_batch(model, monkeypatch):
    """The batch-size rules on a CUDA device (probe and budget stubbed: no GPU needed): one time
    keeps all its members in one batch without probing; several times are fitted to the
    memory budget ("auto" when unset); batch_size caps the rows."""
    from xdiffsr.reconstruct import sample

    probes = []

    def probe(den, shape, device, sigma):
        probes.append(sigma)
        return lambda b: 100 + 10 * b  # bytes at b rows

    monkeypatch.setattr(sample, "cuda_peak_probe", probe)
    monkeypatch.setattr(sample, "auto_budget", lambda device: 200)  # 10 rows fit
    cuda = torch.device("cuda")
    den = model.denoiser()

    def rows(members, total, **kw):
        settings = SamplerSettings.from_options(members=members, **kw)
        return sample.batch_size_for(den, model, cuda, settings, total)

    assert rows(2, 2) == 2 and not probes  # one time: its members, no probe
    assert rows(2, 16) == 10 and len(probes) == 1  # several times: what fits "auto"
    assert rows(2, 6) == 6 and len(probes) == 2  # never more rows than the run has
    assert rows(2, 16, batch_size=8) == 8 and len(probes) == 2  # a cap, no budget: no probe
    assert rows(2, 16, batch_size=12, max_memory=150) == 5  # a cap and a byte budget
