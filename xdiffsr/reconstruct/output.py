"""Members as a CF-annotated Dataset with provenance attributes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.grid import Grid
from xdiffsr.models.prior import Prior
from xdiffsr.reconstruct.settings import SamplerSettings


def _to_dataset(
    data,
    times,
    tname,
    grid: Grid,
    prior: Prior,
    sources,
    weights,
    settings: SamplerSettings,
    diagnostics: xr.Dataset | None = None,
) -> xr.Dataset:
    """The members as a Dataset; the ``sampler`` attribute is strict JSON
    (:meth:`SamplerSettings.to_json`: an infinite ``S_tmax`` is the string ``"inf"``). The
    ``diagnostics`` variables (time, source), if given, are added."""
    lat_name, lon_name = "lat", "lon"
    coords = {
        tname: (tname, times),
        "member": ("member", np.arange(data.shape[1])),
        lat_name: (
            lat_name,
            grid.lat,
            {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
        ),
        lon_name: (
            lon_name,
            grid.lon,
            {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
        ),
    }
    data_vars = {}
    for c, v in enumerate(prior.variables):
        attrs = {
            k: val
            for k, val in prior.attrs.get(v, {}).items()
            if k in ("standard_name", "long_name", "units")
        }
        attrs["units"] = prior.units[v] or attrs.get("units", "")
        data_vars[v] = ((tname, "member", lat_name, lon_name), data[:, :, c], attrs)
    ds = xr.Dataset(data_vars, coords=coords)
    if diagnostics is not None:
        ds = ds.assign(diagnostics.assign_coords({tname: ds[tname]}).data_vars)
    ds[tname].attrs.update({"standard_name": "time", "axis": "T"})
    ds["member"].attrs.update({"long_name": "ensemble member", "standard_name": "realization"})
    ds.attrs.update(
        {
            "title": "xdiffsr posterior ensemble",
            "Conventions": "CF-1.8",
            "model": prior.describe(),
            "sampler": settings.to_json(),
            "sources": json.dumps([s.describe() for s in sources]),
            "weights": json.dumps([float(x) for x in weights]),
            **grid.describe(),
            "history": f"{pd.Timestamp.now('UTC'):%Y-%m-%dT%H:%M:%SZ} xdiffsr.super_resolve",
        }
    )
    return ds
