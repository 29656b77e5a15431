"""Baselines, the evaluation suite and its command line.

References are analytic (smooth fields, time means, Gaussian posteriors); no expected number is
taken from the code's own output.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xdiffsr import GaussianPrior
from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.baselines import (
    climatology_baseline,
    interpolation_baseline,
    optimal_interpolation_baseline,
    unguided_baseline,
)
from xdiffsr.evaluation.metrics import latitude_weights
from xdiffsr.evaluation.suite import CONFIGURATIONS, METRICS, evaluate, results_markdown
from xdiffsr.grid import cell_centre_grid
from xdiffsr.osse import coarsen

HAS_DINOSAUR = importlib.util.find_spec("dinosaur") is not None


def grid_ds(nlat: int, nlon: int, fields: dict, times=None) -> xr.Dataset:
    lat, lon = cell_centre_grid(nlat, nlon)
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    data = {}
    for name, (f, units) in fields.items():
        arr = f(la, lo)
        dims = ("lat", "lon") if arr.ndim == 2 else ("time", "lat", "lon")
        data[name] = (dims, arr, {"units": units})
    coords = {
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    if times is not None:
        coords["time"] = ("time", pd.DatetimeIndex(times))
    return xr.Dataset(data, coords=coords)


def smooth(la, lo):
    """A smooth field resolved by a 16 x 32 grid (zonal wavenumbers 1 and 2)."""
    wave = 3 * np.cos(la) ** 2 * np.sin(2 * lo) + 2 * np.sin(la) * np.cos(lo)
    return 280 + 20 * np.cos(la) + wave


# ------------------------------------------------------------------------------- baselines
def test_bilinear_bicubic_of_a_smooth_field_are_close_to_it():
    fine = grid_ds(64, 128, {"t850": (smooth, "K")})
    coarse = grid_ds(16, 32, {"t850": (smooth, "K")})  # point values at the coarse centres
    poles = np.abs(fine["lat"]) < 80  # constant extrapolation beyond the last coarse row
    errs = {}
    for method in ("bilinear", "bicubic"):
        up = interpolation_baseline(coarse, fine, method)
        assert up["t850"].shape == (64, 128)
        errs[method] = float(np.abs(up["t850"] - fine["t850"]).where(poles).max())
    assert errs["bilinear"] < 1.0  # the field spans 20 K; 11.25 deg spacing
    assert errs["bicubic"] < 0.5 * errs["bilinear"]  # third-order accuracy beats first order


def test_conservative_upsampling_preserves_the_area_mean_and_range():
    fine = grid_ds(64, 128, {"t850": (smooth, "K")})
    coarse = coarsen(fine)
    up = interpolation_baseline(coarse, fine, "conservative")["t850"]
    w_f, w_c = latitude_weights(fine["lat"]), latitude_weights(coarse["lat"])
    mean_f = float(up.weighted(w_f).mean())
    mean_c = float(coarse["t850"].weighted(w_c).mean())
    assert mean_f == pytest.approx(mean_c, rel=1e-10)
    assert float(up.min()) >= float(coarse["t850"].min()) - 1e-9
    assert float(up.max()) <= float(coarse["t850"].max()) + 1e-9
    # piecewise constant: far fewer distinct values per row than a smooth interpolant
    assert len(np.unique(np.round(up.isel(lat=32).values, 9))) <= 2 * 32


def test_interpolation_baseline_rejects_unknown_method():
    fine = grid_ds(64, 128, {"t850": (smooth, "K")})
    with pytest.raises(ArgumentError, match="nearest"):
        interpolation_baseline(coarsen(fine), fine, "nearest")


def test_climatology_is_the_time_mean_and_by_hour_the_hourly_mean():
    rng = np.random.default_rng(0)
    times = pd.date_range("2000-01-01", periods=8, freq="6h")
    vals = rng.normal(size=(8, 4, 8))
    train = grid_ds(4, 8, {"t850": (lambda la, lo: vals, "K")}, times)
    clim = climatology_baseline(train)
    np.testing.assert_allclose(clim["t850"], vals.mean(0))
    targets = pd.DatetimeIndex(["2001-01-01T06", "2001-01-02T18"])
    out = climatology_baseline(train, targets, by_hour=True)
    assert out["t850"].dims == ("time", "lat", "lon")
    np.testing.assert_allclose(out["t850"][0], vals[1::4].mean(0))
    np.testing.assert_allclose(out["t850"][1], vals[3::4].mean(0))
    flat = climatology_baseline(train, targets)
    np.testing.assert_allclose(flat["t850"][1], vals.mean(0))
    with pytest.raises(ArgumentError, match="hour"):
        climatology_baseline(train, ["2001-01-01T03"], by_hour=True)


# ---------------------------------------------------------------- a Gaussian "truth" world
N_MODES = 6


def _modes(la, lo):
    """Smooth orthogonal-ish patterns (time-independent), shape (N_MODES, lat, lon)."""
    return np.stack(
        [
            np.cos(la) * np.cos(lo),
            np.cos(la) * np.sin(lo),
            np.cos(la) ** 2 * np.cos(2 * lo),
            np.cos(la) ** 2 * np.sin(2 * lo),
            np.sin(la) * np.cos(la),
            np.sin(2 * la) * np.cos(3 * lo) * np.cos(la),
        ]
    )


def gaussian_world(n_times: int, seed: int, start: str) -> xr.Dataset:
    """Samples of a Gaussian process spanned by N_MODES patterns: t850 (K) and u850 (m/s)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_times, N_MODES))
    b = rng.normal(size=(n_times, N_MODES))
    times = pd.date_range(start, periods=n_times, freq="12h")

    def t850(la, lo):
        return 270 + 15 * np.cos(la) + 4 * np.einsum("tk,kij->tij", a, _modes(la, lo))

    def u850(la, lo):
        return 5 * np.cos(la) + 3 * np.einsum("tk,kij->tij", 0.6 * a + 0.8 * b, _modes(la, lo))

    return grid_ds(16, 32, {"t850": (t850, "K"), "u850": (u850, "m s-1")}, times)


@pytest.fixture(scope="module")
def world():
    train = gaussian_world(200, 1, "2000-01-01")
    truth = gaussian_world(3, 2, "2001-01-01")
    prior = GaussianPrior.fit(train, rank=2 * N_MODES)
    stations = pd.DataFrame(
        {
            "id": [f"S{i}" for i in range(12)],
            "lat": np.linspace(-60, 60, 12),
            "lon": np.linspace(10, 340, 12),
        }
    )
    return train, truth, prior, stations


FAST = dict(members=8, steps=12, guidance="mmps", cg_iters=10, coarse_grid=(4, 8), seed=0)


def test_evaluate_table_structure_and_sanity(world, tmp_path):
    train, truth, prior, stations = world
    table = evaluate(
        truth,
        model=prior,
        train=train,
        stations=stations,
        configurations=("LR", "IGRA", "IGRA+LR"),
        weights=(0.5, 2.0),
        out=tmp_path,
        figures=False,
        **FAST,
    )
    assert list(table.columns) == [
        "configuration",
        "weight",
        "variable",
        "units",
        "metric",
        "value",
    ]
    assert np.isfinite(table["value"]).all() and (table["value"] >= 0).all()
    runs = table[["configuration", "weight"]].drop_duplicates()
    # LR and IGRA+LR per weight, IGRA once, six baselines
    assert len(runs) == 2 + 1 + 2 + 6
    assert set(table["variable"]) == {"t850", "u850"}
    ens = table[table["configuration"] == "IGRA+LR"]
    assert set(ens["metric"]) == set(METRICS)
    det = table[table["configuration"] == "bicubic"]
    assert "spread_skill" not in set(det["metric"])
    # deterministic baselines: the CRPS is the mean absolute error, <= RMSE (Jensen)
    for name in ("bilinear", "bicubic", "conservative", "climatology"):
        sub = table[table["configuration"] == name].pivot(
            index="variable", columns="metric", values="value"
        )
        assert (sub["crps"] <= sub["rmse"] + 1e-9).all()
        assert sub["rmse_observed"].notna().all() and sub["rmse_unobserved"].notna().all()
    assert (tmp_path / "results.csv").exists()
    md = (tmp_path / "results.md").read_text()
    assert "| IGRA+LR (w=0.5) |" in md and "### crps" in md
    back = pd.read_csv(tmp_path / "results.csv")
    assert len(back) == len(table)


def test_lr_with_mmps_and_a_fitted_gaussian_prior_beats_climatology(world):
    """The exact Gaussian posterior given the coarse field must beat the prior mean."""
    train, truth, prior, stations = world
    table = evaluate(
        truth,
        model=prior,
        train=train,
        stations=stations,
        configurations=("LR",),
        weights=(1.0,),
        baselines=("climatology", "bicubic"),
        figures=False,
        **FAST,
    )
    rmse = table[table["metric"] == "rmse"].pivot(
        index="variable", columns="configuration", values="value"
    )
    assert (rmse["LR"] < 0.5 * rmse["climatology"]).all()
    crps = table[table["metric"] == "crps"].pivot(
        index="variable", columns="configuration", values="value"
    )
    assert (crps["LR"] < crps["climatology"]).all()


def test_optimal_interpolation_matches_the_exact_gaussian_posterior_mean(world):
    """OI through MMPS: the ensemble mean approaches mu + B H^T (H B H^T + R)^-1 (y - H mu),
    with mu and B the training mean and covariance (rank 2 N_MODES: the fit is exact)."""
    from xdiffsr.regrid import regrid_weights

    train, truth, _, _ = world
    t = truth.isel(time=[0])
    coarse = coarsen(t, 4, 8)
    ens = optimal_interpolation_baseline(
        train, [coarse], t["time"].values, rank=2 * N_MODES, members=64, steps=16, cg_iters=20
    )
    X = np.concatenate(
        [train[v].values.reshape(train.sizes["time"], -1) for v in ("t850", "u850")], axis=1
    )
    mu, B = X.mean(0), np.cov(X, rowvar=False)
    R1 = regrid_weights(t["lat"], t["lon"], coarse["lat"], coarse["lon"]).toarray()
    Hop = np.kron(np.eye(2), R1)
    err = np.repeat([1.0, 2.0], R1.shape[0]) ** 2  # nominal t (1 K) and u (2 m/s) errors
    y = np.concatenate([coarse[v].values.ravel() for v in ("t850", "u850")])
    x_a = mu + B @ Hop.T @ np.linalg.solve(Hop @ B @ Hop.T + np.diag(err), y - Hop @ mu)
    got = np.concatenate(
        [ens[v].isel(time=0).mean("member").values.ravel() for v in ("t850", "u850")]
    )
    prior_err = np.sqrt(np.mean((mu - x_a) ** 2))
    assert np.sqrt(np.mean((got - x_a) ** 2)) < 0.25 * prior_err


def test_unguided_baseline_is_a_prior_ensemble(world):
    train, truth, prior, _ = world
    ens = unguided_baseline(prior, truth["time"].values[:1], members=16, steps=12)
    assert ens["t850"].dims == ("time", "member", "lat", "lon")
    # prior samples: ensemble mean near the climatology relative to their spread
    spread = float(ens["t850"].std("member").mean())
    gap = float(np.abs(ens["t850"].mean("member") - train["t850"].mean("time")).mean())
    assert gap < spread


def test_evaluate_rejects_bad_arguments(world):
    _, truth, prior, stations = world
    with pytest.raises(ArgumentError, match="configurations"):
        evaluate(truth, model=prior, stations=stations, configurations=("HR",))
    with pytest.raises(ArgumentError, match="members"):
        evaluate(truth, model=prior, stations=stations, members=1)
    with pytest.raises(ArgumentError, match="weights"):
        evaluate(truth, model=prior, stations=stations, weights=(-1.0,))
    # sampler options are checked by SamplerSettings before any work
    with pytest.raises(ArgumentError, match="lambda_g"):
        evaluate(truth, model=prior, stations=stations, lamda_g=2.0)
    with pytest.raises(ArgumentError, match="lambda_g"):
        evaluate(truth, model=prior, stations=stations, lambda_g=float("nan"))
    with pytest.raises(ArgumentError, match="lead"):  # 12-hourly truth, 1-day lead: no target
        evaluate(
            truth.isel(time=[0]),
            model=prior,
            stations=stations,
            configurations=("emulator",),
            emulator=SimpleNamespace(every="6h"),
            lead="1D",
        )


def test_results_markdown_has_one_table_per_metric():
    table = pd.DataFrame(
        {
            "configuration": ["LR", "LR", "bicubic"],
            "weight": [1.0, 1.0, np.nan],
            "variable": ["t850", "t850", "t850"],
            "units": ["K"] * 3,
            "metric": ["rmse", "crps", "rmse"],
            "value": [1.5, 0.75, 2.0],
        }
    )
    md = results_markdown(table)
    assert "### rmse" in md and "### crps" in md and "spread_skill" not in md
    assert "| LR (w=1) | 1.5 |" in md and "| bicubic | 2 |" in md


# ------------------------------------------------------------------------ emulator configs
@pytest.mark.skipif(
    not HAS_DINOSAUR, reason="the emulator needs dinosaur (pip install 'xdiffsr[osse]')"
)
def test_emulator_configurations_on_the_heldout_states(tmp_path):
    """All six configurations on the packaged states with a 12-h lead (T21, 6 layers)."""
    from xdiffsr.evaluation.datasets import load_heldout
    from xdiffsr.osse import Emulator

    truth = load_heldout()
    prior = GaussianPrior.fit(truth[["t850", "u500", "sp"]], rank=1)
    stations = pd.DataFrame(
        {"id": ["A", "B", "C"], "lat": [45.0, 0.0, -30.0], "lon": [10.0, 200.0, 300.0]}
    )
    table = evaluate(
        truth,
        model=prior,
        stations=stations,
        configurations=CONFIGURATIONS,
        weights=(1.0,),
        baselines=("bicubic",),
        members=2,
        steps=3,
        cg_iters=1,
        lead="12h",
        emulator=Emulator(layers=6, dt_minutes=60),
        out=tmp_path,
        plot_variables=("t850",),
    )
    assert table.attrs["targets"] == ["2003-12-30 12:00:00"]  # the only state with a 00Z start
    assert set(table["configuration"]) == {*CONFIGURATIONS, "bicubic"}
    assert np.isfinite(table["value"]).all()
    for kind in ("maps", "spectra", "latitude", "scatter"):
        assert (tmp_path / f"{kind}_t850.png").stat().st_size > 1000


def test_cli_evaluate_tiny(world, tmp_path, monkeypatch):
    """``xdiffsr evaluate`` end to end on a truth file with a Gaussian prior at tiny size."""
    from xdiffsr.__main__ import main

    train, truth, prior, stations = world
    truth.to_netcdf(tmp_path / "truth.nc")
    train.to_netcdf(tmp_path / "train.nc")
    stations.to_csv(tmp_path / "stations.csv", index=False)
    from xdiffsr.evaluation import scores

    monkeypatch.setattr(scores, "load_model", lambda name: prior)
    rc = main(
        [
            "evaluate",
            "--truth",
            str(tmp_path / "truth.nc"),
            "--out",
            str(tmp_path / "o"),
            "--train",
            str(tmp_path / "train.nc"),
            "--stations",
            str(tmp_path / "stations.csv"),
            "--configurations",
            "LR",
            "IGRA+LR",
            "--members",
            "2",
            "--steps",
            "4",
            "--weights",
            "1",
            "--times",
            "1",
            "--coarse-grid",
            "4",
            "8",
            "--no-figures",
            "--calibrate",
            "1",
        ]
    )
    assert rc == 0
    out = pd.read_csv(tmp_path / "o" / "results.csv")
    assert {"LR", "IGRA+LR", "climatology", "optimal interpolation"} <= set(out["configuration"])
    errors = pd.read_csv(tmp_path / "o" / "error_models.csv")  # fitted on the other times
    assert {"IGRA", "LR"} <= set(errors["source"]) and (errors["std"] > 0).all()


def test_training_data_on_the_truth_grid_up_to_rounding(world):
    """Coordinates equal to rounding are aligned (not an xarray join error); others refused."""
    from xdiffsr.errors import CoordinateError

    train, truth, prior, stations = world
    nudged = train.assign_coords(lat=train["lat"] + 1e-9)
    table = evaluate(
        truth,
        model=prior,
        train=nudged,
        stations=stations,
        configurations=("LR",),
        weights=(1.0,),
        baselines=("climatology",),
        times=1,
        figures=False,
        **{**FAST, "members": 2, "steps": 4},
    )
    assert np.isfinite(table["value"]).all()
    with pytest.raises(CoordinateError, match="lat"):
        evaluate(
            truth,
            model=prior,
            train=train.isel(lat=slice(1, None)),
            stations=stations,
            configurations=("LR",),
            baselines=("climatology",),
            figures=False,
        )


def test_baselines_on_the_model_grid_score_against_a_truth_equal_to_rounding(world):
    """A truth whose coordinates differ from the model grid by rounding (e.g. a nature run
    written by another machine) is scored against the unguided and OI baselines too."""
    train, truth, prior, stations = world
    nudged = truth.assign_coords(lat=truth["lat"] + 1e-12)
    table = evaluate(
        nudged,
        model=prior,
        train=train,
        stations=stations,
        configurations=("LR",),
        weights=(1.0,),
        baselines=("unguided", "optimal interpolation"),
        times=1,
        figures=False,
        **{**FAST, "members": 2, "steps": 4},
    )
    assert {"unguided", "optimal interpolation"} <= set(table["configuration"])
    assert np.isfinite(table["value"]).all()
