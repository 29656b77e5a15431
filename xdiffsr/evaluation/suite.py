"""The OSSE evaluation suite: every observing configuration of the paper, baselines, one table.

Configurations (all reconstruct the truth at the target times; the gridded source's weight is
swept, radiosondes keep weight 1):

* ``LR``: the truth coarsened conservatively to 16 x 32 (11.25 deg,
  :data:`xdiffsr.osse.COARSE_GRID`, longitudes 0, 11.25, ..., 348.75), the paper's coarse analysis.
* ``IGRA``: simulated radiosondes (t, u, v, z at 850/500/250 hPa with nominal errors) at the
  stations.
* ``IGRA+LR``: both.
* ``emulator``: a forecast of the T21 Held-Suarez core (:class:`xdiffsr.osse.Emulator`, 5.625 deg
  output) started ``lead`` before the target time from the coarsened truth (the paper's LUCIE).
* ``IGRA+emulator``: both.
* ``IGRA+emulator reinit``: :func:`xdiffsr.evaluation.cycling.sequential_experiment`: every 6 h
  the emulator's forecast and the radiosondes valid then are super-resolved, the ensemble mean is
  coarsened to 16 x 32 and the emulator restarts from it, from ``target - lead`` to the target.

Baselines: interpolation of the LR field (bilinear, bicubic, conservative), the training
climatology, unguided prior samples, and optimal interpolation (a Gaussian prior fitted on the
training data, conditioned on IGRA+LR).

References
----------
.. [1] Chakraborty, D. et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models.
.. [2] Rasp, S. et al. (2024). WeatherBench 2. *J. Adv. Model. Earth Syst.*, 16, e2023MS004019.
.. [3] Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. *QJRMS*, 140, 1917-1923.
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
from xdiffsr.evaluation import baselines as bl
from xdiffsr.evaluation import plot
from xdiffsr.evaluation.cycling import reinitialised
from xdiffsr.evaluation.datasets import load_heldout, load_stations
from xdiffsr.evaluation.error_models import ErrorModels, fit_error_models, validation_times
from xdiffsr.evaluation.scores import (
    METRICS,
    check_members,
    check_names,
    markdown_row,
    model_variables,
    on_grid,
    resolve_model,
    score_rows,
)
from xdiffsr.evaluation.validation import score_withheld
from xdiffsr.evaluation.validation import withhold as withhold_observations
from xdiffsr.models import Prior
from xdiffsr.osse import COARSE_GRID, Emulator, coarsen
from xdiffsr.osse.stations import simulate_soundings
from xdiffsr.reconstruct import super_resolve
from xdiffsr.reconstruct.settings import SamplerSettings

_DEFAULT = SamplerSettings()

__all__ = [
    "BASELINES",
    "CONFIGURATIONS",
    "METRICS",
    "evaluate",
    "results_markdown",
    "score_rows",
]

CONFIGURATIONS = ("LR", "IGRA", "IGRA+LR", "emulator", "IGRA+emulator", "IGRA+emulator reinit")
BASELINES = (
    "bilinear",
    "bicubic",
    "conservative",
    "climatology",
    "unguided",
    "optimal interpolation",
)
_EMULATED = ("emulator", "IGRA+emulator", "IGRA+emulator reinit")
_NEEDS_TRAIN = ("climatology", "optimal interpolation")
_COLUMNS = ["configuration", "weight", "variable", "units", "metric", "value"]


@dataclass
class _Setup:
    """Everything the configurations share: truth at the targets and the observations."""

    truth: xr.Dataset  # (time, lat, lon) at the targets
    variables: list[str]
    stations: pd.DataFrame
    lr: xr.Dataset
    sondes: pd.DataFrame  # at every time a configuration needs
    forecast: xr.Dataset | None = None  # emulator forecast valid at the targets
    init: xr.Dataset | None = None  # coarsened truth at target - lead
    ensembles: dict[str, xr.Dataset] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    withheld: pd.DataFrame | None = None  # soundings never assimilated, scored separately
    errors: ErrorModels = field(default_factory=ErrorModels)  # fitted sigma_y (calibrate=)
    prior: Prior | None = None

    def sondes_at(self, times) -> pd.DataFrame:
        return self.sondes[self.sondes["time"].isin(pd.DatetimeIndex(np.atleast_1d(times)))]

    def score(self, ens: xr.Dataset) -> list[dict[str, Any]]:
        """Rows (variable, metric, value) of one reconstruction against the truth, and at the
        withheld soundings (metrics ``<metric>_withheld``) when some are withheld."""
        rows = score_rows(ens, self.truth, self.variables, self.stations)
        if self.withheld is not None:
            held = score_withheld(ens, self.withheld, variables=self.variables)
            rows += [
                {"variable": r.variable, "units": r.units, "metric": f"{r.metric}_withheld",
                 "value": r.value}
                for r in held.itertuples()
            ]
        return rows


# ----------------------------------------------------------------------------- preparation
def _fit_errors(
    truth, setup, targets, n, configurations, lead, emulator, coarse_grid, seed, options
) -> ErrorModels:
    """Error models fitted on ``n`` validation times (not targets), for the configurations'
    source kinds; the validation radiosondes use another seed than the targets'. None fitted
    (the default errors) without ``n``."""
    if not n:
        return ErrorModels()
    t0 = _time.perf_counter()
    kinds = [k for k in ("IGRA", "LR") if any(k in c.split("+") for c in configurations)]
    val = validation_times(truth, targets, n, before=lead)
    models = fit_error_models(
        truth, setup.prior, setup.stations, val, kinds=kinds, lead=lead, emulator=emulator,
        coarse_grid=coarse_grid, seed=seed + 1, **options,
    )
    setup.seconds["error models"] = _time.perf_counter() - t0
    return models


def _target_times(truth: xr.Dataset, n: int | None, lead: pd.Timedelta | None) -> pd.DatetimeIndex:
    """Truth times that can be targets: with a state ``lead`` earlier when the emulator runs."""
    all_t = pd.DatetimeIndex(truth["time"].values)
    ok = all_t if lead is None else all_t[(all_t - lead).isin(all_t)]
    if ok.empty:
        raise ArgumentError(
            f"truth: no time has a truth state lead={lead} earlier to start the emulator from "
            f"(times {list(all_t.astype(str))}); pass a longer truth, a shorter lead, or "
            "configurations without the emulator"
        )
    if n is not None:
        if int(n) < 1:
            raise ArgumentError(f"times={n!r} must be a positive number of target times")
        ok = ok[np.linspace(0, ok.size - 1, min(int(n), ok.size)).round().astype(int)]
    return ok


def _check_weights(weights: Sequence[float]) -> list[float]:
    weights = [float(w) for w in np.atleast_1d(weights)]
    if not weights or any(not np.isfinite(w) or w < 0 for w in weights):
        raise ArgumentError(f"weights={weights!r} must be a non-empty list of finite values >= 0")
    return weights


def _check_emulator(emulator: Any, lead: pd.Timedelta, needed: bool) -> Any:
    """The emulator (default :class:`xdiffsr.osse.Emulator`, built only when ``needed``)."""
    if not needed:
        return emulator
    emulator = Emulator() if emulator is None else emulator
    if lead <= pd.Timedelta(0) or lead % pd.Timedelta(emulator.every):
        raise ArgumentError(f"lead={lead}: must be a positive multiple of {emulator.every}")
    return emulator


def _emulator_forecast(
    truth: xr.Dataset, targets: pd.DatetimeIndex, variables, lead, emulator, coarse_grid
) -> tuple[xr.Dataset, xr.Dataset]:
    """The coarsened truth at ``targets - lead`` and the emulator's forecast from it."""
    # the emulator starts from every variable of the truth (it needs t, u, v and sp)
    init = coarsen(truth.sel(time=targets - lead).load(), *coarse_grid)
    fc = emulator.forecast(init, lead_days=lead / pd.Timedelta(days=1))
    fc = fc.isel(lead_time=-1, drop=True).drop_vars("valid_time", errors="ignore")
    fc = fc.rename(init_time="time").assign_coords(time=targets)
    return init, fc[[v for v in variables if v in fc]]


def _prepare(
    truth, stations, targets, variables, lead, emulator, coarse_grid, seed, need_emulator
) -> _Setup:
    """The truth at the targets, its coarse analysis, the soundings and the emulator forecast."""
    truth_t = truth[variables].sel(time=targets).load()
    lr = coarsen(truth_t, *coarse_grid)
    sonde_times = targets
    setup_kw: dict[str, Any] = {}
    if need_emulator:
        all_t = pd.DatetimeIndex(truth["time"].values)
        cycle = pd.Timedelta(emulator.every)
        # radiosondes also at the intermediate synoptic times of the reinitialised cycles
        mid = [t - k * cycle for t in targets for k in range(1, int(lead / cycle))]
        mid = pd.DatetimeIndex(mid)
        mid = mid[mid.isin(all_t) & mid.hour.isin([0, 12])]
        sonde_times = targets.union(mid)
        init, fc = _emulator_forecast(truth, targets, variables, lead, emulator, coarse_grid)
        setup_kw.update(init=init, forecast=fc)
    sondes_truth = truth[variables].sel(time=sonde_times).load()
    sondes = simulate_soundings(sondes_truth, stations, times=sonde_times, seed=seed)
    return _Setup(truth_t, variables, stations, lr, sondes, **setup_kw)


# ------------------------------------------------------------------------- configurations
def _sources(
    config: str, setup: _Setup, weight: float, lead: pd.Timedelta | None = None
) -> tuple[list, list[float]]:
    """The sources of a configuration, with the fitted error models where there are some."""
    sondes = setup.sondes_at(setup.truth["time"].values)
    kind = "LR" if "LR" in config else "emulator" if "emulator" in config else None
    grid = setup.lr if kind == "LR" else setup.forecast if kind == "emulator" else None
    obs, w = [], []
    if "IGRA" in config:
        obs.append(setup.errors.source("IGRA", sondes, setup.prior))
        w.append(1.0)
    if grid is not None:
        obs.append(setup.errors.source(kind, grid, setup.prior, lead))
        w.append(float(weight))
    return obs, w


def _sampler(setup: _Setup, prior: Prior, targets, guidance, cg_iters, sampler) -> Callable:
    """``sr(times, obs, weights)``: super_resolve at ``times`` (None: every target) on the truth's
    grid."""
    grid_ds = setup.truth.drop_vars(setup.variables)

    def sr(ts, obs, w) -> xr.Dataset:
        ds = grid_ds
        if ts is not None:  # one cycle of the sequential experiment; its time may not be a target
            ts = pd.DatetimeIndex(np.atleast_1d(np.asarray(ts, "datetime64[ns]")))
            ds = ds.sel(time=ts) if ts.isin(targets).all() else xr.Dataset(coords={"time": ts})
        return super_resolve(
            ds, obs, w, model=prior, guidance=guidance, cg_iters=cg_iters, **sampler
        )

    return sr


def _run_configurations(
    setup: _Setup, configurations, weights, sr: Callable, emulator, lead, verbose: bool
) -> list[dict[str, Any]]:
    """Reconstruct and score every configuration at every weight."""
    rows: list[dict[str, Any]] = []
    for config in configurations:
        for w in [1.0] if config == "IGRA" else weights:
            t1 = _time.perf_counter()
            if config == "IGRA+emulator reinit":
                ens = reinitialised(
                    setup.init, setup.variables, setup.sondes_at, sr, emulator, lead, w,
                    background_sigma=setup.errors.sigma_of("emulator", emulator.every),
                    sondes_sigma=setup.errors.sigma_of("IGRA"),
                )
            else:
                ens = sr(None, *_sources(config, setup, w, lead))
            rows += [{"configuration": config, "weight": w, **r} for r in setup.score(ens)]
            key = f"{config} (w={w:g})"
            setup.seconds[key] = _time.perf_counter() - t1
            if config == "IGRA" or w == min(weights, key=lambda x: abs(x - 1.0)):
                setup.ensembles[config] = ens
            if verbose:
                print(f"{key}: {setup.seconds[key]:.1f} s")
    return rows


def _baseline(name: str, setup: _Setup, train, prior, oi_rank, sampler) -> Any:
    times = setup.truth["time"].values
    if name in bl.INTERPOLATION_METHODS:
        return bl.interpolation_baseline(setup.lr, setup.truth, name)
    if name == "climatology":
        return bl.climatology_baseline(train[setup.variables], times)
    if name == "unguided":  # on the model grid: labelled like the truth (equal to rounding)
        return on_grid(bl.unguided_baseline(prior, times, **sampler), setup.truth, "model grid")
    if name == "optimal interpolation":
        obs, w = _sources("IGRA+LR", setup, 1.0)
        oi = bl.optimal_interpolation_baseline(
            train[setup.variables].load(),
            obs,
            times,
            weights=w,
            rank=oi_rank,
            cg_iters=10,
            **sampler,
        )
        return on_grid(oi, setup.truth, "optimal interpolation")
    raise ArgumentError(f"baselines: unknown baseline {name!r}; choose from {BASELINES}")


def _run_baselines(
    setup: _Setup, baselines, train, prior, oi_rank, sampler, verbose: bool
) -> list[dict[str, Any]]:
    """Compute and score every baseline."""
    rows: list[dict[str, Any]] = []
    for name in baselines:
        t1 = _time.perf_counter()
        ens = _baseline(name, setup, train, prior, oi_rank, sampler)
        rows += [{"configuration": name, "weight": np.nan, **r} for r in setup.score(ens)]
        setup.ensembles[name] = ens
        setup.seconds[name] = _time.perf_counter() - t1
        if verbose:
            print(f"{name}: {setup.seconds[name]:.1f} s")
    return rows


def _usable_baselines(baselines, train, verbose: bool) -> list[str]:
    baselines = check_names(baselines, BASELINES, "baselines")
    if train is None and any(b in _NEEDS_TRAIN for b in baselines):
        baselines = [b for b in baselines if b not in _NEEDS_TRAIN]
        if verbose:
            print("no training data (train=None): climatology and optimal interpolation skipped")
    return baselines


def _table(rows, setup: _Setup, targets, settings: dict[str, Any]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table.attrs = {
        "targets": [str(t) for t in targets],
        "settings": settings,
        "seconds": {k: round(v, 1) for k, v in setup.seconds.items()},
    }
    return table


# --------------------------------------------------------------------------------- evaluate
def evaluate(
    truth: xr.Dataset | None = None,
    *,
    model: Any = "default",
    train: xr.Dataset | None = None,
    stations: pd.DataFrame | None = None,
    configurations: Sequence[str] = CONFIGURATIONS,
    weights: Sequence[float] = (0.5, 1.0, 2.0),
    baselines: Sequence[str] = BASELINES,
    times: int | None = None,
    members: int = 4,
    steps: int = _DEFAULT.steps,
    guidance: str = _DEFAULT.guidance,
    cg_iters: int = 2,
    lead: str | pd.Timedelta = "12h",
    emulator: Any = None,
    coarse_grid: tuple[int, int] = COARSE_GRID,
    oi_rank: int = 32,
    seed: int = 0,
    device: str | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    plot_variables: Sequence[str] = ("t850", "u500"),
    verbose: bool = False,
    withhold: float | None = None,
    withhold_by: str = "station",
    calibrate: int | None = None,
    **sampler_options: Any,
) -> pd.DataFrame:
    """Score every observing configuration and baseline against an OSSE truth.

    Parameters
    ----------
    truth : Dataset, optional
        Nature-run states (time, lat, lon) on the model grid; default: the packaged held-out
        states (:func:`xdiffsr.evaluation.datasets.load_heldout`, 2003-12-30 00Z and 12Z).
    model : str or Prior
        ``"default"``, a model file, or a prior object (a GaussianPrior works too).
    train : Dataset, optional
        Training states on the model grid for the climatology and optimal-interpolation
        baselines; without it those two are skipped.
    stations : DataFrame, optional
        Station locations (id, lat, lon); default: the 908 IGRA stations active in 2023.
    configurations : sequence of str
        Subset of :data:`CONFIGURATIONS`.
    weights : sequence of float
        Weights of the gridded source (LR or emulator) in Eq. 14; radiosondes keep weight 1.
        ``IGRA`` alone runs once (weight 1).
    baselines : sequence of str
        Subset of :data:`BASELINES`.
    times : int, optional
        Number of target times, evenly spread over the eligible truth times (all by default).
        With an emulator configuration, a target needs a truth state ``lead`` earlier.
    members, steps, guidance, cg_iters, seed, device, **sampler_options
        Sampler settings, passed to :func:`xdiffsr.super_resolve` (and the baselines).
    lead : str or Timedelta
        Emulator lead time: forecasts start this long before the target (a multiple of 6 h).
    emulator : Emulator, optional
        Default: ``xdiffsr.osse.Emulator()`` (T21, 20 layers), built only when needed.
    coarse_grid : (int, int)
        Grid of the LR data and of the emulator's initial states (default
        :data:`xdiffsr.osse.COARSE_GRID`, 16 x 32, longitudes from 0).
    oi_rank : int
        Rank of the optimal-interpolation background covariance.
    out : path, optional
        Folder for ``results.csv``, ``results.md`` and PNG figures.
    figures : bool
        Write figures (needs matplotlib) for ``plot_variables``.
    verbose : bool
        Print progress and the timing of each configuration.
    withhold : float, optional
        Held-out validation: this fraction of the simulated soundings (by ``withhold_by``, see
        :func:`xdiffsr.evaluation.validation.withhold`, seeded with ``seed``) is never
        assimilated, and every configuration and baseline is also scored at them: rows
        ``rmse_withheld``, ``crps_withheld`` and ``spread_skill_withheld`` (ensembles) of
        :func:`xdiffsr.evaluation.validation.score_withheld` (against the noisy soundings).
    withhold_by : {"station", "random", "region"}
        How the withheld soundings are chosen.
    calibrate : int, optional
        Learn the error models first on this many validation times (truth times that are not
        targets; :func:`xdiffsr.evaluation.error_models.fit_error_models`): per-variable
        Desroziers factors of the radiosondes and the coarse analysis, and the emulator's
        forecast error at ``lead`` from its own forecasts; every configuration then uses them.
        The fitted errors are in ``table.attrs["error_models"]`` (and ``error_models.csv``).

    Returns
    -------
    DataFrame
        Long table with columns ``configuration, weight, variable, units, metric, value``; metrics
        (:data:`METRICS`): latitude-weighted RMSE of the ensemble mean, fair CRPS (mean absolute
        error for deterministic baselines), spread-skill ratio (ensembles only), and the RMSE at
        grid cells nearest to a station and elsewhere, all over time, lat and lon. ``attrs``:
        settings and seconds per configuration.

    References
    ----------
    .. [1] Chakraborty et al. (2025); WeatherBench 2 (Rasp et al., 2024); Ferro (2014).
    """
    configurations = check_names(configurations, CONFIGURATIONS, "configurations")
    baselines = _usable_baselines(baselines, train, verbose)
    check_members(members)
    # one SamplerSettings, built first: a misspelt or invalid option fails before any work
    SamplerSettings.from_options(
        members=members, steps=steps, seed=seed, guidance=guidance, cg_iters=cg_iters,
        **sampler_options,
    )
    weights = _check_weights(weights)
    prior = resolve_model(model)
    truth = load_heldout() if truth is None else truth
    stations = load_stations() if stations is None else stations
    variables = model_variables(prior, truth)
    train = None if train is None else on_grid(train, truth)
    need_emulator = any(c in _EMULATED for c in configurations)
    lead = pd.Timedelta(lead)
    emulator = _check_emulator(emulator, lead, need_emulator)
    targets = _target_times(truth, times, lead if need_emulator else None)
    t0 = _time.perf_counter()
    setup = _prepare(
        truth, stations, targets, variables, lead, emulator, coarse_grid, seed, need_emulator
    )
    setup.seconds["observations and emulator"] = _time.perf_counter() - t0
    setup.prior = prior
    options = dict(members=members, steps=steps, guidance=guidance, cg_iters=cg_iters,
                   device=device, **sampler_options)
    setup.errors = _fit_errors(truth, setup, targets, calibrate, configurations,
                               lead if need_emulator else None, emulator, coarse_grid, seed,
                               options)
    if withhold:
        setup.sondes, setup.withheld = withhold_observations(
            setup.sondes, fraction=withhold, by=withhold_by, seed=seed
        )
    sampler = dict(members=members, steps=steps, seed=seed, device=device, **sampler_options)
    sr = _sampler(setup, prior, targets, guidance, cg_iters, sampler)
    rows = _run_configurations(setup, configurations, weights, sr, emulator, lead, verbose)
    rows += _run_baselines(setup, baselines, train, prior, oi_rank, sampler, verbose)
    settings = dict(
        members=members, steps=steps, guidance=guidance, cg_iters=cg_iters, lead=str(lead),
        model=prior.describe(), seed=seed, stations=len(setup.stations),
        **({"withhold": withhold, "withhold_by": withhold_by} if withhold else {}),
        **({"calibrate": int(calibrate)} if calibrate else {}),
        **sampler_options,
    )
    table = _table(rows, setup, targets, settings)
    if calibrate:
        table.attrs["error_models"] = setup.errors.table().to_dict("records")
    if out is not None:
        _write(table, setup, Path(out), figures, plot_variables, verbose)
    return table


# ---------------------------------------------------------------------------------- output
def results_markdown(table: pd.DataFrame, metrics: Sequence[str] = METRICS) -> str:
    """Markdown tables of an :func:`evaluate` result: one per metric, configurations as rows.

    Parameters
    ----------
    table : DataFrame
        The long table returned by :func:`evaluate`.
    metrics : sequence of str
        Metrics to include (those present).

    Returns
    -------
    str
    """
    label = table["configuration"] + table["weight"].map(
        lambda w: "" if pd.isna(w) else f" (w={w:g})"
    )
    t = table.assign(row=label)
    order = list(dict.fromkeys(label))
    variables = list(dict.fromkeys(table["variable"]))
    parts = []
    for m in metrics:
        sub = t[t["metric"] == m]
        if sub.empty:
            continue
        piv = sub.pivot_table(index="row", columns="variable", values="value", sort=False)
        piv = piv.reindex([r for r in order if r in piv.index])[variables]
        head = "| configuration | " + " | ".join(variables) + " |"
        sep = "|---|" + "---:|" * len(variables)
        body = [markdown_row(r, piv.loc[r]) for r in piv.index]
        parts.append("\n".join([f"### {m}", "", head, sep, *body, ""]))
    return "\n".join(parts)


def _write(table, setup: _Setup, out: Path, figures: bool, plot_variables, verbose) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    a = table.attrs
    head = [
        "# xdiffsr evaluate",
        "",
        f"Targets: {', '.join(a['targets'])}. Settings: {a['settings']}.",
        "",
        "Seconds: " + ", ".join(f"{k} {v}" for k, v in a["seconds"].items()) + ".",
        "",
    ]
    (out / "results.md").write_text("\n".join(head) + results_markdown(table))
    if "error_models" in a:
        pd.DataFrame(a["error_models"]).to_csv(out / "error_models.csv", index=False)
    if figures:
        try:
            written = _figures(setup, out, plot_variables)
        except ImportError as err:
            written = []
            if verbose:
                print(f"no figures: {err}")
        if verbose and written:
            print(f"wrote {len(written)} figures to {out}")


def _figures(setup: _Setup, out: Path, plot_variables: Sequence[str]) -> list[Path]:
    ens = setup.ensembles
    members = {k: v for k, v in ens.items() if "member" in v.dims}
    if not members:
        return []
    main = next((k for k in ("IGRA+LR", *CONFIGURATIONS) if k in members), next(iter(members)))
    others = {k: v for k, v in ens.items() if k != main}
    preferred = [k for k in ("bicubic", "LR", "IGRA", "IGRA+emulator") if k in others]
    trace = {k: others[k] for k in (preferred or list(others))[:4]}
    written = []
    for var in [v for v in plot_variables if v in setup.variables]:
        figs = {
            "maps": plot.maps(setup.truth, members[main], var),
            "spectra": plot.spectra(setup.truth, members[main], var, baselines=others),
            "latitude": plot.latitude_trace(setup.truth, members[main], var, baselines=trace),
            "scatter": plot.scatter_points(setup.truth, members[main], setup.stations, var),
        }
        for kind, fig in figs.items():
            fig.suptitle(f"{main}: {kind}" if kind != "spectra" else f"ensemble = {main}")
            path = out / f"{kind}_{var}.png"
            fig.savefig(path, dpi=80)
            written.append(path)
    return written
