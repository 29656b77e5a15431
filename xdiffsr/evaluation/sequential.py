"""The paper's sequential experiment, scored at every cycle against an OSSE truth.

Starting from the truth coarsened to 16 x 32 at ``start``, the coarse dynamical core
(:class:`xdiffsr.osse.Emulator`, the role LUCIE plays in Chakraborty et al., 2025) forecasts
``days`` ahead. At every ``cycle`` (12 h by default, so that each cycle ends at a radiosonde time)
the configurations below reconstruct the high-resolution state and are scored against the truth
valid then, giving error curves over lead time:

* ``emulator``: the free forecast alone, super-resolved (weight ``weight``).
* ``IGRA+emulator``: the free forecast and the soundings valid then.
* ``IGRA+emulator reinit``: :func:`xdiffsr.evaluation.cycling.sequential_experiment`: the
  forecast of one cycle and the soundings are super-resolved, the ensemble mean is coarsened to
  16 x 32 and the emulator restarts from it for the next cycle.
* ``IGRA``: the soundings alone (at radiosonde times).

Deterministic baselines: ``forecast`` (the emulator's free forecast interpolated bicubically to
the truth grid) and ``persistence`` (the full-resolution truth at ``start``).

References
----------
.. [1] Chakraborty, D. et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models (Sect. 4: IGRA and LUCIE, reinitialised every cycle over 7 days).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.baselines import interpolation_baseline
from xdiffsr.evaluation.cycling import analysis_cycle, sequential_experiment
from xdiffsr.evaluation.datasets import load_stations
from xdiffsr.evaluation.error_models import ErrorModels, fit_error_models, validation_times
from xdiffsr.evaluation.plot import scores_by_lead
from xdiffsr.evaluation.scores import (
    check_members,
    check_names,
    markdown_row,
    model_variables,
    resolve_model,
    score_rows,
)
from xdiffsr.models import Prior
from xdiffsr.osse import COARSE_GRID, Emulator, coarsen
from xdiffsr.osse.stations import simulate_soundings
from xdiffsr.reconstruct import super_resolve
from xdiffsr.reconstruct.settings import SamplerSettings

_DEFAULT = SamplerSettings()

__all__ = [
    "SEQUENTIAL_BASELINES",
    "SEQUENTIAL_CONFIGURATIONS",
    "evaluate_sequential",
    "sequential_markdown",
]

SEQUENTIAL_CONFIGURATIONS = ("emulator", "IGRA+emulator", "IGRA+emulator reinit", "IGRA")
SEQUENTIAL_BASELINES = ("forecast", "persistence")
_SONDE_HOURS = (0, 12)
_COLUMNS = [
    "configuration",
    "weight",
    "lead_hours",
    "valid_time",
    "variable",
    "units",
    "metric",
    "value",
]


def _valid_times(
    truth: xr.Dataset, start: Any, days: float, cycle: pd.Timedelta, every: pd.Timedelta
) -> tuple[pd.Timestamp, pd.DatetimeIndex]:
    """Start and the valid times of the cycles, all checked against the truth's times."""
    if cycle <= pd.Timedelta(0) or cycle % every:
        raise ArgumentError(
            f"cycle={cycle}: must be a positive multiple of the emulator's output interval {every}"
        )
    n = pd.Timedelta(days=float(days)) / cycle
    if n < 1 or n != int(n):
        raise ArgumentError(
            f"days={days!r}: must be a positive whole number of {cycle} cycles; change days or "
            "cycle"
        )
    times = pd.DatetimeIndex(truth["time"].values)
    span = int(n) * cycle
    if start is None:
        ok = times[(times + span).isin(times) & times.hour.isin(_SONDE_HOURS)]
        if ok.empty:
            raise ArgumentError(
                f"truth: no 00 or 12 UTC time has a truth state {span} later "
                f"({times.size} times from {times[0]} to {times[-1]}); pass a longer truth or "
                "fewer days"
            )
        start = ok[0]
    start = pd.Timestamp(start)
    valid = pd.DatetimeIndex([start + k * cycle for k in range(1, int(n) + 1)])
    missing = [str(t) for t in valid.insert(0, start) if t not in times]
    if missing:
        raise ArgumentError(
            f"start={start}: the truth must hold {start} and every {cycle} up to {valid[-1]} "
            f"(missing: {missing[:5]}); pick another start or a longer truth"
        )
    return start, valid


@dataclass
class _Setup:
    """The truth at the valid times, the soundings, the initial state and the free forecast."""

    truth: xr.Dataset  # model variables at the valid times
    variables: list[str]
    stations: pd.DataFrame
    start: pd.Timestamp
    valid: pd.DatetimeIndex
    sonde_times: pd.DatetimeIndex
    sondes: pd.DataFrame
    init: xr.Dataset  # coarsened truth at start, every variable
    forecast: xr.Dataset  # free forecast at the valid times
    errors: ErrorModels = field(default_factory=ErrorModels)  # fitted sigma_y (calibrate=)

    def forecast_source(self, t: pd.Timestamp, prior: Prior) -> Any:
        """The free forecast valid at ``t``, with the emulator's error at its lead when the
        errors were fitted (else the default errors)."""
        return self.errors.source("emulator", self.forecast.sel(time=[t]), prior, t - self.start)

    def sondes_at(self, times) -> pd.DataFrame:
        return self.sondes[self.sondes["time"].isin(pd.DatetimeIndex(np.atleast_1d(times)))]


def _prepare(
    truth, stations, variables, start, valid, days, cycle, emulator, coarse_grid, seed
) -> _Setup:
    """Soundings at the 00/12 UTC valid times and the emulator's free forecast from ``start``."""
    truth_v = truth[variables].sel(time=valid).load()
    sonde_times = valid[valid.hour.isin(_SONDE_HOURS)]
    sondes = simulate_soundings(truth_v, stations, times=sonde_times, seed=seed)
    init = coarsen(truth.sel(time=[start]).load(), *coarse_grid)
    fc = emulator.forecast(init, lead_days=float(days), every=str(cycle))
    fc = fc.isel(init_time=0, drop=True).isel(lead_time=slice(1, None))
    fc = fc.drop_vars("valid_time", errors="ignore").rename(lead_time="time")
    fc = fc.assign_coords(time=valid)[[v for v in variables if v in fc]]
    return _Setup(truth_v, variables, stations, start, valid, sonde_times, sondes, init, fc)


def _fit_errors(
    truth, prior, setup, n, days, configurations, emulator, coarse_grid, seed, options
) -> ErrorModels:
    """Error models from ``n`` validation starts whose forecasts do not overlap the experiment:
    the emulator's error up to ``days`` and, with an IGRA configuration, the soundings'."""
    span = pd.Timedelta(days=float(days))
    exclude = pd.date_range(setup.start - span, setup.valid[-1] + span, freq=emulator.every)
    val = validation_times(truth, exclude, n, before=span)
    kinds = ("IGRA",) if any("IGRA" in c for c in configurations) else ()
    return fit_error_models(
        truth, prior, setup.stations, val, kinds=kinds, lead=span, emulator=emulator,
        coarse_grid=coarse_grid, seed=seed + 1, **options,
    )


def _sampler(setup: _Setup, prior: Prior, guidance, cg_iters, sampler) -> Callable:
    """``sr(times, obs, weights)``: super_resolve at ``times`` on the truth's grid."""
    grid_ds = setup.truth.drop_vars(setup.variables)

    def sr(ts, obs, w) -> xr.Dataset:
        ts = pd.DatetimeIndex(np.atleast_1d(np.asarray(ts, "datetime64[ns]")))
        return super_resolve(
            grid_ds.sel(time=ts), obs, w, model=prior, guidance=guidance, cg_iters=cg_iters,
            **sampler,
        )

    return sr


def _reconstruct(
    config: str, setup: _Setup, sr: Callable, w: float, emulator, days, cycle, coarse_grid, prior
) -> xr.Dataset:
    """The ensemble of one configuration at its valid times."""
    sondes = setup.errors.source("IGRA", setup.sondes, prior)
    if config in ("emulator", "IGRA+emulator"):
        extra = [sondes] if config == "IGRA+emulator" else []
        if setup.errors.forecast is None:  # default errors: every valid time in one call
            return sr(setup.valid, [*extra, setup.forecast], [1.0] * len(extra) + [w])
        return xr.concat(  # one time at a time: each forecast has the error of its lead
            [sr([t], [*extra, setup.forecast_source(t, prior)], [1.0] * len(extra) + [w])
             for t in setup.valid],
            dim="time",
        )
    if config == "IGRA":
        if setup.sonde_times.empty:
            raise ArgumentError(
                "configurations: 'IGRA' needs cycles ending at 00 or 12 UTC; use cycle='12h' "
                "and a start at 00 or 12 UTC"
            )
        return sr(setup.sonde_times, [sondes], [1.0])
    # IGRA+emulator reinit: every background is a forecast of one cycle
    store: dict[pd.Timestamp, xr.Dataset] = {}
    sigma = setup.errors.sigma_of("emulator", cycle)
    step = analysis_cycle(
        setup.variables, setup.sondes_at, sr, w, store, sigma, setup.errors.sigma_of("IGRA")
    )
    sequential_experiment(
        emulator, setup.init, step, days=float(days), coarse_grid=coarse_grid, cycle=cycle
    )
    return xr.concat([store[t] for t in setup.valid], dim="time")


def _baseline(name: str, setup: _Setup, truth: xr.Dataset) -> xr.Dataset:
    if name == "forecast":
        return interpolation_baseline(setup.forecast, setup.truth, "bicubic")
    # persistence of the full-resolution initial truth
    det = truth[setup.variables].sel(time=[setup.start]).load()
    return det.isel(time=[0] * setup.valid.size).assign_coords(time=setup.valid)


def _score(results: dict[str, tuple[float, xr.Dataset]], setup: _Setup) -> list[dict[str, Any]]:
    """Rows of :func:`~xdiffsr.evaluation.scores.score_rows` at every valid time."""
    rows = []
    for name, (w, ens) in results.items():
        for t in pd.DatetimeIndex(ens["time"].values):
            one = ens.sel(time=[t])
            truth = setup.truth.sel(time=[t])
            for r in score_rows(one, truth, setup.variables, setup.stations):
                rows.append(
                    {
                        "configuration": name,
                        "weight": w,
                        "lead_hours": (t - setup.start) / pd.Timedelta(hours=1),
                        "valid_time": t,
                        **r,
                    }
                )
    return rows


def _check(configurations, baselines, members, weight) -> tuple[list[str], list[str]]:
    configurations = check_names(configurations, SEQUENTIAL_CONFIGURATIONS, "configurations")
    baselines = check_names(baselines, SEQUENTIAL_BASELINES, "baselines")
    check_members(members)
    if not np.isfinite(weight) or weight < 0:
        raise ArgumentError(f"weight={weight!r}: must be a finite value >= 0")
    return configurations, baselines


def evaluate_sequential(
    truth: xr.Dataset,
    *,
    model: Any = "default",
    stations: pd.DataFrame | None = None,
    start: str | pd.Timestamp | None = None,
    days: float = 7,
    cycle: str | pd.Timedelta = "12h",
    configurations: Sequence[str] = SEQUENTIAL_CONFIGURATIONS[:3],
    baselines: Sequence[str] = SEQUENTIAL_BASELINES,
    weight: float = 1.0,
    members: int = 4,
    steps: int = _DEFAULT.steps,
    guidance: str = _DEFAULT.guidance,
    cg_iters: int = 2,
    emulator: Any = None,
    coarse_grid: tuple[int, int] = COARSE_GRID,
    seed: int = 0,
    device: str | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    plot_variables: Sequence[str] = ("t850", "u500", "z500"),
    verbose: bool = False,
    calibrate: int | None = None,
    **sampler_options: Any,
) -> pd.DataFrame:
    """Run the sequential (reinitialised) experiment and score every cycle against the truth.

    Parameters
    ----------
    truth : Dataset
        Nature-run states (time, lat, lon) on the model grid, every ``cycle`` (or finer) from
        ``start`` to ``start + days``, with the variables the emulator starts from (t, u, v at
        850/500/250 hPa and ``sp``).
    model : str or Prior
        ``"default"``, a model file, or a prior object.
    stations : DataFrame, optional
        Station locations (id, lat, lon); default: the 908 IGRA stations active in 2023.
    start : str or Timestamp, optional
        Initial time (the emulator starts from the coarsened truth then); default: the first
        00 or 12 UTC truth time with a truth state ``days`` later.
    days : float
        Length of the experiment (a whole number of cycles).
    cycle : str or Timedelta
        Time between reconstructions (a multiple of the emulator's 6 h); 12 h puts every
        reconstruction at a radiosonde time (00 and 12 UTC) when ``start`` is at one.
    configurations : sequence of str
        Subset of :data:`SEQUENTIAL_CONFIGURATIONS` (default: the three with the emulator).
    baselines : sequence of str
        Subset of :data:`SEQUENTIAL_BASELINES`.
    weight : float
        Weight of the emulator's forecast in Eq. 14 (radiosondes have weight 1).
    members, steps, guidance, cg_iters, seed, device, **sampler_options
        Sampler settings, passed to :func:`xdiffsr.super_resolve`.
    emulator : Emulator, optional
        Default: ``xdiffsr.osse.Emulator()`` (T21, 20 layers, 5.625 deg output).
    coarse_grid : (int, int)
        Grid of the initial state and of every restart (default
        :data:`xdiffsr.osse.COARSE_GRID`, 16 x 32, longitudes from 0).
    out : path, optional
        Folder for ``sequential.csv``, ``sequential.md`` and ``sequential_<var>.png``.
    figures : bool
        Write figures (needs matplotlib) for ``plot_variables``.
    verbose : bool
        Print the timing of each configuration.
    calibrate : int, optional
        Learn the error models first from this many validation initial times outside the
        experiment (:func:`xdiffsr.evaluation.error_models.fit_error_models`): the emulator's
        forecast error at every lead up to ``days`` (each valid time's forecast then enters with
        the error of its lead, and each reinitialised cycle with that of ``cycle``) and the
        radiosondes' per-variable Desroziers factors.

    Returns
    -------
    DataFrame
        Long table with columns ``configuration, weight, lead_hours, valid_time, variable,
        units, metric, value``; the metrics of :data:`~.scores.METRICS` at each valid
        time over lat and lon (latitude-weighted). ``attrs``: start, valid times, settings and
        seconds per configuration.
    """
    configurations, baselines = _check(configurations, baselines, members, weight)
    # one SamplerSettings, built first: a misspelt or invalid option fails before any work
    SamplerSettings.from_options(
        members=members, steps=steps, seed=seed, guidance=guidance, cg_iters=cg_iters,
        **sampler_options,
    )
    prior = resolve_model(model)
    stations = load_stations() if stations is None else stations
    variables = model_variables(prior, truth)
    emulator = Emulator() if emulator is None else emulator
    cycle = pd.Timedelta(cycle)
    start, valid = _valid_times(truth, start, days, cycle, pd.Timedelta(emulator.every))
    seconds: dict[str, float] = {}
    t0 = _time.perf_counter()
    setup = _prepare(
        truth, stations, variables, start, valid, days, cycle, emulator, coarse_grid, seed
    )
    seconds["observations and free forecast"] = _time.perf_counter() - t0
    if calibrate:
        t1 = _time.perf_counter()
        opts = dict(members=members, steps=steps, guidance=guidance, cg_iters=cg_iters,
                    device=device, **sampler_options)
        setup.errors = _fit_errors(truth, prior, setup, calibrate, days, configurations,
                                   emulator, coarse_grid, seed, opts)
        seconds["error models"] = _time.perf_counter() - t1
    sampler = dict(members=members, steps=steps, seed=seed, device=device, **sampler_options)
    sr = _sampler(setup, prior, guidance, cg_iters, sampler)
    results: dict[str, tuple[float, xr.Dataset]] = {}
    for config in configurations:
        t1 = _time.perf_counter()
        w = 1.0 if config == "IGRA" else float(weight)
        ens = _reconstruct(config, setup, sr, w, emulator, days, cycle, coarse_grid, prior)
        results[config] = (w, ens)
        seconds[config] = _time.perf_counter() - t1
        if verbose:
            print(f"{config}: {seconds[config]:.1f} s", flush=True)
    for name in baselines:
        results[name] = (np.nan, _baseline(name, setup, truth))
    table = pd.DataFrame(_score(results, setup), columns=_COLUMNS)
    table.attrs = {
        "start": str(start),
        "valid_times": [str(t) for t in valid],
        "settings": dict(
            members=members, steps=steps, guidance=guidance, cg_iters=cg_iters,
            cycle=str(cycle), days=float(days), weight=float(weight), model=prior.describe(),
            seed=seed, stations=len(stations),
            **({"calibrate": int(calibrate)} if calibrate else {}), **sampler_options,
        ),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    table.attrs["error_models"] = setup.errors.table().to_dict("records")  # empty: defaults
    if out is not None:
        _write(table, Path(out), figures, plot_variables, verbose)
    return table


def sequential_markdown(
    table: pd.DataFrame,
    variables: Sequence[str] = ("t850", "u500", "z500"),
    metrics: Sequence[str] = ("rmse", "crps", "spread_skill"),
) -> str:
    """Markdown of an :func:`evaluate_sequential` table.

    One table per metric and variable (configurations as rows, lead in days as columns), then the
    mean over all cycles of every variable.
    """
    parts = []
    have = list(dict.fromkeys(table["variable"]))
    for m in metrics:
        for v in [v for v in variables if v in have]:
            sub = table[(table["metric"] == m) & (table["variable"] == v)]
            if sub.empty:
                continue
            piv = sub.pivot_table(
                index="configuration", columns="lead_hours", values="value", sort=False
            )
            units = sub["units"].iloc[0]
            head = "| configuration | " + " | ".join(f"{h / 24:g} d" for h in piv.columns) + " |"
            sep = "|---|" + "---:|" * piv.shape[1]
            body = [markdown_row(r, piv.loc[r]) for r in piv.index]
            title = f"### {m} {v}" + (f" ({units})" if m != "spread_skill" and units else "")
            parts.append("\n".join([title, "", head, sep, *body, ""]))
    for m in metrics:
        sub = table[table["metric"] == m]
        if sub.empty:
            continue
        piv = sub.pivot_table(index="configuration", columns="variable", values="value", sort=False)
        piv = piv[[v for v in have if v in piv.columns]]
        head = "| configuration | " + " | ".join(piv.columns) + " |"
        sep = "|---|" + "---:|" * piv.shape[1]
        body = [markdown_row(r, piv.loc[r]) for r in piv.index]
        parts.append("\n".join([f"### {m}, mean over cycles", "", head, sep, *body, ""]))
    return "\n".join(parts)


def _write(table: pd.DataFrame, out: Path, figures: bool, plot_variables, verbose) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sequential.csv", index=False)
    a = table.attrs
    if a.get("error_models"):
        pd.DataFrame(a["error_models"]).to_csv(out / "error_models.csv", index=False)
    head = [
        "# xdiffsr sequential",
        "",
        f"Start {a['start']}, {len(a['valid_times'])} cycles to {a['valid_times'][-1]}. "
        f"Settings: {a['settings']}.",
        "",
        "Seconds: " + ", ".join(f"{k} {v}" for k, v in a["seconds"].items()) + ".",
        "",
    ]
    body = sequential_markdown(table, plot_variables)
    (out / "sequential.md").write_text("\n".join(head) + body)
    if not figures:
        return
    for var in [v for v in plot_variables if v in set(table["variable"])]:
        try:
            fig = scores_by_lead(table, var)
        except ImportError as err:  # pragma: no cover - matplotlib missing
            if verbose:
                print(f"no figures: {err}")
            return
        fig.savefig(out / f"sequential_{var}.png", dpi=80)
