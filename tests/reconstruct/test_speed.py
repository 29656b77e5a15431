"""Speed and memory options of ``super_resolve`` (issue 6): member batches fitted to a memory
budget, bf16 autocast of the network, activation checkpointing, channels-last and torch.compile.

A tiny random-weight SongUNet prior on the 8 x 16 grid (t850, z500) whose output layer is
re-initialised so that the network moves the denoised state by O(0.1-1) in normalised units (the
stock init scales it by 1e-5, which would make every comparison trivially pass). Members are
compared in normalised units with the same noise; the references are the fp32, one-batch paths.
"""

from __future__ import annotations

import os
import shutil
import warnings

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xdiffsr
from tests.conftest import tiny_model, tiny_observations
from xdiffsr.core import EDMPrecond, GaussianDenoiser, fit_batch_size, layers, parse_memory, unet
from xdiffsr.core.memory import cuda_peak_probe
from xdiffsr.core.runtime import NetworkRunner, bf16_supported, with_network_options
from xdiffsr.core.sampler import randn
from xdiffsr.reconstruct.plan import make_plan
from xdiffsr.reconstruct.sample import denoiser_at, member_seed, member_seeds, sample_time
from xdiffsr.reconstruct.settings import SamplerSettings

TIMES = pd.date_range("2021-01-01", periods=2, freq="6h")
BASE = dict(members=3, steps=4, seed=7, S_churn=5.0)  # churn: per-member noise at every step


@pytest.fixture(scope="module")
def model():
    m = tiny_model("tiny-speed")
    w = m.precond.net.out_conv.weight
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    return m


def _obs(times=TIMES):
    return tiny_observations(times)


def _target(times=TIMES):
    return xr.Dataset(coords={"time": times})


def _members(model, guidance="sda", callback=None, **kw) -> np.ndarray:
    """Normalised members (member, C, H, W) at the first time, through the validation of
    ``super_resolve`` (``make_plan``) and :func:`sample_time` (no float32 storage rounding)."""
    settings = SamplerSettings.from_options(guidance=guidance, **{**BASE, **kw})
    plan = make_plan(_target(TIMES[:1]), _obs(), None, model, settings)
    x, _ = sample_time(model, plan.sources, plan.weights, plan.times[0],
                       device=torch.device("cpu"), callback=callback, settings=plan.settings)
    return model.normalise(x)


def _physical(out: xr.Dataset) -> np.ndarray:
    return np.stack([out[v].values for v in ("t850", "z500")], axis=2)


def _assert_close(x: np.ndarray, ref: np.ndarray, rel: float, what: str = "") -> float:
    """max |x - ref| <= rel * max |ref| (normalised members reach |x| ~ 10: float32 rounding
    scales with the values); returns the relative difference."""
    diff = float(np.abs(x - ref).max() / np.abs(ref).max())
    assert diff <= rel, f"{what}: max |diff| = {diff:.3g} of max |ref|, tolerance {rel:g}"
    return diff


# cg_iters per guidance: the random-weight network's Jacobian is far from symmetric positive, so
# MMPS's CG meets negative curvature after a few iterations (truncated CG then stops; members stay
# finite but reach |x| ~ 1e3 with 5 iterations): one iteration keeps them in a sane range
CG = {"sda": 10, "mmps": 1}


# ---------------------------------------------------------------------------------------------
# Members independent of the batching


def test_member_seeds_depend_on_time_and_index_only():
    t = np.datetime64("2021-01-01T06")
    seeds = member_seeds(3, t, 5)
    assert len(set(seeds)) == 5
    assert member_seeds(3, t, 2) == seeds[:2]  # a smaller ensemble is a prefix
    assert member_seeds(3, t + np.timedelta64(6, "h"), 5)[0] != seeds[0]
    assert member_seeds(4, t, 5)[0] != seeds[0]
    # derived from member_seed, whose per-time semantics are unchanged
    child = np.random.SeedSequence(member_seed(3, t)).spawn(5)[4]
    assert seeds[4] == int(child.generate_state(1, dtype=np.uint64)[0] >> 1)


def test_randn_draws_each_row_from_its_own_generator():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    x = randn((3, 2, 4), gens)
    for s, row in zip((1, 2, 3), x):
        alone = torch.randn((2, 4), generator=torch.Generator().manual_seed(s))
        torch.testing.assert_close(row, alone)
    with pytest.raises(xdiffsr.ArgumentError, match="generator"):
        randn((2, 4), gens)


@pytest.mark.parametrize("guidance", ["sda", "mmps"])
def test_members_do_not_depend_on_batch_size(model, guidance):
    """To fp32 rounding (bf16, the default on bf16 hardware, agrees to bf16 rounding: the
    tolerance here is fp32's, so the claim is tested in fp32)."""
    ref = _members(model, guidance, cg_iters=CG[guidance], precision="fp32")
    assert np.isfinite(ref).all() and ref.std(axis=0).mean() > 0.5  # distinct members
    for batch_size in (1, 2, 3):
        x = _members(model, guidance, cg_iters=CG[guidance], batch_size=batch_size,
                     precision="fp32")
        # measured 2026-11-23: max |diff| 2.9e-5 (sda) and 7.2e-5 (mmps) normalised, i.e. 2.8e-6
        # and 2.4e-6 of max |ref| (float rounding of other batch shapes); 0 for batch_size=3
        _assert_close(x, ref, 1e-5, f"batch_size={batch_size}")
    # an ensemble of 2 is the first 2 members of the ensemble of 3 (measured: identical)
    x = _members(model, guidance, cg_iters=CG[guidance], members=2, precision="fp32")
    _assert_close(x, ref[:2], 1e-5, "members=2")


def test_batched_super_resolve_equals_one_batch(model):
    obs, kw = _obs(), dict(model=model, precision="fp32", **BASE)  # fp32 rounding, as above
    ref = model.normalise(_physical(_target().diffsr.super_resolve(obs, **kw)))
    out = _target().diffsr.super_resolve(obs, batch_size=2, **kw)
    # as above, plus float32 storage in physical units (z500 ~ 5.4e4: spacing 1e-5 normalised)
    _assert_close(model.normalise(_physical(out)), ref, 1e-5, "batch_size=2")
    assert "batch_size" not in out.attrs["sampler"]  # speed settings are not provenance


def test_callback_sees_fp32_state_and_member_batches(model):
    seen = []
    _members(model, precision="bf16", batch_size=2, callback=seen.append)
    assert {(d["members"].start, d["members"].stop) for d in seen} == {(0, 2), (2, 3)}
    assert all(d["x"].dtype == torch.float32 and d["denoised"].dtype == torch.float32
               for d in seen)


@pytest.mark.parametrize("guidance, members, batches", [
    ("sda", 6, {(0, 4), (4, 6)}),  # guided: HOST_BATCH["guided"] = 4 members per batch
    ("none", 10, {(0, 8), (8, 10)}),  # unguided: 8
    ("mmps", 3, {(0, 3)}),  # never more than the members
])
def test_automatic_cpu_batch_is_fitted_and_keeps_the_members(model, guidance, members, batches):
    """batch_size=None on the CPU: host_batch_size members per batch, the same members as one
    batch of all of them (issue 15)."""
    seen = []
    x = _members(model, guidance, members=members, cg_iters=CG.get(guidance, 1),
                 callback=seen.append, precision="fp32")  # fp32 rounding, as above
    assert {(d["members"].start, d["members"].stop) for d in seen} == batches
    ref = _members(model, guidance, members=members, cg_iters=CG.get(guidance, 1),
                   batch_size=members, precision="fp32")
    _assert_close(x, ref, 1e-5, "automatic batch")


# ---------------------------------------------------------------------------------------------
# Fitting the batch to a memory budget


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("auto", "auto"),
        (" AUTO ", "auto"),
        (4e10, 40_000_000_000),
        (1024, 1024),
        ("40GB", 40 * 10**9),
        ("40 GiB", 40 * 2**30),
        ("512mib", 512 * 2**20),
        ("1.5e9", 1_500_000_000),
        ("2.5 kB", 2500),
    ],
)
def test_parse_memory(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["lots", "40 GX", "-3GB", 0, -1.0, float("nan"), True, [1]])
def test_parse_memory_rejects(value):
    with pytest.raises(xdiffsr.ArgumentError, match="max_memory"):
        parse_memory(value)


def _linear_probe(base: int, per: int, calls: list):
    def peak_at(b):
        calls.append(b)
        return base + per * b

    return peak_at


def test_fit_batch_size_extrapolates_two_probes():
    calls = []
    # 2 GiB of weights, 1.5 GiB per member, 20 GiB budget: (20 - 2) / 1.5 = 12 members
    b = fit_batch_size(_linear_probe(2 * 2**30, 3 * 2**29, calls), 20 * 2**30, 32)
    assert b == 12 and calls == [1, 2]
    assert fit_batch_size(_linear_probe(2 * 2**30, 3 * 2**29, []), 20 * 2**30, 8) == 8
    calls.clear()
    assert fit_batch_size(_linear_probe(10, 5, calls), 100, 1) == 1 and calls == [1]
    assert fit_batch_size(_linear_probe(10, 5, []), 19, 4) == 1  # batch 2 does not fit
    assert fit_batch_size(lambda b: 10, 11, 6) == 6  # no per-member cost


def test_fit_batch_size_error_when_one_member_does_not_fit():
    with pytest.raises(xdiffsr.ArgumentError, match="max_memory") as err:
        fit_batch_size(_linear_probe(2**30, 2**30, []), 2**30, 8)
    assert "checkpoint=True" in str(err.value) and "precision='bf16'" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    base=st.integers(0, 10**11),
    per=st.integers(1, 10**10),
    budget=st.integers(0, 10**12),
    members=st.integers(1, 256),
)
def test_fit_batch_size_is_the_largest_that_fits(base, per, budget, members):
    def peak(b):
        return base + per * b

    if peak(1) > budget:
        with pytest.raises(xdiffsr.ArgumentError):
            fit_batch_size(peak, budget, members)
        return
    b = fit_batch_size(peak, budget, members)
    assert 1 <= b <= members and peak(b) <= budget
    assert b == members or peak(b + 1) > budget


def test_max_memory_on_cpu(model):
    ref = _members(model)
    with pytest.warns(xdiffsr.XDiffSRWarning, match="max_memory"):
        x = _members(model, max_memory="1GB")
    np.testing.assert_array_equal(x, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xdiffsr.XDiffSRWarning)  # "auto": no limit on the CPU
        np.testing.assert_array_equal(_members(model, max_memory="auto"), ref)


@pytest.mark.gpu
def test_cuda_max_memory_fits_the_batch(model, device):
    if device.type != "cuda":
        pytest.skip("needs --device cuda")
    kw = dict(model=model, device=device, **BASE)
    ref = _target().diffsr.super_resolve(_obs(), **kw)
    plan = make_plan(_target(), _obs(), None, model, SamplerSettings.from_options(**BASE))
    den, _ = denoiser_at(model, plan.sources, plan.weights, plan.times[0], device,
                          plan.settings)
    peak = cuda_peak_probe(den, model.state_shape, device, 80.0)  # the guided evaluation
    p1, p2 = peak(1), peak(2)
    assert p2 > p1
    budget = p1 + (p2 - p1) // 2  # fits batch 1, not 2
    assert fit_batch_size(peak, budget, BASE["members"]) == 1
    out = _target().diffsr.super_resolve(_obs(), max_memory=budget, **kw)
    norm = model.normalise
    _assert_close(norm(_physical(out)), norm(_physical(ref)), 1e-4, "max_memory")
    with pytest.raises(xdiffsr.ArgumentError, match="checkpoint=True"):
        _target().diffsr.super_resolve(_obs(), max_memory=1000, **kw)


# ---------------------------------------------------------------------------------------------
# Network options: bf16, checkpointing, channels-last, compile


def test_bf16_matches_fp32_and_runs_the_network_in_bf16(model):
    dtypes = []
    hook = model.precond.net.enc_in.register_forward_hook(
        lambda mod, inp, out: dtypes.append(out.dtype)
    )
    try:
        ref = _members(model, precision="fp32")
        assert set(dtypes) == {torch.float32}
        dtypes.clear()
        x = _members(model, precision="bf16")
        assert set(dtypes) == {torch.bfloat16}  # the first convolution ran in bf16
    finally:
        hook.remove()
    # measured 2026-11-23: max |diff| 0.021 normalised (members' std 1.9, max |x| 10.3), i.e.
    # 2.1e-3 of max |ref|; bf16 keeps 8 mantissa bits (relative rounding 4e-3) in a network
    # that moves the denoised state by 0.01-0.14 RMS
    diff = _assert_close(x, ref, 1e-2, "bf16")
    assert diff > 1e-5  # not the fp32 path
    assert all(p.dtype == torch.float32 for p in model.precond.parameters())  # not converted


def test_bf16_is_recorded_and_lazy_path_uses_it(model):
    obs, kw = _obs(), dict(model=model, precision="bf16", **BASE)
    eager = _target().diffsr.super_resolve(obs, **kw)
    assert '"precision": "bf16"' in eager.attrs["sampler"]
    lazy = _target().diffsr.super_resolve(obs, chunks={"time": 1}, **kw)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(_physical(lazy.compute()), _physical(eager))
    fp32 = _target().diffsr.super_resolve(obs, model=model, precision="fp32", **BASE)
    assert '"precision": "fp32"' in fp32.attrs["sampler"]
    auto = _target().diffsr.super_resolve(obs, model=model, device="cpu", **BASE)  # the default
    resolved = "bf16" if bf16_supported("cpu")[0] else "fp32"
    assert f'"precision": "{resolved}"' in auto.attrs["sampler"]  # resolved, never "auto"
    np.testing.assert_array_equal(_physical(auto), _physical(eager if resolved == "bf16"
                                                             else fp32))
    assert not np.allclose(_physical(fp32), _physical(eager), rtol=0, atol=1e-3)


def test_explicit_bf16_without_native_support_is_refused(model, monkeypatch):
    """Emulated bf16 is slower than fp32: asked for explicitly where the CPU lacks avx512_bf16
    and amx_bf16, a typed error names the missing capability (never silently slower)."""
    from xdiffsr.core import runtime

    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "fma"})
    assert runtime.bf16_supported("cpu")[0] is False
    with pytest.raises(xdiffsr.ArgumentError, match=r"precision='bf16' on cpu, but this CPU has "
                       r"neither avx512_bf16 nor amx_bf16.*precision='fp32'"):
        _target().diffsr.super_resolve(_obs(), model=model, device="cpu", precision="bf16",
                                       **BASE)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512_bf16"})
    runtime.check_precision("bf16", "cpu")  # supported: no error
    runtime.check_precision("fp32", "cpu")


def test_compile_failure_falls_back_to_eager_with_one_warning(model, monkeypatch):
    from xdiffsr.core import runtime

    calls = []

    def broken(mode):
        def run(*args):
            calls.append(mode)
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(runtime, "_compiled", broken)
    monkeypatch.setattr(runtime, "_COMPILED", {})
    ref = _members(model)
    with pytest.warns(xdiffsr.XDiffSRWarning, match=r"compile='default': torch.compile failed "
                      r"\(RuntimeError: InductorError: no working C\+\+ compiler found\); "
                      r"running the network eagerly") as record:
        x = _members(model, compile=True)
    assert len([w for w in record if "torch.compile failed" in str(w.message)]) == 1
    assert calls == ["default"]  # tried once, then eager for the rest of the process
    np.testing.assert_array_equal(x, ref)


@pytest.mark.parametrize("guidance", ["sda", "mmps"])
def test_checkpoint_gives_the_same_members(model, guidance, monkeypatch):
    calls = []
    real = unet._checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(unet, "_checkpoint", counting)
    ref = _members(model, guidance, cg_iters=CG[guidance])
    assert not calls
    x = _members(model, guidance, cg_iters=CG[guidance], checkpoint=True)
    assert calls  # the blocks went through torch.utils.checkpoint
    assert model.precond.net.checkpoint is False  # the shared model is not modified
    # measured max |diff| 0 (sda and mmps), 2026-11-23: the recomputation is deterministic
    _assert_close(x, ref, 1e-5, "checkpoint")


def test_channels_last_gives_the_same_members(model):
    layouts = []
    hooks = [
        mod.register_forward_hook(
            lambda mod, inp, out: layouts.append(
                out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
            )
        )
        for mod in model.precond.net.modules()
        if isinstance(mod, layers.LatLonConv2d) and mod.weight is not None
    ]
    try:
        ref = _members(model, channels_last=False, precision="fp32")
        layouts.clear()
        x = _members(model, channels_last=True, precision="fp32")
        assert layouts and all(layouts)  # every convolution ran in NHWC
    finally:
        for h in hooks:
            h.remove()
    # measured 2026-11-23: max |diff| 9.1e-6 normalised, 8.8e-7 of max |ref| (NHWC kernels)
    _assert_close(x, ref, 1e-5, "channels_last")
    assert model.precond.net.enc_in.weight.is_contiguous()  # the shared weights are untouched


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("XDIFFSR_TEST_COMPILE") != "1",
    reason="torch.compile of the guided network takes 2-3 min on 2 CPU cores; set "
    "XDIFFSR_TEST_COMPILE=1 to run it",
)
@pytest.mark.skipif(
    not (shutil.which("gcc") or shutil.which("cc")), reason="inductor needs a C compiler"
)
def test_compile_gives_the_same_members(model):
    from xdiffsr.core import runtime

    ref = _members(model, members=2, steps=2)
    x = _members(model, members=2, steps=2, compile=True)
    assert "default" in runtime._COMPILED
    # measured max |diff| 0, 2026-11-23 (inductor calls the same CPU convolutions)
    _assert_close(x, ref, 1e-5, "compile")


def test_network_options_resolve_auto_for_the_network_device(model, monkeypatch):
    """'auto' is resolved where the network runs (any caller, not only a Reconstruction)."""
    from xdiffsr.core import runtime

    pre = model.precond
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"amx_bf16"})
    fast = with_network_options(pre, precision="auto", channels_last="auto")
    assert (fast.net.precision, fast.net.channels_last) == ("bf16", True)  # CPU parameters
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: set())
    assert with_network_options(pre, precision="auto", channels_last=False) is pre  # fp32
    with pytest.raises(xdiffsr.ArgumentError, match="amx_bf16"):
        with_network_options(pre, precision="bf16")


def test_network_options_share_the_model_and_skip_priors_without_a_network(model):
    pre = model.precond
    assert with_network_options(pre) is pre  # default options: the model itself
    fast = with_network_options(pre, precision="bf16", checkpoint=True)
    assert isinstance(fast, EDMPrecond) and isinstance(fast.net, NetworkRunner)
    assert fast.net.net is pre.net and fast.sigma_data == pre.sigma_data
    gauss = GaussianDenoiser(torch.zeros(1, 2, 2), torch.eye(4)[:, :2], torch.ones(2))
    assert with_network_options(gauss, precision="bf16") is gauss  # exact in fp32
    with pytest.raises(xdiffsr.ArgumentError, match="checkpoint"):
        NetworkRunner(torch.nn.Conv2d(2, 2, 1), checkpoint=True)


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"precision": "fp16"}, "precision"),
        ({"precision": "bfloat16"}, "precision"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"max_memory": "a lot"}, "max_memory"),
        ({"max_memory": -5}, "max_memory"),
        ({"channels_last": "yes"}, "channels_last"),
        ({"checkpoint": 1}, "checkpoint"),
        ({"compile": "fast"}, "compile"),
    ],
)
def test_bad_speed_options(model, kw, name):
    with pytest.raises(xdiffsr.ArgumentError, match=name) as err:
        _target().diffsr.super_resolve(_obs(), model=model, members=2, steps=2, **kw)
    assert repr(next(iter(kw.values()))) in str(err.value)


# ---------------------------------------------------------------------------------------------
# Zarr stores: speed options may change on resume, precision may not


class _Stop(Exception):
    pass


def test_zarr_resume_ignores_speed_options_but_not_precision(model, tmp_path):
    times = pd.date_range("2021-01-01", periods=4, freq="6h")
    store = str(tmp_path / "s.zarr")
    # fp32: the 1e-5 below is fp32 rounding of other batch shapes (bf16 kernels of another batch
    # shape differ by bf16 rounding, measured up to 5e-5 here)
    kw = dict(model=model, chunks={"time": 2}, progress=False, precision="fp32", **BASE)

    def stop(chunk):
        raise _Stop

    with dask.config.set(scheduler="sync"), pytest.raises(_Stop):
        xdiffsr.reconstruct_to_zarr(_target(times), _obs(times), store, callback=stop, **kw)
    with dask.config.set(scheduler="sync"):
        out = xdiffsr.reconstruct_to_zarr(
            _target(times), _obs(times), store, batch_size=1, max_memory="auto",
            channels_last=True, checkpoint=True, **kw,
        )
        ref = _target(times).diffsr.super_resolve(_obs(times), model=model, precision="fp32",
                                                  **BASE)
        norm = model.normalise
        _assert_close(norm(_physical(out)), norm(_physical(ref)), 1e-5, "resumed store")
        with pytest.raises(xdiffsr.ArgumentError, match="precision"):
            xdiffsr.reconstruct_to_zarr(
                _target(times), _obs(times), store, **{**kw, "precision": "bf16"}
            )


def test_memory_probe_runs_where_mmps_runs():
    """With an MMPS band the CUDA memory probe runs at the first noise level inside it (the
    larger working set), otherwise at the first level."""
    from xdiffsr.core.likelihood import NoiseBandGuidance
    from xdiffsr.core.schedule import karras_sigmas
    from xdiffsr.reconstruct.sample import _probe_sigma

    sigmas = karras_sigmas(15)
    ident = torch.nn.Identity()
    assert _probe_sigma(ident, sigmas) == pytest.approx(80.0)
    band = NoiseBandGuidance(ident, ident, (1.3, 3.0))
    assert 1.3 <= _probe_sigma(band, sigmas) <= 3.0
    assert _probe_sigma(NoiseBandGuidance(ident, ident, (1e3, 1e4)), sigmas) == pytest.approx(80.0)
