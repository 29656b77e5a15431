"""Validating the arguments of a reconstruction into one :class:`Plan`."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError, XDiffSRWarning
from xdiffsr.grid import Grid, find_time, grid_of, has_latlon, to_datetime64
from xdiffsr.models.prior import Prior
from xdiffsr.observations.sources import Observations, as_source
from xdiffsr.reconstruct.sample import truncation_of
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
    member_dim: str = "member"
    time_values: Any = None
    coord_attrs: dict | None = None
    history: str | None = None

    def output_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`xdiffsr.reconstruct.output.to_dataset` that keep the
        caller's names, times, coordinate attributes and history."""
        return {"member_dim": self.member_dim, "time_values": self.time_values,
                "coord_attrs": self.coord_attrs, "history": self.history}


def check_weights(weights, n: int, sources: Sequence[Observations]) -> list[float]:
    if weights is None:
        return [1.0 if s.weight is None else float(s.weight) for s in sources]
    if isinstance(weights, str | bytes) or not _is_numbers(weights):
        raise ArgumentError(
            f"weights={weights!r} is not a list of numbers; give one number >= 0 per obs "
            f"source ({n} here), e.g. weights=[1.0, 0.5]."
        )
    w = [float(x) for x in np.atleast_1d(np.asarray(weights, dtype=float))]
    if len(w) != n:
        raise ArgumentError(
            f"weights has {len(w)} values for {n} obs sources; give one weight per entry of obs."
        )
    if any(not np.isfinite(x) or x < 0 for x in w):
        raise ArgumentError(f"weights={weights!r} must be finite and >= 0.")
    return w


def _is_numbers(values: Any) -> bool:
    """True if ``values`` is a real number or a flat sequence of them (no strings, no bools)."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        return False
    return arr.ndim <= 1 and arr.dtype.kind in "iuf"


def _warn_prior_only(sources: Sequence[Observations], weights: Sequence[float],
                     settings: SamplerSettings) -> None:
    """Warn when guidance is asked for but nothing can guide: the members are prior samples."""
    if settings.guidance == "none":
        return
    if not sources:
        why = "obs is empty"
    elif not any(w > 0 for w in weights):
        why = f"every source weight is 0 (weights={list(weights)})"
    else:
        return
    warnings.warn(
        f"{why}: the members are unguided prior samples. Give observations with weights > 0, "
        "or pass guidance='none' to ask for prior samples.",
        XDiffSRWarning,
        stacklevel=4,
    )


def check_device(device: Any, *, lazy: bool = False) -> torch.device | None:
    """Validate ``device``: a torch device name, available here unless the result is ``lazy``
    (then dask workers resolve it, and may have devices this process lacks).

    Raises
    ------
    ArgumentError
        A name torch does not know (``"gpu0"``), or a CUDA/MPS device that is not available.
    """
    if device is None:
        return None
    if not isinstance(device, str | torch.device):
        raise ArgumentError(
            f"device={device!r} must be a string such as 'cpu', 'cuda' or 'cuda:1', or a "
            "torch.device."
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ArgumentError(
            f"device={device!r} is not a torch device ({err}); use 'cpu', 'cuda', 'cuda:<index>'"
            " or 'mps', or leave device=None for CUDA when available, else the CPU."
        ) from err
    if lazy:
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ArgumentError(
                f"device={device!r}: no CUDA device is available here (torch "
                f"{torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu', or "
                "leave device=None to pick CUDA only when available."
            )
        if dev.index is not None and dev.index >= n:
            raise ArgumentError(
                f"device={device!r}: only {n} CUDA device(s) are visible (indices 0..{n - 1}); "
                "pick one of those (check CUDA_VISIBLE_DEVICES)."
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ArgumentError(f"device={device!r}: MPS is not available here; use device='cpu'.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ArgumentError(
            f"device={device!r}: xdiffsr runs on 'cpu', 'cuda' or 'mps', not {dev.type!r}."
        )
    return dev


def _physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None if unknown."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_output_memory(plan: Plan, model: Prior, n_chunk: int | None) -> None:
    """Refuse a reconstruction whose members cannot fit in this machine's memory.

    An eager result holds ``times x members x state`` float32 values (plus one time's members
    in float64 while sampling); a lazy one holds a chunk of times per task.

    Raises
    ------
    ArgumentError
        Naming ``members``, the bytes needed and the fixes (fewer members, ``chunks=``).
    """
    total = _physical_memory()
    if total is None:
        return
    members = plan.settings.members
    state = int(np.prod(model.state_shape))
    n_times = len(plan.times) if n_chunk is None else min(n_chunk, max(len(plan.times), 1))
    need = n_times * members * state * 4 + members * state * 8
    if need <= total:
        return
    fix = (
        "fewer members" if n_times <= 1
        else "fewer members, or chunks={'time': n} (a lazy result, or reconstruct_to_zarr) "
        "so that one task holds fewer times"
    )
    raise ArgumentError(
        f"members={members} for {n_times} time(s) of a {model.state_shape} state needs "
        f"{need / 2**30:.3g} GiB for the output, more than the {total / 2**30:.3g} GiB of memory "
        f"of this machine; use {fix}."
    )


_OUTPUT_GRIDS = ("ds", "model")


def output_grid_of(
    ds: xr.Dataset, prior: Prior, output_grid: str = "ds"
) -> tuple[Grid, tuple[np.ndarray, np.ndarray]]:
    """The grid of ``ds`` if it carries one (the model's points in any order/convention), the
    model grid if it carries none or ``output_grid="model"``; any other grid is refused."""
    H, W = prior.grid.shape
    if output_grid not in _OUTPUT_GRIDS:
        raise ArgumentError(
            f"output_grid={output_grid!r}: choose 'ds' (the grid of ds, which must hold the "
            "model's points) or 'model' (the model grid; regrid the result afterwards with "
            "xdiffsr.regrid.Regridder)."
        )
    if output_grid == "model" or not has_latlon(ds):
        return prior.grid, (np.arange(H), np.arange(W))
    fix = (
        "pass output_grid='model' for the result on the model grid (then regrid it yourself, "
        "e.g. with xdiffsr.regrid.Regridder), or a ds with only a time coordinate"
    )
    try:
        target = grid_of(ds, argname="ds")
    except CoordinateError as err:
        raise CoordinateError(
            f"ds has latitude/longitude coordinates but not a grid the result can be put on "
            f"({err}); {fix}."
        ) from err
    perm = prior.grid.permutation_to(target)
    if perm is None:
        raise CoordinateError(
            f"ds has a {target.shape[0]}x{target.shape[1]} lat/lon grid "
            f"({target.lat_name}/{target.lon_name}) that is not the model's "
            f"{H}x{W} grid; the result is not regridded silently: {fix}."
        )
    return target, perm


def _check_member_dim(member_dim: Any, ds: xr.Dataset, grid: Grid, tname: str) -> str:
    taken = {tname, grid.lat_name, grid.lon_name}
    if not isinstance(member_dim, str) or not member_dim or member_dim in taken:
        raise ArgumentError(
            f"member_dim={member_dim!r} must be a name for the ensemble dimension other than "
            f"{sorted(taken)}, e.g. 'member', 'realization', 'number' or 'ensemble'."
        )
    return member_dim


def make_plan(
    ds: xr.Dataset,
    obs: Sequence[Any],
    weights: Sequence[float] | None,
    model: Prior,
    settings: SamplerSettings,
    *,
    member_dim: str = "member",
    output_grid: str = "ds",
    assume_units: bool = False,
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
    truncation_of(model, settings)  # a band limit the prior cannot take: refused before work
    if isinstance(obs, pd.DataFrame | xr.Dataset | xr.DataArray | Observations):
        obs = [obs]
    if not isinstance(obs, Sequence) or isinstance(obs, str | bytes):
        raise ArgumentError(
            f"obs={type(obs).__name__} is not a list of observation sources; give a list of "
            "DataFrames, Datasets or xdiffsr.Observations (an empty list for prior samples)."
        )
    if not isinstance(ds, xr.Dataset):
        raise ArgumentError(
            f"ds={type(ds).__name__} must be an xarray Dataset with a time coordinate, e.g. "
            "xr.Dataset(coords={'time': times})."
        )
    sources = [as_source(o, model, assume_units=assume_units) for o in obs]
    w = check_weights(weights, len(sources), sources)
    _warn_prior_only(sources, w, settings)
    tname = find_time(ds, argname="ds")
    if tname is None:
        raise ArgumentError(
            "ds has no datetime time coordinate; it supplies the times to "
            "reconstruct (e.g. xr.Dataset(coords={'time': times}))."
        )
    times = to_datetime64(ds[tname].values)
    grid, (ilat, ilon) = output_grid_of(ds, model, output_grid)
    names = (tname, grid.lat_name, grid.lon_name)
    return Plan(
        times, tname, sources, w, grid, np.asarray(ilat), np.asarray(ilon), settings,
        member_dim=_check_member_dim(member_dim, ds, grid, tname),
        time_values=ds[tname].values,
        coord_attrs={n: dict(ds[n].attrs) for n in names if n in ds.coords},
        history=ds.attrs.get("history"),
    )


def time_chunks(ds: xr.Dataset, tname: str, chunks) -> int | None:
    if chunks is not None:
        n = chunks.get(tname, chunks.get("time")) if isinstance(chunks, Mapping) else chunks
        if n is None or int(n) != n or int(n) < 1:
            raise ArgumentError(f"chunks={chunks!r}: give {{'{tname}': n}} with n >= 1.")
        return int(n)
    sizes = ds.chunksizes.get(tname) if ds.chunks else None
    return int(sizes[0]) if sizes else None
