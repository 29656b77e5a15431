"""Column (satellite-like) observations: weighting functions and the column operator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import erf

from xdiffsr.errors import ArgumentError, ObservationError
from xdiffsr.grid import Grid
from xdiffsr.models.prior import Prior
from xdiffsr.observations.column import (
    DEFAULT_CHANNEL_ERROR_STD,
    ColumnObservations,
    WeightingFunctions,
    column_levels,
)

LEV = np.array([850.0, 500.0, 250.0])
LAT = -78.75 + 22.5 * np.arange(8)
LON = 22.5 * np.arange(16)


def prior(variables=("z500", "t250", "t850", "t500")) -> Prior:
    C = len(variables)
    return Prior(list(variables), {}, Grid(LAT, LON), np.zeros(C), np.ones(C))


def truncated_gaussian_mean(p0: float, width: float) -> float:
    """Mean of ln p under the Gaussian kernel truncated to [ln 250, ln 850] (closed form)."""
    lo, hi, mu = np.log(250.0), np.log(850.0), np.log(p0)
    a, b = (lo - mu) / width, (hi - mu) / width
    phi = lambda x: np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)  # noqa: E731
    Phi = lambda x: 0.5 * (1 + erf(x / np.sqrt(2)))  # noqa: E731
    return mu + width * (phi(a) - phi(b)) / (Phi(b) - Phi(a))


@pytest.mark.parametrize("width", [0.25, 0.4, 1.0])
def test_gaussian_weights_integrate_a_profile_linear_in_log_p_exactly(width):
    peaks = {"a": 800.0, "b": 500.0, "c": 300.0, "d": 150.0}  # d peaks above the column
    W = WeightingFunctions.gaussian(peaks, width=width).matrix(LEV)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-14)
    assert (W >= 0).all()
    T = 210.0 + 12.0 * np.log(LEV)  # linear in ln p
    want = [210.0 + 12.0 * truncated_gaussian_mean(p, width) for p in peaks.values()]
    np.testing.assert_allclose(W @ T, want, rtol=0, atol=1e-10)


def test_callable_and_array_weights_and_level_order():
    # a constant kernel: W is the trapezoid rule in ln p, normalised
    W = WeightingFunctions.from_callables({"flat": lambda p: np.ones_like(p)}).matrix(LEV)
    s = np.log(LEV)
    trap = np.array([s[0] - s[1], s[0] - s[2], s[1] - s[2]]) / 2 / (s[0] - s[2])
    np.testing.assert_allclose(W[0], trap, atol=1e-14)
    # levels in another order give the same weights per level
    W2 = WeightingFunctions.gaussian().matrix(LEV[::-1])
    np.testing.assert_allclose(W2[:, ::-1], WeightingFunctions.gaussian().matrix(LEV))
    arr = WeightingFunctions.from_array([[0.2, 0.3, 0.5]], ["x"], [250, 500, 850])
    np.testing.assert_allclose(arr.matrix(LEV), [[0.5, 0.3, 0.2]])
    with pytest.raises(ArgumentError, match="model's levels"):
        arr.matrix([850.0, 700.0, 250.0])
    with pytest.raises(ArgumentError, match="integrates to"):
        WeightingFunctions.from_callables({"z": lambda p: np.zeros_like(p)}).matrix(LEV)
    with pytest.raises(ArgumentError, match="width"):
        WeightingFunctions.gaussian(width=0)


def test_column_levels_picks_temperature_levels():
    idx, lev = column_levels(["z500", "t250", "t850", "t500"])
    assert idx == [2, 3, 1] and lev.tolist() == [850.0, 500.0, 250.0]
    with pytest.raises(ArgumentError, match=">= 2 pressure levels"):
        column_levels(["t850", "z500"])


def test_column_operator_on_a_state_matches_weights_times_profile():
    p = prior()
    g = np.random.default_rng(0)
    state = g.normal(250, 10, size=(4, 8, 16))
    wf = WeightingFunctions.gaussian()
    W = wf.matrix(LEV)
    # footprints on grid nodes: interpolation is exact there
    rows = pd.DataFrame({"time": pd.Timestamp("2000-01-01"), "lat": LAT[[1, 4, 6]],
                         "lon": LON[[0, 5, 15]], "channel": ["ch1", "ch2", "ch3"],
                         "value": 250.0})
    src = ColumnObservations(rows)
    block = src.at_time(np.datetime64("2000-01-01T00:30"), p)
    y = block.matrix @ state.ravel()
    ilev = [2, 3, 1]  # t850, t500, t250 in the prior's order
    want = [W[k] @ state[ilev, i, j] for k, (i, j) in enumerate([(1, 0), (4, 5), (6, 15)])]
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(block.variance, DEFAULT_CHANNEL_ERROR_STD**2)
    assert block.var_index.tolist() == [3, 3, 3]  # heaviest: t500 (the widest hat function)
    assert src.at_time(np.datetime64("2000-01-01T02"), p) is None  # outside +-1 h


def test_column_observations_errors_and_validation():
    base = pd.DataFrame({"time": ["2000-01-01"] * 3, "lat": [0.0, 10, 20], "lon": [0.0, 1, 2],
                         "channel": ["ch1", "ch2", "ch3"], "value": [250.0, np.nan, 240.0],
                         "error": [1.0, 1.0, 2.0]})
    src = ColumnObservations(base)
    assert len(src.data) == 2  # the NaN value is dropped
    block = src.at_time(np.datetime64("2000-01-01"), prior())
    np.testing.assert_allclose(block.variance, [1.0, 4.0])
    src2 = ColumnObservations(base.drop(columns="error"), sigma_y={"ch1": 0.09})
    np.testing.assert_allclose(src2._variance(src2.data), [0.09, DEFAULT_CHANNEL_ERROR_STD**2])
    with pytest.raises(ObservationError, match="no weighting function"):
        ColumnObservations(base.assign(channel="ch9"))
    with pytest.raises(ObservationError, match="lack columns"):
        ColumnObservations(base.drop(columns="channel"))
    with pytest.raises(ObservationError, match="outside"):
        ColumnObservations(base.assign(lat=[0.0, 95.0, 0.0]))
    with pytest.raises(ArgumentError, match="WeightingFunctions"):
        ColumnObservations(base, weighting={"ch1": 800})


def test_column_observations_pickle_for_dask_workers():
    """The default Gaussian weighting functions are picklable (no lambdas): a source can be sent
    to a process or a distributed worker, and gives the same operator there."""
    import pickle

    base = pd.DataFrame({"time": ["2000-01-01"] * 2, "lat": [0.0, 10], "lon": [0.0, 1],
                         "channel": ["ch1", "ch3"], "value": [250.0, 240.0]})
    src = ColumnObservations(base)
    back = pickle.loads(pickle.dumps(src))
    t = np.datetime64("2000-01-01")
    a, b = src.at_time(t, prior()), back.at_time(t, prior())
    np.testing.assert_array_equal(a.matrix.toarray(), b.matrix.toarray())
    np.testing.assert_array_equal(a.y, b.y)
