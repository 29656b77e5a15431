"""A model's band limit (``metadata["sampling"]["zonal_truncation"]``,
:attr:`Prior.zonal_truncation`, ``SamplerSettings.zonal_truncation``): the sampler's denoised
states and members keep per row only the zonal wavenumbers ``<= ceil(N cos(lat)) + 1``;
used when the settings leave it None, 0 turns it off, refused where it cannot act."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xdiffsr
from tests.conftest import TINY_LAT, TINY_LON, tiny_model, tiny_observations
from xdiffsr.core.zonal import kept_wavenumbers
from xdiffsr.errors import ArgumentError, ModelError

TIMES = pd.DatetimeIndex(["2021-01-01T00"])


def members(model, obs=None, **options) -> xr.Dataset:
    return xr.Dataset(coords={"time": TIMES}).diffsr.super_resolve(
        obs=tiny_observations(TIMES) if obs is None else obs, model=model, members=2, steps=4,
        seed=1, precision="fp32", **options)


def power_above_limit(field: np.ndarray, lat: np.ndarray, truncation: int) -> np.ndarray:
    """Per row, the zonal power above the row's limit over the row's eddy power."""
    spec = np.abs(np.fft.rfft(field, axis=-1)) ** 2
    spec = spec.reshape(-1, *spec.shape[-2:]).sum(0)  # (H, M)
    kept = kept_wavenumbers(lat, truncation)
    above = np.arange(spec.shape[-1])[None, :] > kept[:, None]
    return (spec * above).sum(-1) / spec[:, 1:].sum(-1)


def test_members_are_band_limited_and_the_models_truncation_is_the_default():
    plain = tiny_model("plain")
    limited = tiny_model("limited", metadata={"sampling": {"zonal_truncation": 3}})
    assert plain.zonal_truncation is None and limited.zonal_truncation == 3
    own = members(limited)
    xr.testing.assert_equal(own, members(limited, zonal_truncation=3))  # attrs: the settings
    for v in ("t850", "z500"):  # guided members (points and a coarse field) are band-limited
        assert power_above_limit(own[v].values, TINY_LAT, 3).max() < 1e-9, v
        raw = power_above_limit(members(plain)[v].values, TINY_LAT, 3)
        assert raw.max() > 1e-3, v  # the untruncated network puts power there
    # prior samples: the same weights, truncated or not by the model's record or the setting
    free = {k: members(m, obs=[], guidance="none", **kw)["t850"].values for k, (m, kw) in {
        "own": (limited, {}), "off": (limited, {"zonal_truncation": 0}),
        "plain": (plain, {}), "asked": (plain, {"zonal_truncation": 3})}.items()}
    assert power_above_limit(free["own"], TINY_LAT, 3).max() < 1e-9
    np.testing.assert_array_equal(free["off"], free["plain"])
    np.testing.assert_array_equal(free["asked"], free["own"])
    assert np.abs(free["own"] - free["plain"]).max() > 1e-3


def test_truncation_round_trips_and_enters_the_fingerprint(tmp_path):
    limited = tiny_model("m", metadata={"sampling": {"zonal_truncation": 5}})
    loaded = xdiffsr.load_model(limited.save(tmp_path / "m.safetensors"))
    assert loaded.zonal_truncation == 5 and loaded.fingerprint() == limited.fingerprint()
    assert limited.fingerprint() != tiny_model("m").fingerprint()


@pytest.mark.parametrize("bad", [0, -1, 4.5, "42", True])
def test_a_bad_recorded_truncation_is_refused(bad):
    with pytest.raises(ModelError, match=r"metadata\['sampling'\]\['zonal_truncation'\] = .* "
                                         "positive integer"):
        tiny_model("bad", metadata={"sampling": {"zonal_truncation": bad}})


@pytest.mark.parametrize("bad", [-1, 2.5, "x", True])
def test_a_bad_setting_is_refused(bad):
    with pytest.raises(ArgumentError, match="zonal_truncation="):
        xdiffsr.SamplerSettings(zonal_truncation=bad)


def test_refused_where_it_cannot_act():
    """A regional grid has no full latitude circles: refused before any work, naming the fix."""
    from xdiffsr.core import EDMPrecond, SongUNet, UNetConfig
    from xdiffsr.grid import Grid

    torch.manual_seed(0)
    regional = xdiffsr.DiffusionModel(
        EDMPrecond(SongUNet.from_config(UNetConfig.tiny(1, (8, 16))), sigma_data=0.5),
        ["t850"], {"t850": "K"}, Grid(TINY_LAT, TINY_LON[:16] * 0.5), center=[270.0],
        scale=[5.0], name="regional")
    assert not regional.grid.is_global
    with pytest.raises(ArgumentError, match=r"zonal_truncation=3 .*not global.*"
                                            r"zonal_truncation=0"):
        members(regional, obs=[], guidance="none", zonal_truncation=3)
    members(regional, obs=[], guidance="none")  # no truncation: fine
