"""Rank histograms: flat for a reliable ensemble, U-shaped for an under-dispersive one."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.ranks import rank_histogram

M = 9  # members: ranks 0..9


def _fields(spread: float, n_time: int = 20, seed: int = 0):
    """Truth and M members, independent draws at each of 20 x 10 x 10 points; the members have
    standard deviation ``spread``, the truth 1."""
    g = np.random.default_rng(seed)
    truth = xr.DataArray(g.normal(size=(n_time, 10, 10)), dims=("time", "lat", "lon"),
                         coords={"lat": np.arange(10.0), "lon": np.arange(10.0)})
    ens = xr.DataArray(spread * g.normal(size=(n_time, M, 10, 10)),
                       dims=("time", "member", "lat", "lon"),
                       coords={"lat": np.arange(10.0), "lon": np.arange(10.0)})
    return ens, truth


def test_same_distribution_is_flat_within_chi_square_bound():
    ens, truth = _fields(spread=1.0)
    h = rank_histogram(ens, truth)
    assert h.dims == ("rank",) and list(h["rank"].values) == list(range(M + 1))
    n = truth.size
    expected = n / (M + 1)
    chi2 = float(((h - expected) ** 2 / expected).sum())
    # Independent points: chi2 ~ chi-square(M dof), mean 9; its 99.9 % quantile is 27.9.
    assert chi2 < 27.9, (chi2, h.values)


def test_under_dispersive_is_u_shaped():
    ens, truth = _fields(spread=0.3)
    h = rank_histogram(ens, truth).values
    middle = h[1:-1].mean()
    assert h[0] > 3 * middle and h[-1] > 3 * middle, h
    assert h[0] + h[-1] > 0.5 * h.sum()


def test_counts_sum_to_points_and_nan_truth_is_skipped():
    ens, truth = _fields(spread=1.0, n_time=3)
    truth = truth.where(truth.lat != 0)  # one latitude row missing: 3 x 10 points skipped
    h = rank_histogram(ens, truth)
    assert int(h.sum()) == truth.size - 30
    assert h.attrs["skipped"] == 30 and h.attrs["members"] == M


def test_ties_are_broken_at_random_with_the_seed():
    truth = xr.DataArray(np.zeros(5000), dims="x")
    ens = xr.DataArray(np.zeros((5000, 4)), dims=("x", "member"))  # every member ties the truth
    h = rank_histogram(ens, truth, seed=1)
    assert (h.values > 800).all(), h.values  # about 1000 in each of the 5 ranks, not all in one
    assert (rank_histogram(ens, truth, seed=1) == h).all()
    assert not (rank_histogram(ens, truth, seed=2) == h).all()


def test_kept_dims_give_one_histogram_each_and_datasets_per_variable():
    ens, truth = _fields(spread=1.0, n_time=4)
    h = rank_histogram(ens, truth, dims=["lat", "lon"])
    assert h.dims == ("rank", "time") and (h.sum("rank") == 100).all()
    hd = rank_histogram(xr.Dataset({"a": ens}), xr.Dataset({"a": truth}))
    assert int(hd["a"].sum()) == truth.size


def test_bad_arguments_name_the_argument_and_the_fix():
    ens, truth = _fields(spread=1.0, n_time=2)
    with pytest.raises(ArgumentError, match=r"member_dim: 'number'.*member_dim="):
        rank_histogram(ens, truth, member_dim="number")
    with pytest.raises(ArgumentError, match="truth: has the ensemble dimension"):
        rank_histogram(ens, ens)
    with pytest.raises(ArgumentError, match="dims: \\['level'\\]"):
        rank_histogram(ens, truth, dims=["level"])
    with pytest.raises(ArgumentError, match="ensemble: expected an xarray"):
        rank_histogram(ens.values, truth)
    with pytest.raises(ArgumentError, match="seed"):
        rank_histogram(ens, truth, seed=-1)
