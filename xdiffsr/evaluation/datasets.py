"""The datasets shipped with the package: a held-out nature-run state and the IGRA stations.

Used by ``xdiffsr demo``, ``xdiffsr evaluate`` and ``xdiffsr sequential`` as their defaults. The
coarse grid they observe on is :func:`coarse_grid`, the one definition of the paper's 16 x 32
(11.25-degree) grid (:data:`xdiffsr.osse.COARSE_GRID`; longitudes 0, 11.25, ..., 348.75).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from xdiffsr.osse import COARSE_GRID, coarse_grid

__all__ = ["COARSE_GRID", "HELDOUT", "STATIONS", "coarse_grid", "load_heldout", "load_stations"]

DATA = Path(__file__).resolve().parents[1] / "data"
HELDOUT = DATA / "osse-heldout.nc"
STATIONS = DATA / "igra-stations.csv"


def load_heldout(path: str | Path = HELDOUT) -> xr.Dataset:
    """The packaged held-out nature-run state(s): flat variables on (time, lat, lon)."""
    return xr.load_dataset(path)


def load_stations(path: str | Path = STATIONS) -> pd.DataFrame:
    """IGRA v2 radiosonde stations active in the station list's last year (id, lat, lon)."""
    return pd.read_csv(path)
