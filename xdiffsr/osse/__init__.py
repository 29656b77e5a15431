"""Observing-system simulation experiment (OSSE): nature run, coarse emulator, coarse analysis.

Needs the optional dependencies ``dinosaur`` and ``jax`` (``pip install 'xdiffsr[osse]'``); they are
imported only when a model is built. See ``docs/osse.md``. The cycling of the emulator with a
reconstruction (the paper's sequential experiment) lives in :mod:`xdiffsr.evaluation.cycling`.
"""

from xdiffsr.osse.emulator import COARSE_GRID, Emulator, cell_centre_grid, coarse_grid, coarsen
from xdiffsr.osse.forecast_error import forecast_errors, forecast_sigma
from xdiffsr.osse.nature import (
    EPOCH,
    branch_nature_run,
    check_mass_conservation,
    global_mean_surface_pressure,
    held_suarez_check,
    nature_run,
    restart_path,
)
from xdiffsr.osse.satellite import simulate_radiances, swath_mask, swath_points

__all__ = [
    "COARSE_GRID",
    "EPOCH",
    "Emulator",
    "branch_nature_run",
    "cell_centre_grid",
    "check_mass_conservation",
    "coarse_grid",
    "coarsen",
    "forecast_errors",
    "forecast_sigma",
    "global_mean_surface_pressure",
    "held_suarez_check",
    "nature_run",
    "restart_path",
    "simulate_radiances",
    "swath_mask",
    "swath_points",
]
