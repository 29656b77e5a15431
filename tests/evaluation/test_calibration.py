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
