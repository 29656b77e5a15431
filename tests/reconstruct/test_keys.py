"""Dask keys of lazy reconstructions cover every field of every source: two lazy results that
differ in any source option have their own keys, so computed together each keeps its values."""

from __future__ import annotations

import dataclasses

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from dask.base import tokenize

import xdiffsr
from tests.test_accessor import LAT, LON, TIMES, _covariance, _mean_ds
from xdiffsr.observations.column import ColumnObservations, WeightingFunctions

KW = dict(members=2, steps=4, seed=3)


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior(_mean_ds(), _covariance())


def _dense_points(times=TIMES[:2]) -> pd.DataFrame:
    """Four t850 observations around each of 10 grid cells per time: super-observations merge
    them, so ``superobs`` changes the members."""
    g = np.random.default_rng(5)
    rows = []
    for t in times:
        i, j = g.integers(1, 7, 10), g.integers(0, 16, 10)
        for di, dj in ((-2, -2), (-2, 2), (2, -2), (2, 2)):
            rows.append(pd.DataFrame({"time": t, "lat": LAT[i] + di, "lon": LON[j] + dj,
                                      "variable": "t850", "value": 270 + g.normal(0, 3, 10),
                                      "units": "K"}))
    return pd.concat(rows, ignore_index=True)


def _values(ds: xr.Dataset) -> np.ndarray:
    return ds["t850"].values


@pytest.mark.parametrize("change", [{"superobs": True}, {"superobs": True, "superobs_rho": 0.9}])
def test_lazy_results_differing_in_superobs_options_keep_their_values(prior, change):
    df = _dense_points()
    base = xdiffsr.PointObservations(df, sigma_y=0.5)
    other = xdiffsr.PointObservations(df, sigma_y=0.5, **change)
    if change.get("superobs_rho"):
        base = xdiffsr.PointObservations(df, sigma_y=0.5, superobs=True)
    target = xr.Dataset(coords={"time": TIMES[:2]})
    lazy = [target.diffsr.super_resolve([s], model=prior, chunks={"time": 1}, **KW)
            for s in (base, other)]
    names = [x["t850"].data.name for x in lazy]
    assert names[0] != names[1]
    alone = [x.compute() for x in lazy]  # each on its own graph
    assert np.abs(_values(alone[0]) - _values(alone[1])).max() > 1e-3  # the option matters
    together = dask.compute(*lazy)  # one graph holds both
    merged = xr.merge([lazy[0]["t850"].rename("a"), lazy[1]["t850"].rename("b")]).persist()
    for k in range(2):
        np.testing.assert_array_equal(_values(together[k]), _values(alone[k]))
    np.testing.assert_array_equal(merged["a"].values, _values(alone[0]))
    np.testing.assert_array_equal(merged["b"].values, _values(alone[1]))

def _sources():
    df = _dense_points(TIMES[:1])
    values = xr.DataArray(np.ones((1, 3)), dims=("time", "obs"), coords={"time": TIMES[:1]})
    cols = pd.DataFrame({"time": TIMES[0], "lat": [0.0, 10.0], "lon": [20.0, 40.0],
                         "channel": ["ch1", "ch2"], "value": [250.0, 240.0]})
    return {
        "points": (xdiffsr.PointObservations(df),
                   [{"superobs": True}, {"superobs_rho": 0.5}, {"method": "bicubic"},
                    {"weight": 0.5}, {"units": "K"}]),
        "callable": (xdiffsr.CallableObservations(values, operator=_first3, sigma_y=1.0),
                     [{"operator": _last3}, {"gamma": 2.0}]),
        "column": (ColumnObservations(cols),
                   [{"quantity": "z"}, {"weighting": WeightingFunctions.gaussian(width=0.3)},
                    {"sigma_y": {"ch1": 2.0}}]),
    }


def _first3(state: torch.Tensor) -> torch.Tensor:
    return state.flatten(1)[:, :3]


def _last3(state: torch.Tensor) -> torch.Tensor:
    return state.flatten(1)[:, -3:]


@pytest.mark.parametrize("kind", ["points", "callable", "column"])
def test_source_token_covers_every_field(kind):
    src, changes = _sources()[kind]
    assert tokenize(src) == tokenize(dataclasses.replace(src))  # deterministic
    for change in changes:
        assert tokenize(src) != tokenize(dataclasses.replace(src, **change)), change
