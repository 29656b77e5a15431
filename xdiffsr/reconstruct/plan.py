"""Validating the arguments of a reconstruction into one :class:`Plan`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.grid import Grid, find_time, grid_of, to_datetime64
from xdiffsr.models.prior import Prior
from xdiffsr.observations.sources import Observations, as_source
from xdiffsr.reconstruct.settings import SamplerSettings


@dataclass
class Plan:
    """Everything a reconstruction needs besides the prior: validated sources, weights, times,
    output grid and sampler settings (shared by the eager, lazy and zarr paths)."""

    times: np.ndarray
    tname: str
    sources: list[Observations]
    weights: list[float]
    grid: Grid
    ilat: np.ndarray
    ilon: np.ndarray
    settings: SamplerSettings


def _check_weights(weights, n: int, sources: Sequence[Observations]) -> list[float]:
    if weights is None:
        return [1.0 if s.weight is None else float(s.weight) for s in sources]
    w = list(np.atleast_1d(np.asarray(weights, dtype=float)))
    if len(w) != n:
        raise ArgumentError(
            f"weights has {len(w)} values for {n} obs sources; give one weight per entry of obs."
        )
    if any(not np.isfinite(x) or x < 0 for x in w):
        raise ArgumentError(f"weights={weights!r} must be finite and >= 0.")
    return w


def _output_grid(ds: xr.Dataset, prior: Prior) -> tuple[Grid, tuple[np.ndarray, np.ndarray]]:
    """The grid of ``ds`` if it carries one (same points as the model, any order/convention)."""
    try:
        target = grid_of(ds, argname="ds")
    except Exception:  # no lat/lon in ds: the model grid
        H, W = prior.grid.shape
        return prior.grid, (np.arange(H), np.arange(W))
    perm = prior.grid.permutation_to(target)
    if perm is None:
        raise CoordinateError(
            f"ds has a {target.shape[0]}x{target.shape[1]} lat/lon grid that is not the model's "
            f"{prior.grid.shape[0]}x{prior.grid.shape[1]} grid; pass a Dataset with only a time "
            "coordinate (the result is on the model grid) or regrid the result afterwards."
        )
    return target, perm


def _plan(
    ds: xr.Dataset,
    obs: Sequence[Any],
    weights: Sequence[float] | None,
    model: Prior,
    settings: SamplerSettings,
) -> Plan:
    """Validate the arguments of :func:`super_resolve` and gather them in a :class:`Plan`."""
    if not isinstance(model, Prior):
        raise ArgumentError(
            f"model={model!r} is not an xdiffsr prior; pass xdiffsr.load_model(...) or an "
            "xdiffsr.GaussianPrior."
        )
    if not isinstance(settings, SamplerSettings):
        raise ArgumentError(
            f"settings={settings!r} is not a SamplerSettings; build one with "
            "xdiffsr.SamplerSettings.from_options(...)."
        )
    if isinstance(obs, pd.DataFrame | xr.Dataset | Observations):
        obs = [obs]
    sources = [as_source(o, model) for o in obs]
    w = _check_weights(weights, len(sources), sources)
    tname = find_time(ds, argname="ds")
    if tname is None:
        raise ArgumentError(
            "ds has no datetime time coordinate; it supplies the times to "
            "reconstruct (e.g. xr.Dataset(coords={'time': times}))."
        )
    times = to_datetime64(ds[tname].values)
    grid, (ilat, ilon) = _output_grid(ds, model)
    return Plan(times, tname, sources, w, grid, np.asarray(ilat), np.asarray(ilon), settings)


def _time_chunks(ds: xr.Dataset, tname: str, chunks) -> int | None:
    if chunks is not None:
        n = chunks.get(tname, chunks.get("time")) if isinstance(chunks, Mapping) else chunks
        if n is None or int(n) != n or int(n) < 1:
            raise ArgumentError(f"chunks={chunks!r}: give {{'{tname}': n}} with n >= 1.")
        return int(n)
    sizes = ds.chunksizes.get(tname) if ds.chunks else None
    return int(sizes[0]) if sizes else None
