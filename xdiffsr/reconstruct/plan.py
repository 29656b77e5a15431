"""Validating the arguments of a reconstruction into one :class:`Plan`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.core.memory import parse_memory
from xdiffsr.core.runtime import check_network_options
from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.grid import Grid, find_time, grid_of, to_datetime64
from xdiffsr.models.prior import Prior
from xdiffsr.observations.sources import Observations, as_source
from xdiffsr.reconstruct.settings import GUIDANCES, NETWORK_SETTINGS, SAMPLER_DEFAULTS


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
    settings: dict[str, Any]


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


def _check_batch_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ArgumentError(
            f"batch_size={value!r} must be a positive integer (members per network batch), or "
            "None for all members in one batch."
        )
    return int(value)


def _plan(
    ds: xr.Dataset,
    obs: Sequence[Any],
    weights: Sequence[float] | None,
    model: Prior,
    members: int,
    steps: int,
    seed: int,
    guidance: str,
    sampler: Mapping[str, Any],
) -> Plan:
    """Validate the arguments of :func:`super_resolve` and gather them in a :class:`Plan`."""
    if not isinstance(model, Prior):
        raise ArgumentError(
            f"model={model!r} is not an xdiffsr prior; pass xdiffsr.load_model(...) or an "
            "xdiffsr.GaussianPrior."
        )
    if guidance not in GUIDANCES:
        raise ArgumentError(f"guidance={guidance!r}; choose one of {GUIDANCES}.")
    for name, val in (("members", members), ("steps", steps)):
        if int(val) != val or val < 1:
            raise ArgumentError(f"{name}={val!r} must be a positive integer.")
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
    sampler = {**SAMPLER_DEFAULTS, **sampler}
    network = check_network_options(**{k: sampler[k] for k in NETWORK_SETTINGS})
    settings = dict(
        members=int(members),
        steps=int(steps),
        seed=int(seed),
        guidance=guidance,
        lambda_g=float(sampler["lambda_g"]),
        clip=sampler["clip"],
        cg_iters=int(sampler["cg_iters"]),
        S_churn=float(sampler["S_churn"]),
        S_tmin=float(sampler["S_tmin"]),
        S_tmax=float(sampler["S_tmax"]),
        S_noise=float(sampler["S_noise"]),
        corrector_guidance=bool(sampler["corrector_guidance"]),
        sigma_min=sampler["sigma_min"],
        sigma_max=sampler["sigma_max"],
        batch_size=_check_batch_size(sampler["batch_size"]),
        max_memory=parse_memory(sampler["max_memory"], "max_memory"),
        **network,
    )
    return Plan(times, tname, sources, w, grid, np.asarray(ilat), np.asarray(ilon), settings)


def _time_chunks(ds: xr.Dataset, tname: str, chunks) -> int | None:
    if chunks is not None:
        n = chunks.get(tname, chunks.get("time")) if isinstance(chunks, Mapping) else chunks
        if n is None or int(n) != n or int(n) < 1:
            raise ArgumentError(f"chunks={chunks!r}: give {{'{tname}': n}} with n >= 1.")
        return int(n)
    sizes = ds.chunksizes.get(tname) if ds.chunks else None
    return int(sizes[0]) if sizes else None
