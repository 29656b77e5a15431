"""Observing-system simulation experiment (OSSE): nature run, coarse emulator, coarse analysis.

Needs the optional dependencies ``dinosaur`` and ``jax`` (``pip install 'xdiffsr[osse]'``); they are
imported only when a model is built. See ``docs/osse.md``.
"""

from xdiffsr.osse.emulator import Emulator, cell_centre_grid, coarsen, sequential_experiment
from xdiffsr.osse.nature import (
    EPOCH,
    check_mass_conservation,
    global_mean_surface_pressure,
    held_suarez_check,
    nature_run,
    restart_path,
)

__all__ = [
    "EPOCH",
    "Emulator",
    "cell_centre_grid",
    "check_mass_conservation",
    "coarsen",
    "global_mean_surface_pressure",
    "held_suarez_check",
    "nature_run",
    "restart_path",
    "sequential_experiment",
]
