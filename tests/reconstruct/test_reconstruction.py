"""The build-once Reconstruction: validated once, a readable repr, and super_resolve's results
from its sample / diagnostics / to_dataset."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xdiffsr
from tests.test_accessor import TIMES, _coarse, _covariance, _mean_ds, _points


@pytest.fixture(scope="module")
def problem():
    prior = xdiffsr.GaussianPrior(_mean_ds(), _covariance())
    truth = np.stack([_mean_ds()[v].values for v in ("t850", "z500")])
    return prior, [_points(truth, times=TIMES[:2]), _coarse(truth, times=TIMES[:2])]


def test_reconstruction_is_super_resolve_built_once(problem):
    prior, obs = problem
    target = xr.Dataset(coords={"time": TIMES[:2]})
    kw = dict(members=2, steps=4, seed=5)
    rec = xdiffsr.Reconstruction(target, obs, [1.0, 0.5], model=prior, **kw)
    text = repr(rec)
    assert text.startswith("Reconstruction of 2 time(s) 2021-01-01T00:00 .. 2021-01-01T06:00")
    assert "2 members, 4 steps, guidance 'jf'" in text and "(weight 0.5)" in text
    data = rec.sample(device="cpu")
    assert data.shape == (2, 2, *prior.state_shape)
    ens = rec.to_dataset(data, diagnostics=rec.diagnostics(data))
    ref = target.diffsr.super_resolve(obs, [1.0, 0.5], model=prior, **kw)
    xr.testing.assert_identical(ens.drop_attrs(), ref.drop_attrs())
    assert {k: v for k, v in ens.attrs.items() if k != "history"} == {
        k: v for k, v in ref.attrs.items() if k != "history"}
    # one time alone gives that time's members
    np.testing.assert_array_equal(rec.sample(rec.times[1:], device="cpu")[0], data[1])
    args = rec.window(rec.times[:1])
    assert len(args.srcs[0].data) == 25 and list(args.times) == list(rec.times[:1])


def test_reconstruction_validates_once_when_built(problem):
    prior, obs = problem
    with pytest.raises(xdiffsr.ArgumentError, match="weights"):
        xdiffsr.Reconstruction(xr.Dataset(coords={"time": TIMES[:1]}), obs, [1.0], model=prior)
    with pytest.raises(xdiffsr.ArgumentError, match="membrs"):
        xdiffsr.Reconstruction(xr.Dataset(coords={"time": TIMES[:1]}), obs, model=prior,
                               membrs=3)


def test_run_builds_each_block_once_and_matches_sample_then_diagnose(problem, monkeypatch):
    """super_resolve (Reconstruction.run) builds each (time, source) observation block once for
    the guidance and the diagnostics, and on a flipped output grid gives the members and
    diagnostics of sample + diagnostics (which rebuild the blocks and permute back)."""
    prior, obs = problem
    mean = _mean_ds()
    lat, lon = mean.cf["latitude"].name, mean.cf["longitude"].name
    target = xr.Dataset(coords={"time": TIMES[:2], lat: mean[lat].values[::-1],
                                lon: mean[lon].values})
    kw = dict(members=3, steps=4, seed=2)
    rec = xdiffsr.Reconstruction(target, obs, [1.0, 0.5], model=prior, **kw)
    data = rec.sample(device="cpu")
    ref = rec.to_dataset(data, diagnostics=rec.diagnostics(data))
    calls: list[tuple[str, np.datetime64]] = []
    for cls in {type(s) for s in rec.sources}:
        original = cls.at_time

        def counted(self, time, prior, _original=original):
            calls.append((self.describe(), np.datetime64(time, "ns")))
            return _original(self, time, prior)

        monkeypatch.setattr(cls, "at_time", counted)
    ens = target.diffsr.super_resolve(obs, [1.0, 0.5], model=prior, **kw)
    assert sorted(calls) == sorted({(s.describe(), t) for s in rec.sources for t in rec.times})
    assert len(calls) == len(rec.sources) * len(rec.times)  # once each
    assert np.all(np.diff(ens[lat].values) < 0)  # the caller's (flipped) order
    xr.testing.assert_identical(ens.drop_attrs(), ref.drop_attrs())
