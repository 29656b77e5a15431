"""Sampler settings (one validated dataclass), strict-JSON provenance, the progress bar, and the
process-wide regridding-operator cache."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from tests.conftest import tiny_model, tiny_observations
from xdiffsr.observations.sources import GridObservations
from xdiffsr.reconstruct import SAMPLER_DEFAULTS, SamplerSettings, api, tasks
from xdiffsr.reconstruct.settings import NETWORK_SETTINGS, SPEED_SETTINGS

TIMES = pd.date_range("2021-01-01", periods=2, freq="6h")
KW = dict(members=3, steps=3, seed=1)


@pytest.fixture(scope="module")
def model():
    return tiny_model("tiny-settings")


def _target(times=TIMES):
    return xr.Dataset(coords={"time": times})


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# SamplerSettings


def test_defaults_are_unchanged():
    # issue 15: Jacobian-free moment matching at 15 steps, MMPS at the noise level 2.5
    # (benchmarks/RESULTS.md)
    assert SamplerSettings().as_dict() == dict(
        members=8, steps=15, seed=0, guidance="jf", lambda_g=1.0, clip=None, cg_iters=2,
        mmps_sigmas=(1.3, 3.0), cg_tol=1e-3, S_tmin=0.0, S_tmax=math.inf, S_noise=1.0,
        S_churn=None,  # issue 24: the prior's own (the packaged default model's: 10)
        corrector_guidance=True,
        zonal_truncation=None,  # the prior's own (the packaged default model's: 42)
        sigma_min=None, sigma_max=None, batch_size=None, batch_times=False, max_memory=None,
        precision="auto",  # issue 28: bf16 where native (same quality, 0.71x the CPU time)
        channels_last="auto", compile=False, checkpoint=False,
    )
    assert SAMPLER_DEFAULTS == SamplerSettings().as_dict()
    assert NETWORK_SETTINGS == ("precision", "channels_last", "compile", "checkpoint")
    assert SPEED_SETTINGS == ("batch_size", "max_memory", "channels_last", "compile", "checkpoint")


def test_auto_precision_resolves_per_device_and_says_its_fallback_once(monkeypatch, caplog):
    from xdiffsr.core import runtime

    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert SamplerSettings().for_device("cpu").precision == "bf16"
    assert SamplerSettings(precision="fp32").for_device("cpu").precision == "fp32"  # explicit
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(runtime, "_FALLBACK_SAID", set())
    with caplog.at_level("WARNING", logger="xdiffsr"):
        assert SamplerSettings().for_device("cpu").precision == "fp32"
        assert SamplerSettings().for_device("cpu").precision == "fp32"
    said = [r.getMessage() for r in caplog.records if "precision='auto'" in r.getMessage()]
    assert said == ["xdiffsr: precision='auto' runs the network in fp32 on cpu: this CPU has "
                    "neither avx512_bf16 nor amx_bf16 (bf16 would be emulated)"]  # once
    assert SamplerSettings().record()["precision"] == "auto"  # unresolved until a device
    # channels-last: on the CPU only (measured there), speed only (not in the record)
    assert SamplerSettings().for_device("cpu").channels_last is True
    assert SamplerSettings().for_device("cuda").channels_last is False
    assert SamplerSettings(channels_last=False).for_device("cpu").channels_last is False
    assert "channels_last" not in SamplerSettings().record()
    with pytest.raises(xdiffsr.ArgumentError, match="precision='fp16'"):
        SamplerSettings(precision="fp16")


def test_mmps_band_is_validated_and_recorded_as_json():
    s = SamplerSettings.from_options(mmps_sigmas=[2, 8.5])
    assert s.mmps_sigmas == (2.0, 8.5)
    assert json.loads(s.to_json())["mmps_sigmas"] == [2.0, 8.5]  # as a store reads it back
    assert s.record()["mmps_sigmas"] == [2.0, 8.5]
    for bad in [(8, 2), (-1, 2), (1,), "2,8", (1, float("nan"))]:
        with pytest.raises(xdiffsr.XDiffSRError, match="mmps_sigmas"):
            SamplerSettings.from_options(mmps_sigmas=bad)


def test_settings_are_frozen_and_normalised():
    s = SamplerSettings.from_options(members=np.int64(4), steps=6.0, compile=True,
                                     max_memory="1GiB")
    assert (s.members, s.steps, s.compile, s.max_memory) == (4, 6, "default", 2**30)
    assert type(s.members) is int and type(s.steps) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.members = 2
    t = s.replace(members=2)
    assert t.members == 2 and s.members == 4 and t.steps == 6
    assert SamplerSettings.from_options(s, seed=3).members == 4
    assert s.network_options() == dict(
        precision="auto", channels_last="auto", compile="default", checkpoint=False
    )


@pytest.mark.parametrize("typo, closest", [("lamda_g", "lambda_g"), ("cg_iter", "cg_iters"),
                                           ("s_churn", "S_churn"), ("member", "members")])
def test_unknown_option_names_the_closest(typo, closest):
    with pytest.raises(xdiffsr.ArgumentError, match=f"Did you mean '{closest}'") as err:
        SamplerSettings.from_options(**{typo: 1})
    msg = str(err.value)
    assert repr(typo) in msg and "lambda_g, clip, cg_iters" in msg  # lists the valid ones


def test_unknown_option_without_a_close_one():
    with pytest.raises(xdiffsr.ArgumentError, match="unknown sampler option 'zzz'") as err:
        SamplerSettings.from_options(zzz=1)
    assert "Did you mean" not in str(err.value) and "members" in str(err.value)


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"lambda_g": math.nan}, "lambda_g"),
        ({"lambda_g": math.inf}, "lambda_g"),
        ({"lambda_g": -1.0}, "lambda_g"),
        ({"lambda_g": "1"}, "lambda_g"),
        ({"S_churn": math.inf}, "S_churn"),
        ({"S_noise": math.nan}, "S_noise"),
        ({"S_tmax": math.nan}, "S_tmax"),
        ({"S_tmax": -math.inf}, "S_tmax"),
        ({"clip": 0.0}, "clip"),
        ({"clip": math.inf}, "clip"),
        ({"sigma_min": -1.0}, "sigma_min"),
        ({"sigma_max": math.inf}, "sigma_max"),
        ({"members": 0}, "members"),
        ({"members": 2.5}, "members"),
        ({"steps": True}, "steps"),
        ({"cg_iters": 0}, "cg_iters"),
        ({"seed": 1.5}, "seed"),
        ({"seed": math.nan}, "seed"),
        ({"guidance": "magic"}, "guidance"),
        ({"corrector_guidance": 1}, "corrector_guidance"),
        ({"batch_times": "yes"}, "batch_times"),
        ({"precision": "fp16"}, "precision"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_values_are_refused_naming_the_option(kw, name):
    with pytest.raises(xdiffsr.ArgumentError, match=name) as err:
        SamplerSettings.from_options(**kw)
    assert repr(next(iter(kw.values()))) in str(err.value)


def test_sigma_range_must_be_ordered():
    with pytest.raises(xdiffsr.ArgumentError, match="sigma_min"):
        SamplerSettings(sigma_min=10.0, sigma_max=1.0)
    assert SamplerSettings(S_tmin=1.0, S_tmax=math.inf).S_tmax == math.inf


def test_record_is_strict_json_without_speed_settings():
    s = SamplerSettings(batch_size=2, compile=True)
    rec = _strict(s.to_json())
    assert rec["S_tmax"] == "inf" and float(rec["S_tmax"]) == math.inf
    assert not set(SPEED_SETTINGS) & set(rec) and rec["precision"] == "auto"
    assert set(rec) == set(SAMPLER_DEFAULTS) - set(SPEED_SETTINGS)


# ---------------------------------------------------------------------------------------------
# Entry points: super_resolve, the accessor, reconstruct_to_zarr, sample_time


def test_typo_through_the_entry_points(model, tmp_path):
    obs = tiny_observations(TIMES)
    calls = [
        lambda: xdiffsr.super_resolve(_target(), obs, model=model, lamda_g=2.0),
        lambda: _target().diffsr.super_resolve(obs, model=model, lamda_g=2.0),
        lambda: xdiffsr.reconstruct_to_zarr(
            _target(), obs, str(tmp_path / "s.zarr"), model=model, lamda_g=2.0, progress=False
        ),
        lambda: xdiffsr.reconstruct.sample_time(
            model, [], [], TIMES.values[0], device="cpu", lamda_g=2.0
        ),
    ]
    for call in calls:
        with pytest.raises(xdiffsr.ArgumentError, match="Did you mean 'lambda_g'"):
            call()
    assert not (tmp_path / "s.zarr").exists()


def test_non_finite_lambda_g_is_refused_by_super_resolve(model):
    with pytest.raises(xdiffsr.ArgumentError, match="lambda_g=nan"):
        _target().diffsr.super_resolve(tiny_observations(TIMES), model=model, lambda_g=math.nan)


def test_settings_object_and_options_agree(model):
    obs = tiny_observations(TIMES)
    a = xdiffsr.super_resolve(_target(), obs, model=model, **KW)
    s = SamplerSettings.from_options(**KW)
    b = _target().diffsr.super_resolve(obs, model=model, settings=s.replace(seed=9), seed=1)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["sampler"] == b.attrs["sampler"]


def test_provenance_and_run_record_are_strict_json(model, tmp_path):
    obs = tiny_observations(TIMES)
    out = _target().diffsr.super_resolve(obs, model=model, **KW)
    rec = _strict(out.attrs["sampler"])
    assert rec["S_tmax"] == "inf" and rec["members"] == 3 and rec["guidance"] == "jf"
    store = xdiffsr.reconstruct_to_zarr(
        _target(), obs, str(tmp_path / "r.zarr"), model=model, progress=False, **KW
    )
    assert _strict(store.attrs["sampler"]) == rec
    assert _strict(store.attrs["xdiffsr_run"])["settings"] == rec


# ---------------------------------------------------------------------------------------------
# progress=


class _Bar:
    """Stands in for tqdm: records its total and updates."""

    made: ClassVar[list[_Bar]] = []

    def __init__(self, total=None, disable=False, **kw):
        self.total, self.disable, self.updates = total, disable, []
        _Bar.made.append(self)

    def update(self, n=1):
        self.updates.append(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("batch_size", [None, 2])
def test_progress_counts_times_and_steps(model, monkeypatch, batch_size):
    monkeypatch.setattr(api, "progress_bar", _Bar)
    _Bar.made.clear()
    obs = tiny_observations(TIMES)
    quiet = _target().diffsr.super_resolve(obs, model=model, batch_size=batch_size, **KW)
    assert len(_Bar.made) == 1 and _Bar.made[0].disable and _Bar.made[0].updates == []
    shown = _target().diffsr.super_resolve(
        obs, model=model, progress=True, batch_size=batch_size, **KW
    )
    bar = _Bar.made[-1]
    assert not bar.disable and bar.total == len(TIMES) * KW["steps"]
    assert sum(bar.updates) == pytest.approx(bar.total)
    # one update per step and member batch: 1 batch of 3, or batches of 2 and 1
    assert len(bar.updates) == bar.total * (1 if batch_size is None else 2)
    for v in quiet.data_vars:
        np.testing.assert_array_equal(shown[v].values, quiet[v].values)


def test_progress_with_real_tqdm_and_lazy_warning(model, capsys):
    obs = tiny_observations(TIMES)
    _target().diffsr.super_resolve(obs, model=model, progress=True, **KW)
    assert f"{len(TIMES) * KW['steps']}/{len(TIMES) * KW['steps']}" in capsys.readouterr().err
    with pytest.warns(xdiffsr.XDiffSRWarning, match="lazy"):
        _target().diffsr.super_resolve(obs, model=model, progress=True, chunks=1, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xdiffsr.XDiffSRWarning)
        _target().diffsr.super_resolve(obs, model=model, chunks=1, **KW)


# ---------------------------------------------------------------------------------------------
# Regridding operators: one per (method, model grid, obs grid) and process


def test_grid_operator_is_built_once_per_process(model):
    tasks.clear_cache()
    coarse = tiny_observations(TIMES)[1]
    a, b = GridObservations(coarse), GridObservations(coarse.copy(deep=True))
    assert a.grid.shape == (4, 8)
    op = a.operator(model)
    assert op.shape == (32, 8 * 16)
    assert b.operator(model) is op  # another source on the same grids: the same matrix
    assert GridObservations(coarse, method="bilinear").operator(model) is not op
    stats = tasks.cache_stats()
    assert stats["operators"] == 2 and stats["operator_hits"] == 1
    tasks.clear_cache()
    assert tasks.cache_stats() == {"loads": 0, "hits": 0, "operators": 0, "operator_hits": 0}
