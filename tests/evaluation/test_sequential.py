"""The sequential (reinitialised) experiment: cycle wiring, lead alignment, baselines, CLI.

A Gaussian "world" (smooth random fields, exact Gaussian prior) and a stand-in emulator whose
forecast is the coarsened truth at the valid time (a perfect model) make the expected behaviour
analytic: with a perfect forecast the reconstruction must track the truth at every lead, the
reinitialised run must equal the free run (the forecast ignores its initial state), and the
restart states must be coarsened analyses of the previous cycle.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.evaluation.test_suite import N_MODES, gaussian_world
from xdiffsr import GaussianPrior
from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.cycling import sequential_experiment
from xdiffsr.evaluation.metrics import rmse
from xdiffsr.evaluation.sequential import evaluate_sequential, sequential_markdown
from xdiffsr.osse import coarsen

HAS_DINOSAUR = importlib.util.find_spec("dinosaur") is not None
FAST = dict(members=4, steps=10, guidance="mmps", cg_iters=10, coarse_grid=(8, 16), seed=3,
            figures=False)


class PerfectEmulator:
    """Forecasts = the truth coarsened to 8 x 16 at each valid time, whatever the initial state.

    Records every initial state it is given (the restarts of the sequential experiment).
    """

    every = pd.Timedelta("6h")

    def __init__(self, truth: xr.Dataset):
        self.truth = truth
        self.inits: list[xr.Dataset] = []

    def forecast(self, init, *, lead_days, every=None):
        self.inits.append(init)
        step = pd.Timedelta(every) if every is not None else self.every
        leads = pd.to_timedelta(np.arange(int(pd.Timedelta(days=lead_days) / step) + 1) * step)
        t0 = pd.Timestamp(init["time"].values[0])
        fc = coarsen(self.truth.sel(time=t0 + leads), 8, 16)
        fc = fc.rename(time="lead_time").assign_coords(lead_time=leads)
        fc = fc.expand_dims(init_time=[t0])
        return fc.assign_coords(valid_time=fc.init_time + fc.lead_time)


@pytest.fixture(scope="module")
def world():
    train = gaussian_world(200, 1, "2000-01-01")
    truth = gaussian_world(9, 2, "2001-01-01")  # every 12 h: 4 days
    prior = GaussianPrior.fit(train, rank=2 * N_MODES)
    stations = pd.DataFrame(
        {
            "id": [f"S{i}" for i in range(12)],
            "lat": np.linspace(-60, 60, 12),
            "lon": np.linspace(10, 340, 12),
        }
    )
    return truth, prior, stations


def _rmse(table, config, lead, var="t850"):
    row = table[
        (table.configuration == config)
        & (table.lead_hours == lead)
        & (table.variable == var)
        & (table.metric == "rmse")
    ]
    assert len(row) == 1
    return float(row["value"].iloc[0])


def test_perfect_forecast_is_tracked_at_every_lead(world, tmp_path):
    truth, prior, stations = world
    emu = PerfectEmulator(truth)
    table = evaluate_sequential(
        truth,
        model=prior,
        stations=stations,
        emulator=emu,
        days=2,
        configurations=("emulator", "IGRA+emulator", "IGRA+emulator reinit", "IGRA"),
        out=tmp_path,
        **FAST,
    )
    assert table.attrs["start"] == "2001-01-01 00:00:00"
    assert sorted(set(table["lead_hours"])) == [12.0, 24.0, 36.0, 48.0]
    assert set(table["configuration"]) == {
        "emulator",
        "IGRA+emulator",
        "IGRA+emulator reinit",
        "IGRA",
        "forecast",
        "persistence",
    }
    assert np.isfinite(table["value"]).all()
    start = truth["t850"].sel(time="2001-01-01T00")
    for lead in (12, 24, 36, 48):
        valid = pd.Timestamp("2001-01-01") + pd.Timedelta(hours=lead)
        # persistence: the truth at the start scored against the truth at the valid time
        expect = float(rmse(start, truth["t850"].sel(time=valid), dims=("lat", "lon")))
        assert _rmse(table, "persistence", lead) == pytest.approx(expect, rel=1e-6)
        # a perfect 8 x 16 forecast of this smooth world beats persistence by far (a forecast
        # paired with the wrong valid time would not)
        assert _rmse(table, "emulator", lead) < 0.25 * expect
        # the forecast ignores its initial state, so restarting it changes nothing
        assert _rmse(table, "IGRA+emulator reinit", lead) == pytest.approx(
            _rmse(table, "IGRA+emulator", lead), rel=1e-5
        )
    assert (tmp_path / "sequential.csv").exists()
    md = (tmp_path / "sequential.md").read_text()
    assert "### rmse t850 (K)" in md and "| 0.5 d | 1 d | 1.5 d | 2 d |" in md
    assert "### crps, mean over cycles" in md


def test_restarts_are_coarsened_analyses_of_the_previous_cycle(world):
    truth, prior, stations = world
    emu = PerfectEmulator(truth)
    evaluate_sequential(
        truth,
        model=prior,
        stations=stations,
        emulator=emu,
        days=1.5,
        configurations=("IGRA+emulator reinit",),
        baselines=(),
        **FAST,
    )
    # one free forecast, then one per cycle of the sequential experiment
    assert len(emu.inits) == 1 + 3
    first = emu.inits[0]
    xr.testing.assert_allclose(
        first, coarsen(truth.sel(time=["2001-01-01T00"]), 8, 16), rtol=1e-6
    )
    xr.testing.assert_identical(emu.inits[1], first)  # the first cycle starts from it too
    for k, init in enumerate(emu.inits[2:], start=1):
        valid = pd.Timestamp("2001-01-01") + k * pd.Timedelta("12h")
        assert pd.Timestamp(init["time"].values[0]) == valid
        exact = coarsen(truth.sel(time=[valid]), 8, 16)
        err = float(np.sqrt(((init["t850"] - exact["t850"]) ** 2).mean()))
        spread = float(exact["t850"].std())
        assert 0 < err < 0.1 * spread  # an analysis close to the truth, but not the truth


def test_bad_arguments_name_the_fix(world):
    truth, prior, stations = world
    emu = PerfectEmulator(truth)
    kw = dict(model=prior, stations=stations, emulator=emu, **FAST)
    with pytest.raises(ArgumentError, match="cycle"):
        evaluate_sequential(truth, cycle="9h", **kw)
    with pytest.raises(ArgumentError, match="cg_iters"):  # SamplerSettings, before any work
        evaluate_sequential(truth, cg_iter=3, **kw)
    with pytest.raises(ArgumentError, match="days"):
        evaluate_sequential(truth, days=1.25, **kw)
    with pytest.raises(ArgumentError, match="start"):
        evaluate_sequential(truth, start="2001-01-03", days=3, **kw)
    with pytest.raises(ArgumentError, match="longer truth"):
        evaluate_sequential(truth, days=7, **kw)
    with pytest.raises(ArgumentError, match="configurations"):
        evaluate_sequential(truth, configurations=("LR",), **kw)


def test_markdown_lays_out_leads_as_columns():
    rows = [
        dict(configuration=c, weight=1.0, lead_hours=h, valid_time=None, variable="t850",
             units="K", metric="rmse", value=v)
        for c, vals in (("a", (1.0, 2.0)), ("b", (3.0, 4.0)))
        for h, v in zip((12.0, 24.0), vals)
    ]
    md = sequential_markdown(pd.DataFrame(rows), variables=("t850",), metrics=("rmse",))
    assert "| configuration | 0.5 d | 1 d |" in md
    assert "| a | 1 | 2 |" in md and "| b | 3 | 4 |" in md
    assert "| a | 1.5 |" in md  # mean over cycles


@pytest.mark.skipif(
    not HAS_DINOSAUR, reason="the emulator needs dinosaur (pip install 'xdiffsr[osse]')"
)
def test_cli_sequential_with_the_dynamical_core(tmp_path, monkeypatch):
    """``xdiffsr sequential`` end to end: packaged states 12 h apart, T21 core, one cycle."""
    from xdiffsr.__main__ import main
    from xdiffsr.evaluation import scores
    from xdiffsr.evaluation.datasets import load_heldout

    truth = load_heldout()
    truth.to_netcdf(tmp_path / "truth.nc")
    prior = GaussianPrior.fit(truth[["t850", "u500", "sp"]], rank=1)
    monkeypatch.setattr(scores, "load_model", lambda name: prior)
    pd.DataFrame(
        {"id": ["A", "B", "C"], "lat": [45.0, 0.0, -30.0], "lon": [10.0, 200.0, 300.0]}
    ).to_csv(tmp_path / "st.csv", index=False)
    rc = main(
        [
            "sequential",
            "--truth",
            str(tmp_path / "truth.nc"),
            "--stations",
            str(tmp_path / "st.csv"),
            "--out",
            str(tmp_path / "o"),
            "--days",
            "0.5",
            "--members",
            "2",
            "--steps",
            "3",
            "--cg-iters",
            "1",
            "--emulator-layers",
            "6",
            "--emulator-dt-minutes",
            "60",
        ]
    )
    assert rc == 0
    out = pd.read_csv(tmp_path / "o" / "sequential.csv")
    assert set(out["configuration"]) >= {"emulator", "IGRA+emulator", "IGRA+emulator reinit"}
    assert set(out["lead_hours"]) == {12.0}
    assert np.isfinite(out["value"]).all()
    assert (tmp_path / "o" / "sequential_t850.png").stat().st_size > 1000


def test_sequential_experiment_cycle_must_fit_the_emulator(world):
    truth, _prior, _stations = world
    emu = PerfectEmulator(truth)
    init = coarsen(truth.isel(time=[0]), 8, 16)
    with pytest.raises(ArgumentError, match="cycle"):
        sequential_experiment(emu, init, lambda bg, t: bg, days=1, cycle="9h")
    with pytest.raises(ArgumentError, match="days"):
        sequential_experiment(emu, init, lambda bg, t: bg, days=0.75, cycle="12h")
    out = sequential_experiment(emu, init, lambda bg, t: bg, days=1, cycle="12h")
    assert list(pd.DatetimeIndex(out["time"].values).hour) == [12, 0]
