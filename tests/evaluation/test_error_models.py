"""Error models learned on validation times: exact coarse fields get small errors, a drifting
forecast gets errors that grow with lead, and both reach the reconstructions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.evaluation.test_suite import N_MODES, gaussian_world
from tests.osse.test_forecast_error import DRIFT, DriftingEmulator
from xdiffsr import GaussianPrior
from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.error_models import ErrorModels, validation_times
from xdiffsr.evaluation.sequential import evaluate_sequential
from xdiffsr.evaluation.suite import evaluate
from xdiffsr.observations.error_model import DEFAULT_ERROR_STD

STATIONS = pd.DataFrame(
    {"id": [f"S{i}" for i in range(12)], "lat": np.linspace(-60, 60, 12),
     "lon": np.linspace(10, 340, 12)}
)
# moment matching with the Jacobian: the exact posterior of the Gaussian prior these tests use
FAST = dict(members=8, steps=10, guidance="mmps", cg_iters=10, seed=0, figures=False)


@pytest.fixture(scope="module")
def prior():
    return GaussianPrior.fit(gaussian_world(200, 1, "2000-01-01"), rank=2 * N_MODES)


def test_validation_times_avoid_targets_and_need_a_start():
    truth = gaussian_world(10, 2, "2001-01-01")
    targets = truth["time"].values[[2, 5]]
    val = validation_times(truth, targets, 4, before=pd.Timedelta("12h"))
    assert len(val) == 4 and not val.isin(targets).any()
    assert pd.Timestamp(truth["time"].values[0]) not in val  # nothing 12 h before it
    with pytest.raises(ArgumentError, match="calibrate=20"):
        validation_times(truth, targets, 20)


def test_evaluate_calibrate_shrinks_the_errors_of_an_exact_coarse_field(prior, tmp_path):
    """The coarse field is the truth's exact conservative average: Desroziers must fit LR
    errors far below the default ones (1 K, 2 m/s), learned on times that are not scored."""
    truth = gaussian_world(8, 2, "2001-01-01")
    table = evaluate(truth, model=prior, stations=STATIONS, configurations=("LR",),
                     weights=(1.0,), baselines=(), times=2, calibrate=3, coarse_grid=(4, 8),
                     out=tmp_path, **FAST)
    errors = pd.DataFrame(table.attrs["error_models"])
    lr = errors[errors["source"] == "LR"].set_index("variable")["std"]
    assert lr["t850"] < 0.5 * DEFAULT_ERROR_STD["t"]
    assert lr["u850"] < 0.5 * DEFAULT_ERROR_STD["u"]
    assert table.attrs["settings"]["calibrate"] == 3
    assert (tmp_path / "error_models.csv").exists()
    assert np.isfinite(table["value"]).all()


def test_sequential_calibrate_learns_the_error_growth(prior):
    """A forecast whose t850 drifts by DRIFT K per hour: the learned forecast error is DRIFT x
    lead at every lead, and the reconstructions stay finite with per-lead errors."""
    truth = gaussian_world(30, 3, "2001-01-01")  # every 12 h: 15 days
    emu = DriftingEmulator(truth)
    table = evaluate_sequential(
        truth, model=prior, stations=STATIONS, emulator=emu, days=2, cycle="12h",
        start="2001-01-06", configurations=("emulator", "IGRA+emulator reinit"),
        baselines=(), calibrate=3, coarse_grid=(8, 16), **FAST,
    )
    errors = pd.DataFrame(table.attrs["error_models"])
    fc = errors[(errors["source"] == "emulator") & (errors["variable"] == "t850")]
    np.testing.assert_allclose(fc["std"], DRIFT * fc["lead_hours"], atol=1e-6)
    assert np.isfinite(table["value"]).all()


def test_error_models_without_fits_leave_sources_alone(prior):
    models = ErrorModels()
    data = gaussian_world(1, 0, "2001-01-01")
    assert models.source("LR", data, prior) is data
    assert models.sigma_of("emulator", "12h") is None
    assert models.table().empty


def test_source_variances_read_a_scaled_error_column(prior):
    """Calibrated radiosondes keep their errors in the ``error`` column (sigma_y None): the
    variances handed to the targets must be those, not the defaults."""
    from xdiffsr import PointObservations
    from xdiffsr.evaluation.calibration import scale_errors
    from xdiffsr.evaluation.error_models import source_variances

    df = pd.DataFrame({"time": pd.Timestamp("2001-01-01"), "lat": [0.0, 10.0], "lon": [0.0, 20.0],
                       "variable": ["t850", "u850"], "value": [270.0, 3.0], "error": [2.0, 1.0],
                       "units": ["K", "m s-1"]})
    src = scale_errors(PointObservations(df), {"t850": 4.0}, prior)
    got = source_variances(src, ["t850", "u850"])
    assert got == pytest.approx({"t850": 16.0, "u850": 1.0})
    assert source_variances(PointObservations(df, sigma_y=9.0), ["t850"]) == {"t850": 9.0}


def test_forecast_variance_is_inflated_for_correlated_errors():
    """ErrorModels.sigma_of("emulator") is RMSE^2 x (N / N_eff), both interpolated in lead."""
    leads = pd.to_timedelta(["0h", "12h", "24h"])
    rmse = xr.Dataset({"t850": ("lead_time", [1.0, 2.0, 3.0])}, coords={"lead_time": leads})
    infl = xr.Dataset({"t850": ("lead_time", [1.0, 5.0, 9.0])}, coords={"lead_time": leads})
    plain = ErrorModels(forecast=rmse).sigma_of("emulator", "18h")
    inflated = ErrorModels(forecast=rmse, inflation=infl).sigma_of("emulator", "18h")
    assert plain["t850"] == pytest.approx(2.5**2)
    assert inflated["t850"] == pytest.approx(2.5**2 * 7.0)
    table = ErrorModels(forecast=rmse, inflation=infl).table()
    assert table["inflation"].tolist() == [1.0, 5.0, 9.0]
