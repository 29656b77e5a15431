"""Reference reconstructions that a diffusion posterior has to beat.

* :func:`interpolation_baseline`: bilinear, bicubic or conservative (piecewise-constant) remapping
  of a coarse field to the fine grid.
* :func:`climatology_baseline`: the training-data mean (optionally by time of day).
* :func:`unguided_baseline`: prior samples (the diffusion model without observations).
* :func:`optimal_interpolation_baseline`: a Gaussian prior fitted on the same training data and
  conditioned on the same observations; moment-matching guidance is exact for a Gaussian prior,
  so this is classical optimal interpolation (Gandin, 1963) with a low-rank background covariance.

References
----------
.. [1] Chakraborty, D. et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models (baselines: interpolation, unguided prior).
.. [2] Gandin, L. S. (1963). Objective Analysis of Meteorological Fields. Gidrometeoizdat.
.. [3] Rozet, F. et al. (2024). Learning diffusion priors from observations by expectation
   maximization (moment-matching posterior sampling).
.. [4] Jones, P. W. (1999). First- and second-order conservative remapping schemes. *Mon. Wea.
   Rev.*, 127, 2204-2210.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import find_latlon
from xdiffsr.models import GaussianPrior
from xdiffsr.reconstruct import super_resolve
from xdiffsr.regrid import Regridder

__all__ = [
    "INTERPOLATION_METHODS",
    "climatology_baseline",
    "interpolation_baseline",
    "optimal_interpolation_baseline",
    "unguided_baseline",
]

INTERPOLATION_METHODS = ("bilinear", "bicubic", "conservative")


def interpolation_baseline(
    coarse: xr.Dataset | xr.DataArray,
    target_grid: xr.Dataset | xr.DataArray,
    method: str = "bicubic",
) -> xr.Dataset | xr.DataArray:
    """Interpolate a coarse field to a fine grid.

    Parameters
    ----------
    coarse : Dataset or DataArray
        Fields with trailing (lat, lon) on a regular grid, e.g. (time, 16, 32).
    target_grid : Dataset or DataArray
        Anything carrying the destination lat/lon coordinates (e.g. the truth).
    method : {"bilinear", "bicubic", "conservative"}
        ``"conservative"`` from a coarse to a fine grid is first-order conservative remapping:
        each fine cell takes the area-weighted mean of the coarse cells it overlaps, i.e. a
        piecewise-constant field that preserves area means [4]_; ``"bicubic"`` is Keys cubic
        convolution.

    Returns
    -------
    Dataset or DataArray
        Same variables on the destination grid (shape (time, nlat, nlon) for (time, ...) input).

    References
    ----------
    .. [4] Jones (1999); Keys (1981), IEEE Trans. ASSP 29, 1153-1160.
    """

    if method not in INTERPOLATION_METHODS:
        raise ArgumentError(
            f"method={method!r} is not an interpolation baseline; choose one of "
            f"{INTERPOLATION_METHODS}"
        )
    return Regridder(coarse, target_grid, method=method)(coarse)


def climatology_baseline(
    train: xr.Dataset,
    times: Sequence | np.ndarray | pd.DatetimeIndex | None = None,
    *,
    by_hour: bool = False,
    dim: str = "time",
) -> xr.Dataset:
    """Climatological mean of the training data, as a deterministic reconstruction.

    Parameters
    ----------
    train : Dataset
        Training states, dims (time, lat, lon).
    times : array_like of datetime, optional
        Target times; the result is broadcast along them. ``None`` returns the (lat, lon) mean.
    by_hour : bool
        Mean over training states at the same hour of day as each target time (diurnal
        climatology); needs ``times``.
    dim : str
        Time dimension of ``train``.

    Returns
    -------
    Dataset
        (time, lat, lon) when ``times`` is given, else (lat, lon).
    """
    if dim not in train.dims or train.sizes[dim] < 1:
        raise ArgumentError(f"train: needs a non-empty {dim!r} dimension, has {dict(train.sizes)}")
    if times is None:
        if by_hour:
            raise ArgumentError("by_hour=True needs times=; pass the target times")
        return train.mean(dim, keep_attrs=True)
    times = pd.DatetimeIndex(np.atleast_1d(np.asarray(times, dtype="datetime64[ns]")))
    if not by_hour:
        mean = train.mean(dim, keep_attrs=True)
        return mean.expand_dims({dim: times}).transpose(dim, ...)
    hours = train[dim].dt.hour
    by = train.groupby(hours).mean(dim, keep_attrs=True)
    missing = sorted(set(times.hour) - set(by["hour"].values.tolist()))
    if missing:
        raise ArgumentError(
            f"times: no training state at hour(s) {missing} UTC for a diurnal climatology; "
            "pass by_hour=False"
        )
    out = by.sel(hour=xr.DataArray(times.hour, dims=dim)).drop_vars("hour")
    return out.assign_coords({dim: times}).transpose(dim, ...)


def _times_ds(times) -> xr.Dataset:
    t = np.atleast_1d(np.asarray(times, dtype="datetime64[ns]"))
    if t.size == 0:
        raise ArgumentError("times: pass at least one target time")
    return xr.Dataset(coords={"time": ("time", t)})


def unguided_baseline(
    model, times, *, members: int = 8, steps: int = 18, seed: int = 0, **sampler_options: Any
) -> xr.Dataset:
    """Samples of the prior alone (no observation): what the model knows without data.

    Parameters
    ----------
    model : Prior
        A diffusion model or GaussianPrior.
    times : array_like of datetime
        Times to label the samples with (they only set the seeds).
    members, steps, seed, **sampler_options
        As in :func:`xdiffsr.super_resolve`.

    Returns
    -------
    Dataset
        (time, member, lat, lon) on the model grid.
    """
    return super_resolve(
        _times_ds(times),
        [],
        model=model,
        members=members,
        steps=steps,
        seed=seed,
        guidance="none",
        **sampler_options,
    )


def optimal_interpolation_baseline(
    train: xr.Dataset,
    obs: Sequence[Any],
    times,
    *,
    weights: Sequence[float] | None = None,
    rank: int = 64,
    members: int = 8,
    steps: int = 18,
    cg_iters: int = 10,
    seed: int = 0,
    prior=None,
    **sampler_options: Any,
) -> xr.Dataset:
    """Optimal interpolation: a Gaussian prior fitted on ``train`` conditioned on ``obs``.

    The prior is :meth:`xdiffsr.GaussianPrior.fit` with a rank-``rank`` covariance (leading
    principal components plus a floor) and the posterior is sampled with moment-matching
    guidance, which is exact for a Gaussian prior (given enough ``cg_iters``): the Gaussian
    posterior of OI, ``mu + B H^T (H B H^T + R)^-1 (y - H mu)`` [2]_, as an ensemble.

    Parameters
    ----------
    train : Dataset
        Training states (time, lat, lon) on the grid to reconstruct; the model variables.
    obs, weights
        Observation sources and weights as in :func:`xdiffsr.super_resolve`.
    times : array_like of datetime
        Target times.
    rank : int
        Number of principal components of the background covariance.
    members, steps, cg_iters, seed, **sampler_options
        Sampler settings.
    prior : GaussianPrior, optional
        An already fitted prior (skips the fit).

    Returns
    -------
    Dataset
        (time, member, lat, lon).

    References
    ----------
    .. [2] Gandin (1963); Rozet et al. (2024).
    """
    if prior is None:
        find_latlon(train, "train")  # a CoordinateError naming what is missing
        prior = GaussianPrior.fit(train, rank=rank, name=f"gaussian-oi-rank{rank}")
    return super_resolve(
        _times_ds(times),
        list(obs),
        weights,
        model=prior,
        members=members,
        steps=steps,
        seed=seed,
        guidance="mmps",
        cg_iters=cg_iters,
        **sampler_options,
    )
