"""Error models learned from data: Desroziers' per-source inflation recovers the true sigma_y."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
from tests.reconstruct.test_diagnostics import _obs, _truths
from tests.test_accessor import _covariance, _mean_ds
from xdiffsr.evaluation.calibration import calibrate, scale_errors

TIMES = pd.date_range("2021-01-01", periods=6, freq="6h")


@pytest.fixture(scope="module")
def prior():
    return xdiffsr.GaussianPrior(_mean_ds(), _covariance())


@pytest.mark.parametrize("start", [1000.0, 10.0])
def test_calibrate_recovers_true_sigma_y(prior, start):
    """Observation errors of variance 100 K^2 (prior variance 25 K^2): from a 10x wrong start,
    the fitted variance is within 25 % of 100."""
    df = _obs(_truths(len(TIMES), 3), 100.0, n=40, seed=4, times=TIMES)
    src = xdiffsr.PointObservations(df, sigma_y=start, name="t850")
    sources, history = calibrate(
        xr.Dataset(coords={"time": TIMES}), [src], prior,
        iterations=6, members=32, steps=12, guidance="mmps", cg_iters=10,
    )
    fitted = sources[0].sigma_y["t850"]
    assert fitted == pytest.approx(100.0, rel=0.25), history
    assert history["total"].iloc[-1] * start == pytest.approx(fitted)
    # the calibrated source is usable as is
    out = xr.Dataset(coords={"time": TIMES[:1]}).diffsr.super_resolve(
        sources, model=prior, members=2, steps=3
    )
    assert np.isfinite(out["t850"].values).all()


def test_scale_errors_error_column(prior):
    df = _obs(_truths(1, 0), 1.0, n=5, times=TIMES[:1]).assign(error=2.0)
    src = scale_errors(xdiffsr.PointObservations(df), 4.0, prior)
    b = src.at_time(TIMES.values[0], prior)
    np.testing.assert_allclose(b.variance, 16.0)


def _two_variable_obs(truths, var_t: float, var_z: float, n: int = 40, seed: int = 7):
    """t850 and z500 at ``n`` grid centres per time, noise variances ``var_t`` and ``var_z``."""
    from tests.test_accessor import LAT, LON

    g = np.random.default_rng(seed)
    rows = []
    for k, t in enumerate(TIMES):
        for c, (name, var, units) in enumerate([("t850", var_t, "K"), ("z500", var_z, "m2 s-2")]):
            i, j = np.unravel_index(g.choice(128, n, replace=False), (8, 16))
            val = truths[k, c, i, j] + g.normal(0, np.sqrt(var), n)
            rows.append(pd.DataFrame({"time": t, "lat": LAT[i], "lon": LON[j], "variable": name,
                                      "value": val, "units": units}))
    return pd.concat(rows, ignore_index=True)


def test_calibrate_by_variable_fits_each_variable(prior):
    """One source observing t850 (true error variance 100 K^2, prior 25) and z500 (true 4e4
    m4 s-4, prior 1.6e5), assumed 4x too small / too large: ``by="variable"`` recovers each within
    30 %, one factor per source cannot (the true ratios differ by 16x)."""
    df = _two_variable_obs(_truths(len(TIMES), 5), 100.0, 4.0e4)
    src = xdiffsr.PointObservations(df, sigma_y={"t850": 25.0, "z500": 1.6e5}, name="mixed")
    opts = dict(iterations=6, members=32, steps=12, guidance="mmps", cg_iters=10)
    ds = xr.Dataset(coords={"time": TIMES})
    sources, history = calibrate(ds, [src], prior, by="variable", **opts)
    assert sources[0].sigma_y["t850"] == pytest.approx(100.0, rel=0.3), history
    assert sources[0].sigma_y["z500"] == pytest.approx(4.0e4, rel=0.3), history
    assert set(history["variable"]) == {"t850", "z500"}
    one, _ = calibrate(ds, [src], prior, by="source", **{**opts, "iterations": 3})
    errs = [abs(one[0].sigma_y[v] / true - 1) for v, true in [("t850", 100.0), ("z500", 4.0e4)]]
    assert max(errs) > 0.5


def test_scale_errors_per_variable(prior):
    src = xdiffsr.PointObservations(_obs(_truths(1, 0), 1.0, n=5, times=TIMES[:1]), sigma_y=4.0)
    out = scale_errors(src, {"t850": 2.0}, prior)
    assert out.sigma_y["t850"] == pytest.approx(8.0)
    assert out.sigma_y["z500"] == pytest.approx(4.0)
    with pytest.raises(xdiffsr.ArgumentError, match="factor"):
        scale_errors(src, {"t850": -1.0}, prior)
    with pytest.raises(xdiffsr.ArgumentError, match="by="):
        calibrate(xr.Dataset(coords={"time": TIMES[:1]}), [src], prior, by="station")


def _column_source(**kw):
    from xdiffsr.observations.column import ColumnObservations

    df = pd.DataFrame({"time": TIMES[0], "lat": [0.0, 10.0, -20.0], "lon": [20.0, 40.0, 90.0],
                       "channel": ["ch1", "ch2", "ch3"], "value": [250.0, 240.0, 230.0]})
    return ColumnObservations(df, **kw)


@pytest.mark.parametrize("kw", [{}, {"sigma_y": 2.0}, {"sigma_y": {"ch1": 3.0}}])
@pytest.mark.parametrize("factor", [4.0, {"t850": 4.0, "t500": 4.0, "t250": 4.0}])
def test_a_calibrated_column_source_uses_its_factor(kw, factor):
    from tests.observations.test_column import prior as column_prior

    p = column_prior()
    src = _column_source(**kw)
    before = src.at_time(TIMES.values[0], p).variance
    after = scale_errors(src, factor, p).at_time(TIMES.values[0], p).variance
    np.testing.assert_allclose(after, 4.0 * before)
    np.testing.assert_allclose(src.scaled(factor, p).at_time(TIMES.values[0], p).variance, after)


def test_column_source_validates_its_options_as_the_others():
    for bad in ({"sigma_y": -1.0}, {"gamma": float("nan")}, {"method": "nearest"},
                {"tolerance": "soon"}, {"tolerance": "-1h"}, {"weight": -2.0}):
        with pytest.raises(xdiffsr.ArgumentError):
            _column_source(**bad)
