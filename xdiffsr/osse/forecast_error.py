"""The emulator's own forecast errors, by lead time: the error model of a forecast source.

A coarse model's forecast used as an observation source (the paper's LUCIE, here
:class:`~xdiffsr.osse.Emulator`) is not exact: its error grows with lead time. Treating it as exact
(or with the fixed default errors of :mod:`xdiffsr.observations.error_model`) makes the posterior
over-confident far from the start (spread/skill 0.15-0.65 in the 7-day sequential experiment). The
error model here is learned from the emulator's own errors:

    sigma_v(lead)^2 = mean over inits, cells of (F_v(init, lead) - C(truth_v(init + lead)))^2

where ``F`` is the forecast from the coarsened truth at ``init`` and ``C`` the conservative average
of the truth onto the forecast's grid (what the forecast approximates), area-weighted by
``cos(latitude)``. Initial times must not be the times scored later (a validation set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import find_latlon
from xdiffsr.osse.emulator import COARSE_GRID, Emulator, coarsen

__all__ = ["at_lead", "correlation_inflation", "forecast_errors", "forecast_sigma"]


def forecast_errors(
    truth: xr.Dataset,
    inits: Sequence[Any] | pd.DatetimeIndex,
    *,
    lead_days: float,
    emulator: Emulator | None = None,
    every: str | None = None,
    coarse_grid: tuple[int, int] = COARSE_GRID,
    inflation: bool = False,
) -> xr.Dataset | tuple[xr.Dataset, xr.Dataset]:
    """Root-mean-square error of the emulator's forecasts against the coarsened truth, by lead.

    Parameters
    ----------
    truth : xarray.Dataset
        Nature run (time, lat, lon) holding every ``init + lead`` time.
    inits : sequence of datetime-like
        Initial times of the forecasts (a validation set: not the times scored later).
    lead_days : float
        Longest lead time.
    emulator : Emulator, optional
        The forecast model (default ``Emulator()``).
    every : str, optional
        Lead-time interval (default: the emulator's output interval).
    coarse_grid : (int, int)
        Grid of the initial states (the coarse analysis, default 16 x 32).
    inflation : bool
        Also return the errors' :func:`correlation_inflation` by variable and lead (needs at
        least 2 inits).

    Returns
    -------
    xarray.Dataset
        One variable per forecast variable, dims ``lead_time``: the RMSE (model units) over
        inits and the forecast grid's cells (``cos(latitude)`` weights), with attributes naming
        the inits. Lead 0 is the emulator's representation error of its initial state.
    xarray.Dataset
        With ``inflation=True``: the same variables, the variance inflation of their errors.

    Raises
    ------
    ArgumentError
        No inits, or a valid time missing from ``truth``.
    """
    inits = pd.DatetimeIndex(np.atleast_1d(np.asarray(inits, "datetime64[ns]")))
    if len(inits) == 0:
        raise ArgumentError("inits: give at least one initial time.")
    emulator = Emulator() if emulator is None else emulator
    variables = [v for v in truth.data_vars if truth[v].ndim == 3]
    step = pd.Timedelta(every) if every is not None else pd.Timedelta(emulator.every)
    leads = np.arange(int(pd.Timedelta(days=lead_days) / step) + 1) * step
    needed = pd.DatetimeIndex([t + lead for t in inits for lead in leads])
    missing = needed.difference(pd.DatetimeIndex(truth["time"].values))
    if len(missing):
        raise ArgumentError(
            f"truth: has no state at the valid time {missing[0]} of a forecast; choose inits at "
            f"least lead_days={lead_days} before the end of the truth."
        )
    init = coarsen(truth[variables].sel(time=inits).load(), *coarse_grid)
    fc = emulator.forecast(init, lead_days=lead_days, every=every)
    lat_c, lon_c = find_latlon(fc, "forecast")
    lat, lon = lat_c.dims[0], lon_c.dims[0]
    valid = pd.DatetimeIndex(np.asarray(fc["valid_time"].values).ravel())
    w = np.cos(np.deg2rad(lat_c.values))
    w = xr.DataArray(w / w.mean(), dims=(lat,))
    if inflation and len(inits) < 2:
        raise ArgumentError("inits: the error correlation (inflation=True) needs >= 2 inits.")
    out, infl = {}, {}
    for v in [v for v in variables if v in fc]:
        ref = coarsen(truth[[v]].sel(time=valid).load(), fc.sizes[lat], fc.sizes[lon])[v]
        ref = ref.values.reshape(fc[v].shape)
        err = fc[v] - ref
        out[v] = np.sqrt((err**2 * w).mean(("init_time", lat, lon)))
        out[v].attrs = {"units": truth[v].attrs.get("units", ""), "long_name": f"RMSE of {v}"}
        if inflation:
            e = err.transpose("lead_time", "init_time", lat, lon).values
            infl[v] = xr.DataArray([correlation_inflation(x) for x in e], dims=("lead_time",),
                                   coords={"lead_time": err["lead_time"]},
                                   attrs={"long_name": f"error variance inflation of {v}"})
    ds = xr.Dataset(out)
    ds.attrs["inits"] = ", ".join(str(t) for t in inits)
    ds.attrs["description"] = "emulator forecast RMSE against the conservatively coarsened truth"
    if not inflation:
        return ds
    return ds, xr.Dataset(infl, attrs={"inits": ds.attrs["inits"], "description": (
        "N / N_eff of the forecast errors (correlation_inflation)")})


def correlation_inflation(errors: np.ndarray) -> float:
    """``N / N_eff`` of error fields: how much to inflate an error variance so that ``N``
    spatially correlated errors, treated as independent by the likelihood, carry the
    information of the ``N_eff`` independent ones they are worth.

    ``N_eff = (sum_k P_k)^2 / sum_k P_k^2`` is the participation ratio of the errors' power
    spectrum ``P`` (an orthonormal transform: FFT along longitude, DCT-II along latitude,
    ``N = H W`` coefficients): ``N`` for white errors (inflation 1), ``m`` for errors that live
    in ``m`` modes of equal power. ``P_k^2`` is estimated without bias from ``S`` independent
    samples, ``(sum_s p_ks)^2 - sum_s p_ks^2`` over ``S (S - 1)``, so a few samples do not
    inflate it.

    Parameters
    ----------
    errors : array, shape (S, H, W)
        ``S >= 2`` independent error fields (e.g. forecasts from different initial times at one
        lead) on a regular grid, longitude last (periodic).

    Returns
    -------
    float
        ``>= 1``.
    """
    from scipy.fft import dct, fft

    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 3 or e.shape[0] < 2:
        raise ArgumentError(f"errors must have shape (S >= 2, H, W), got {e.shape}.")
    coef = fft(dct(e, type=2, axis=1, norm="ortho"), axis=2, norm="ortho")
    p = np.abs(coef) ** 2  # (S, H, W) power per sample and mode
    s = p.shape[0]
    total = p.mean(axis=0).sum()
    if not np.isfinite(total) or total <= 0:
        return 1.0
    p2 = ((p.sum(axis=0) ** 2 - (p**2).sum(axis=0)) / (s * (s - 1))).sum()
    n = p.shape[1] * p.shape[2]
    return float(max(1.0, n * p2 / total**2))


def at_lead(stats: xr.Dataset, lead: Any) -> dict[str, float]:
    """Every variable of ``stats`` (dims ``lead_time``, e.g. :func:`forecast_errors`' RMSE or
    inflation) at ``lead``, linearly interpolated in lead and held at the ends."""
    hours = pd.to_timedelta(stats["lead_time"].values) / pd.Timedelta(hours=1)
    at = pd.Timedelta(lead) / pd.Timedelta(hours=1)
    return {str(v): float(np.interp(at, hours, stats[v].values)) for v in stats.data_vars}


def forecast_sigma(
    errors: xr.Dataset, lead: Any, *, floor: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Error variances of a forecast at ``lead``, as ``sigma_y`` of a grid source.

    Parameters
    ----------
    errors : xarray.Dataset
        :func:`forecast_errors` output.
    lead : timedelta-like
        Lead time of the forecast used; linearly interpolated between the leads of ``errors``
        (held at the ends).
    floor : mapping, optional
        Smallest error *standard deviation* per variable (e.g. the coarse analysis's error).

    Returns
    -------
    dict
        ``{variable: variance}`` in model units squared.
    """
    lead = pd.Timedelta(lead)
    out = {}
    for v, s in at_lead(errors, lead).items():
        if floor and v in floor:
            s = max(s, float(floor[v]))
        if not np.isfinite(s) or s <= 0:
            raise ArgumentError(f"errors: the error of {v!r} at lead {lead} is {s!r}, not > 0.")
        out[str(v)] = s * s
    return out
