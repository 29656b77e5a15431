"""The sequential experiment's cycle: forecast, reconstruct, coarsen, restart (the paper's Sect. 4).

:func:`sequential_experiment` cycles the coarse emulator (:class:`xdiffsr.osse.Emulator`) with a
reconstruction step; :func:`analysis_cycle` builds that step from a super-resolution function and
the soundings. Both the OSSE suite (``IGRA+emulator reinit``) and the scored sequential
experiment (:func:`xdiffsr.evaluation.sequential.evaluate_sequential`) use them.

References
----------
.. [1] Chakraborty, D. et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models (the sequential experiment with the LUCIE emulator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import find_latlon
from xdiffsr.observations.sources import GridObservations, PointObservations
from xdiffsr.observations.vertical import soundings_to_observations
from xdiffsr.osse import COARSE_GRID, coarsen
from xdiffsr.regrid import Regridder

__all__ = ["analysis_cycle", "reinitialised", "sequential_experiment"]


def _cycles(
    emulator: Any, days: float, cycle: str | pd.Timedelta | None
) -> tuple[pd.Timedelta, int]:
    """The cycle length (a multiple of ``emulator.every``) and the number of cycles in ``days``."""
    step = pd.Timedelta(cycle) if cycle is not None else pd.Timedelta(emulator.every)
    if step <= pd.Timedelta(0) or step % pd.Timedelta(emulator.every):
        raise ArgumentError(
            f"cycle: {cycle!r} is not a positive multiple of the emulator's output interval "
            f"{emulator.every}"
        )
    n_cycles = pd.Timedelta(days=days) / step
    if n_cycles < 1 or n_cycles != int(n_cycles):
        raise ArgumentError(
            f"days: {days!r} is not a positive whole number of {step} cycles; change days or cycle"
        )
    return step, int(n_cycles)


def sequential_experiment(
    emulator: Any,
    init: xr.Dataset,
    reconstruct: Callable[[xr.Dataset, np.datetime64], xr.Dataset],
    *,
    days: float = 7,
    coarse_grid: tuple[int, int] = COARSE_GRID,
    cycle: str | pd.Timedelta | None = None,
) -> xr.Dataset:
    """Cycle forecast -> reconstruction -> coarsening -> restart, as in the paper's Sect. 4.

    Parameters
    ----------
    emulator : Emulator
        The forecast model (anything with ``every`` and ``forecast(init, lead_days=, every=)``),
        e.g. :class:`xdiffsr.osse.Emulator`.
    init : Dataset
        Initial state (time=1, lat, lon) with the 13 variables, any regular grid.
    reconstruct : callable
        ``reconstruct(background, valid_time) -> analysis``: e.g. super-resolution of the forecast
        ``background`` (lat, lon on the emulator grid) with radiosondes valid at ``valid_time``;
        returns the 13 variables on any regular grid.
    days : float
        Length of the experiment.
    coarse_grid : (int, int)
        Grid the analysis is coarsened to before restarting the emulator (default
        :data:`xdiffsr.osse.COARSE_GRID`).
    cycle : str or Timedelta, optional
        Forecast length between reconstructions, a multiple of ``emulator.every`` (default: equal
        to it, 6 h). ``"12h"`` makes every cycle end at a radiosonde time (00 and 12 UTC) when
        the experiment starts at one.

    Returns
    -------
    Dataset
        The analyses stacked along ``time`` (on the grid ``reconstruct`` returns), one per cycle.
    """
    if "time" not in init.dims or init.sizes["time"] != 1:
        raise ArgumentError("init: pass a single time (dims time=1, lat, lon)")
    step, n_cycles = _cycles(emulator, days, cycle)
    t = pd.Timestamp(init["time"].values[0])
    state = init
    analyses = []
    for _ in range(n_cycles):
        fc = emulator.forecast(state, lead_days=step / pd.Timedelta(days=1), every=str(step))
        t = t + step
        background = fc.isel(init_time=0, lead_time=-1, drop=True)
        analysis = reconstruct(background, np.datetime64(t))
        analyses.append(analysis.expand_dims(time=[t]))
        state = coarsen(analysis, *coarse_grid).expand_dims(time=[t])
    return xr.concat(analyses, dim="time")


def analysis_cycle(
    variables: Sequence[str],
    sondes_at: Callable[[Sequence], pd.DataFrame],
    sr: Callable,
    weight: float,
    store: dict,
    background_sigma: Mapping[str, float] | None = None,
    sondes_sigma: Mapping[str, float] | None = None,
) -> Callable[[xr.Dataset, np.datetime64], xr.Dataset]:
    """The reconstruction step of :func:`sequential_experiment`.

    ``cycle(background, valid_time)`` super-resolves the emulator's ``background`` (weight
    ``weight``) with the soundings ``sondes_at([valid_time])`` (weight 1, when there are any)
    through ``sr(times, obs, weights)``, keeps the ensemble in ``store[valid_time]`` and returns
    the ensemble mean as the analysis; variables the prior lacks are the background's own
    (bilinearly regridded), so the emulator can restart from every variable it needs.
    ``background_sigma`` (``{variable: variance}``, e.g. the emulator's error at one cycle's
    lead, :func:`xdiffsr.osse.forecast_sigma`) replaces the background's default errors, and
    ``sondes_sigma`` the soundings' (e.g. fitted by
    :func:`xdiffsr.evaluation.calibration.calibrate`).
    """

    def cycle(background: xr.Dataset, vt: np.datetime64) -> xr.Dataset:
        bg = background[[v for v in variables if v in background]].expand_dims(time=[vt])
        if background_sigma is not None:
            bg = GridObservations(bg, sigma_y=dict(background_sigma), name="emulator")
        obs, w = [bg], [float(weight)]
        sondes = sondes_at([vt])
        if len(sondes):
            if sondes_sigma is not None:
                sondes = PointObservations(
                    soundings_to_observations(sondes, list(variables)), sigma_y=dict(sondes_sigma),
                    name="IGRA", assume_units=True,
                )
            obs, w = [sondes, *obs], [1.0, *w]
        ens = sr([vt], obs, w)
        store[pd.Timestamp(vt)] = ens
        # the state only: diagnostics (obs_*, on a source dimension) do not restart the emulator
        state = [v for v in variables if v in ens.data_vars]
        analysis = ens[state].isel(time=0, drop=True).mean("member")
        rest = [v for v in background.data_vars if v not in analysis]
        if rest:  # variables the prior lacks: the emulator's own, for the restart
            fill = Regridder(background, analysis, "bilinear")(background[rest])
            analysis = analysis.merge(fill.drop_vars([c.name for c in find_latlon(fill, "fill")]))
        return analysis

    return cycle


def reinitialised(
    init: xr.Dataset,
    variables: Sequence[str],
    sondes_at: Callable[[Sequence], pd.DataFrame],
    sr: Callable,
    emulator: Any,
    lead: pd.Timedelta,
    weight: float,
    background_sigma: Mapping[str, float] | None = None,
    sondes_sigma: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """The reinitialised ensemble at each time of ``init`` + ``lead`` (stacked along ``time``).

    For each initial state ``init.isel(time=[k])`` (a coarsened truth), the sequential experiment
    runs for ``lead`` with :func:`analysis_cycle` (a cycle of ``emulator.every``) and the
    ensemble of its last cycle is kept: the suite's ``IGRA+emulator reinit`` configuration.
    """
    out = []
    for k, t0 in enumerate(pd.DatetimeIndex(init["time"].values)):
        store: dict[pd.Timestamp, xr.Dataset] = {}
        cycle = analysis_cycle(
            variables, sondes_at, sr, weight, store, background_sigma, sondes_sigma
        )
        sequential_experiment(
            emulator, init.isel(time=[k]), cycle, days=lead / pd.Timedelta(days=1)
        )
        out.append(store[t0 + lead])
    return xr.concat(out, dim="time")
