"""A model's own sampler churn (``metadata["sampling"]["S_churn"]``, :attr:`Prior.S_churn`):
used when the settings leave ``S_churn=None``, refused when not a number >= 0, part of the
model's fingerprint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from tests.conftest import tiny_model, tiny_observations
from xdiffsr.errors import ModelError

TIMES = pd.DatetimeIndex(["2021-01-01T00"])


def members(model, **options):
    out = xr.Dataset(coords={"time": TIMES}).diffsr.super_resolve(
        obs=tiny_observations(TIMES), model=model, members=2, steps=4, seed=1,
        precision="fp32", **options)
    return out["t850"].values


def test_the_models_churn_is_the_default():
    plain = tiny_model("plain")
    churned = tiny_model("churned", metadata={"sampling": {"S_churn": 10.0}})
    assert plain.S_churn == 0.0 and churned.S_churn == 10.0
    own = members(churned)
    np.testing.assert_array_equal(own, members(churned, S_churn=10.0))
    np.testing.assert_array_equal(members(churned, S_churn=0.0), members(plain))
    assert np.abs(own - members(plain)).max() > 1e-3  # the churn acted
    np.testing.assert_array_equal(members(plain, S_churn=10.0), own)


def test_churn_round_trips_and_enters_the_fingerprint(tmp_path):
    churned = tiny_model("m", metadata={"sampling": {"S_churn": 10.0}})
    loaded = xdiffsr.load_model(churned.save(tmp_path / "m.safetensors"))
    assert loaded.S_churn == 10.0
    assert loaded.fingerprint() == churned.fingerprint()
    assert churned.fingerprint() != tiny_model("m").fingerprint()


@pytest.mark.parametrize("bad", [-1.0, "10", float("nan"), True])
def test_a_bad_recorded_churn_is_refused(tmp_path, bad):
    with pytest.raises(ModelError, match=r"metadata\['sampling'\]\['S_churn'\] = .* finite"):
        tiny_model("bad", metadata={"sampling": {"S_churn": bad}})
