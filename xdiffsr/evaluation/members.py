"""The ensemble dimension under its names in the ecosystem."""

from __future__ import annotations

from collections.abc import Hashable

import xarray as xr

from xdiffsr.errors import ArgumentError

__all__ = ["ENSEMBLE_DIMS", "ensemble_dim"]

#: Names of the ensemble dimension found without ``member_dim=``: xdiffsr's ``member``, cfgrib's
#: and ECMWF's ``number``, CF's and WeatherBench-X's ``realization``, earth2studio's
#: ``ensemble``.
ENSEMBLE_DIMS = ("member", "number", "realization", "ensemble")


def ensemble_dim(
    obj: xr.DataArray | xr.Dataset, member_dim: Hashable | None = None
) -> Hashable | None:
    """The ensemble dimension of ``obj``: ``member_dim`` when given, else the one of
    :data:`ENSEMBLE_DIMS` that ``obj`` has (None when it has none: a deterministic field).

    Raises
    ------
    ArgumentError
        ``obj`` has several of them and no ``member_dim`` says which.
    """
    if member_dim is not None:
        return member_dim
    found = [d for d in ENSEMBLE_DIMS if d in obj.dims]
    if len(found) > 1:
        raise ArgumentError(
            f"member_dim: {tuple(obj.dims)} hold several ensemble dimensions {found}; pass "
            "member_dim= naming the one to use."
        )
    return found[0] if found else None
