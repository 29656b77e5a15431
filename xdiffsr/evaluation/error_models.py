"""Observation-error models of the OSSE's sources, learned on validation times.

:func:`fit_error_models` is what ``evaluate(calibrate=n)`` and ``xdiffsr evaluate --calibrate N``
run before scoring: on ``n`` truth times that are not targets it

* fits one error-variance factor per source and variable for the radiosondes and the coarse
  analysis (Desroziers et al. 2005, :func:`~xdiffsr.evaluation.calibration.calibrate` with
  ``by="variable"``), from their innovations only (the truth is not used);
* estimates the emulator's forecast error by lead time from its own forecasts against the
  coarsened truth (:func:`xdiffsr.osse.forecast_errors`), so a forecast source's error grows with
  its lead instead of being the fixed default; and, since these errors are spatially
  correlated while the likelihood treats the forecast's values as independent, inflates the
  variance by ``N / N_eff`` (:func:`xdiffsr.osse.forecast_error.correlation_inflation`), so the
  forecast carries the information its correlated errors leave it.

The result, an :class:`ErrorModels`, gives each source kind its ``sigma_y`` (a
``{variable: variance}`` dict) to reuse on the targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation.calibration import calibrate
from xdiffsr.models import Prior
from xdiffsr.observations.error_model import default_error_std
from xdiffsr.observations.sources import as_source
from xdiffsr.osse import COARSE_GRID, Emulator, coarsen
from xdiffsr.osse.forecast_error import at_lead, forecast_errors, forecast_sigma
from xdiffsr.osse.stations import simulate_soundings

__all__ = ["FLOOR", "ErrorModels", "fit_error_models", "source_variances", "validation_times"]

#: Smallest forecast error, as a fraction of the nominal error std of the variable
#: (:func:`xdiffsr.observations.error_model.default_error_std`).
FLOOR = 0.01


@dataclass
class ErrorModels:
    """Error variances per source kind: ``IGRA`` and ``LR`` dicts, and the emulator's by lead.

    Attributes
    ----------
    sigma : dict
        ``{"IGRA": {variable: variance}, "LR": {...}}`` (a kind absent keeps the defaults).
    forecast : xarray.Dataset or None
        :func:`xdiffsr.osse.forecast_errors` of the emulator (RMSE by variable and lead).
    inflation : xarray.Dataset or None
        The forecast errors' variance inflation by variable and lead (``N / N_eff`` of their
        spatial correlation); None: the errors are treated as independent.
    history : pandas.DataFrame
        The Desroziers iterations (:func:`~xdiffsr.evaluation.calibration.calibrate`).
    times : pandas.DatetimeIndex
        The validation times used.
    """

    sigma: dict[str, dict[str, float]] = field(default_factory=dict)
    forecast: xr.Dataset | None = None
    inflation: xr.Dataset | None = None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    times: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))

    def sigma_of(self, kind: str, lead: Any = None) -> dict[str, float] | None:
        """``sigma_y`` of a source kind: ``"IGRA"``, ``"LR"`` or ``"emulator"`` (at ``lead``);
        None where nothing was fitted (the source keeps its default errors)."""
        if kind == "emulator":
            if self.forecast is None or lead is None:
                return None
            # a variable the forecast got exactly right keeps 1 % of its nominal error, so the
            # likelihood stays finite
            floor = {v: FLOOR * default_error_std(str(v)) for v in self.forecast.data_vars}
            var = forecast_sigma(self.forecast, lead, floor=floor)
            if self.inflation is not None:  # correlated errors: N / N_eff at this lead
                factor = at_lead(self.inflation, lead)
                var = {v: x * factor.get(v, 1.0) for v, x in var.items()}
            return var
        return self.sigma.get(kind)

    def source(self, kind: str, data: Any, prior: Prior, lead: Any = None) -> Any:
        """``data`` as a source with the fitted errors (``data`` itself when none were)."""
        sigma = self.sigma_of(kind, lead)
        if sigma is None:
            return data
        return replace(as_source(data, prior), sigma_y=sigma)

    def table(self) -> pd.DataFrame:
        """Long table ``source, variable, lead_hours, std, inflation``: the fitted error
        standard deviations (model units) and, for the forecast, the variance inflation of its
        correlated errors (the variance used is ``inflation * std**2``)."""
        rows = [
            {"source": k, "variable": v, "lead_hours": np.nan, "std": float(np.sqrt(var))}
            for k, d in self.sigma.items()
            for v, var in d.items()
        ]
        if self.forecast is not None:
            hours = pd.to_timedelta(self.forecast["lead_time"].values) / pd.Timedelta(hours=1)
            for v in self.forecast.data_vars:
                infl = (self.inflation[v].values if self.inflation is not None
                        and v in self.inflation else np.full(len(hours), np.nan))
                rows += [
                    {"source": "emulator", "variable": v, "lead_hours": float(h), "std": float(s),
                     "inflation": float(f)}
                    for h, s, f in zip(hours, self.forecast[v].values, infl)
                ]
        return pd.DataFrame(rows, columns=["source", "variable", "lead_hours", "std", "inflation"])


def source_variances(source: Any, variables: Sequence[str]) -> dict[str, float]:
    """The error variance a source uses for each variable: its ``sigma_y``, else the mean of its
    ``error`` column squared per variable (tidy point frames), else the default."""
    data = source.data
    if source.sigma_y is None and isinstance(data, pd.DataFrame) and {"error", "variable"} <= set(
        data.columns
    ):
        e2 = (data["error"].astype(float) ** 2).groupby(data["variable"].astype(str)).mean()
        return {v: float(e2[v]) if v in e2 else float(source.variance_for(v, 1)[0])
                for v in variables}
    return {v: float(source.variance_for(v, 1)[0]) for v in variables}


def validation_times(
    truth: xr.Dataset, exclude: Sequence[Any], n: int, *, before: pd.Timedelta | None = None
) -> pd.DatetimeIndex:
    """``n`` truth times, evenly spread, none in ``exclude`` (and, with ``before``, each with a
    truth state that long earlier, for the emulator's initial state)."""
    if int(n) < 1:
        raise ArgumentError(f"calibrate={n!r}: give the number of validation times (>= 1).")
    times = pd.DatetimeIndex(truth["time"].values)
    ok = times[~times.isin(pd.DatetimeIndex(np.atleast_1d(np.asarray(exclude, "datetime64[ns]"))))]
    if before is not None:
        ok = ok[(ok - before).isin(times)]
    if len(ok) < int(n):
        raise ArgumentError(
            f"calibrate={n}: the truth has only {len(ok)} times that are not targets"
            + (f" (and have a state {before} earlier)" if before is not None else "")
            + "; pass a longer truth, fewer --times, or a smaller calibrate."
        )
    return ok[np.linspace(0, len(ok) - 1, int(n)).round().astype(int)]


def fit_error_models(
    truth: xr.Dataset,
    prior: Prior,
    stations: pd.DataFrame,
    times: pd.DatetimeIndex,
    *,
    kinds: Sequence[str] = ("IGRA", "LR"),
    lead: pd.Timedelta | None = None,
    emulator: Emulator | None = None,
    coarse_grid: tuple[int, int] = COARSE_GRID,
    seed: int = 0,
    iterations: int = 3,
    correlated: bool = True,
    **sampler_options: Any,
) -> ErrorModels:
    """Fit the error models of the OSSE's sources on validation ``times``.

    Parameters
    ----------
    truth : xarray.Dataset
        Nature run on the model grid (the radiosondes and the coarse analysis are simulated from
        it at ``times``; the Desroziers fit itself sees only the observations).
    prior : Prior
        The prior the targets will be reconstructed with.
    stations : pandas.DataFrame
        Station locations of the simulated radiosondes.
    times : pandas.DatetimeIndex
        Validation times (:func:`validation_times`: not the targets).
    kinds : sequence of {"IGRA", "LR"}
        Sources whose errors are fitted jointly (each with weight 1).
    lead : Timedelta, optional
        With it, the emulator's forecast errors are estimated up to this lead from ``times -
        lead``.
    emulator : Emulator, optional
        The forecast model (default ``Emulator()``).
    coarse_grid : (int, int)
        Grid of the coarse analysis.
    seed : int
        Seed of the simulated radiosondes (use another than the targets').
    iterations : int
        Desroziers iterations.
    correlated : bool
        Inflate the forecast's error variance for its spatial correlation (``N / N_eff`` by
        variable and lead; needs >= 2 ``times``). False: its values count as independent.
    **sampler_options
        Sampler options of the reconstructions (members, steps, guidance, ...).

    Returns
    -------
    ErrorModels
    """
    variables = [v for v in prior.variables if v in truth.data_vars]
    state = truth[variables].sel(time=times).load()
    data = {"IGRA": simulate_soundings(state, stations, times=times, seed=seed),
            "LR": coarsen(state, *coarse_grid)}
    kinds = [k for k in kinds if k in data]
    models = ErrorModels(times=times)
    if kinds:
        ds = xr.Dataset(coords={"time": times})
        sources, models.history = calibrate(
            ds, [data[k] for k in kinds], prior, iterations=iterations, by="variable",
            **sampler_options,
        )
        models.sigma = {k: source_variances(src, variables) for k, src in zip(kinds, sources)}
    if lead is not None:
        correlated = correlated and len(times) >= 2
        out = forecast_errors(
            truth, times - lead, lead_days=lead / pd.Timedelta(days=1), emulator=emulator,
            coarse_grid=coarse_grid, inflation=correlated,
        )
        models.forecast, models.inflation = out if correlated else (out, None)
    return models
