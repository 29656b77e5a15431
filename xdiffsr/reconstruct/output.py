"""Members as a CF-annotated Dataset on the caller's grid, with provenance attributes.

The result keeps the caller's names: the time dimension and the latitude/longitude coordinates
of ``ds`` (``latitude``/``longitude`` stay so, in their stored order and longitude convention),
so that ``ens.t2m.mean("member") - truth.t2m`` aligns instead of broadcasting. Every attribute
is a plain string or strict JSON (no ``NaN``/``Infinity``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr._version import __version__
from xdiffsr.grid import Grid
from xdiffsr.models.prior import Prior
from xdiffsr.reconstruct.settings import SamplerSettings

_LAT = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
_LON = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}


def _strict(value: Any) -> str:
    """``value`` as strict JSON (non-finite numbers as the strings "nan"/"inf")."""

    def clean(v: Any) -> Any:
        if isinstance(v, float | np.floating) and not np.isfinite(v):
            return str(float(v))
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), allow_nan=False, default=str)


def provenance(
    prior: Prior,
    sources: Sequence[Any],
    weights: Sequence[float],
    settings: SamplerSettings,
    history: str | None = None,
) -> dict[str, str]:
    """The provenance attributes of a result: xdiffsr version, model name and sha256, every
    sampler setting, the sources and their weights, and ``history`` with this run appended."""
    ref = getattr(prior, "reference", None)
    stamp = f"{pd.Timestamp.now('UTC'):%Y-%m-%dT%H:%M:%SZ} xdiffsr {__version__} super_resolve"
    history = str(history).rstrip() if history else ""
    return {
        "xdiffsr_version": __version__,
        "model": prior.describe(),
        "model_name": str(getattr(ref, "name", None) or prior.name),
        "model_sha256": prior.fingerprint(),
        "model_file_sha256": str(getattr(ref, "sha256", "") or ""),
        "sampler": settings.to_json(),
        "sources": _strict([s.describe() for s in sources]),
        "weights": _strict([float(x) for x in weights]),
        "history": f"{history}\n{stamp}" if history else stamp,
    }


def to_dataset(
    data,
    times,
    tname,
    grid: Grid,
    prior: Prior,
    sources,
    weights,
    settings: SamplerSettings,
    diagnostics: xr.Dataset | None = None,
    *,
    member_dim: str = "member",
    history: str | None = None,
    time_values: Any = None,
    coord_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> xr.Dataset:
    """The members as a Dataset with dims (time, member, lat, lon) named as the caller's
    (``tname``, ``member_dim``, ``grid.lat_name``, ``grid.lon_name``); ``time_values`` (the
    caller's times, e.g. cftime dates) label the time axis when given, ``coord_attrs`` the
    caller's coordinate attributes. The ``sampler`` attribute is strict JSON
    (:meth:`SamplerSettings.to_json`: an infinite ``S_tmax`` is the string ``"inf"``). The
    ``diagnostics`` variables (time, source), if given, are added."""
    lat_name, lon_name = grid.lat_name, grid.lon_name
    attrs = {k: dict(v) for k, v in (coord_attrs or {}).items()}
    coords = {
        tname: (tname, times if time_values is None else time_values, attrs.get(tname, {})),
        member_dim: (member_dim, np.arange(data.shape[1])),
        lat_name: (lat_name, grid.lat, {**_LAT, **attrs.get(lat_name, {})}),
        lon_name: (lon_name, grid.lon, {**_LON, **attrs.get(lon_name, {})}),
    }
    data_vars = {}
    for c, v in enumerate(prior.variables):
        var_attrs = {
            k: val
            for k, val in prior.attrs.get(v, {}).items()
            if k in ("standard_name", "long_name", "units")
        }
        var_attrs["units"] = prior.units[v] or var_attrs.get("units", "")
        data_vars[v] = ((tname, member_dim, lat_name, lon_name), data[:, :, c], var_attrs)
    ds = xr.Dataset(data_vars, coords=coords)
    if diagnostics is not None:
        ds = ds.assign(diagnostics.assign_coords({tname: ds[tname]}).data_vars)
    ds[tname].attrs.update({"standard_name": "time", "axis": "T"})
    ds[member_dim].attrs.update(
        {"long_name": "ensemble member", "standard_name": "realization"}
    )
    ds.attrs.update(
        {
            "title": "xdiffsr posterior ensemble",
            "Conventions": "CF-1.8",
            **provenance(prior, sources, weights, settings, history),
            **grid.describe(),
        }
    )
    return ds
