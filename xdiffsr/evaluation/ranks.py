"""Rank histograms (Talagrand diagrams) of ensembles against a verifying truth.

For each point the truth is ranked among the ``m`` members: its rank is the number of members
below it, ``0..m``. Over many points the ranks of a reliable ensemble (truth and members drawn
from the same distribution) are uniform, so the histogram is flat; an under-dispersive ensemble
puts the truth too often outside its range (a U shape), an over-dispersive one too often in the
middle (a dome), and a biased one tilts it. Ties (members equal to the truth, as with discrete or
clipped values) are broken at random, so that they do not pile up in one rank.

Counts pooled over neighbouring grid points are not independent: a chi-square test of flatness
that treats them as independent rejects too often. Compare shapes, or pool over well-separated
points and times.

References
----------
.. [1] Anderson, J. L. (1996). A method for producing and evaluating probabilistic forecasts from
   ensemble model integrations. *J. Climate*, 9, 1518-1530.
.. [2] Hamill, T. M. (2001). Interpretation of rank histograms for verifying ensemble forecasts.
   *Mon. Wea. Rev.*, 129, 550-560.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from xdiffsr.errors import ArgumentError

__all__ = ["rank_histogram"]


def _check(ensemble, truth, member_dim: Hashable, seed) -> int:
    if not isinstance(ensemble, xr.DataArray | xr.Dataset):
        raise ArgumentError(
            f"ensemble: expected an xarray DataArray or Dataset, got {type(ensemble).__name__}; "
            "pass e.g. ens['t850']"
        )
    if not isinstance(truth, type(ensemble)):
        raise ArgumentError(
            f"truth: expected a {type(ensemble).__name__} like the ensemble, got "
            f"{type(truth).__name__}; pass the verifying field of the same variable(s)"
        )
    if member_dim not in ensemble.dims:
        raise ArgumentError(
            f"member_dim: {member_dim!r} is not a dimension of the ensemble "
            f"{tuple(ensemble.dims)}; pass member_dim= naming the ensemble dimension"
        )
    if member_dim in truth.dims:
        raise ArgumentError(
            f"truth: has the ensemble dimension {member_dim!r}; select one field "
            f"(truth.isel({member_dim}=0)) or pass the truth without members"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ArgumentError(f"seed: expected a non-negative integer, got {seed!r}; pass seed=0")
    return int(ensemble.sizes[member_dim])


def _ranks(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ranks ``0..m`` of ``y`` (n,) among the rows of ``x`` (n, m), ties broken at random;
    -1 where ``y`` or any member is NaN."""
    below = np.sum(x < y[:, None], axis=1)
    ties = np.sum(x == y[:, None], axis=1)
    rank = below + rng.integers(0, ties + 1)
    valid = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
    return np.where(valid, rank, -1)


def _histogram(ens: xr.DataArray, truth: xr.DataArray, member_dim: Hashable,
               dims: Sequence[Hashable] | None, m: int, seed: int) -> xr.DataArray:
    ens, truth = xr.broadcast(ens, truth, exclude=[member_dim])
    all_dims = [d for d in truth.dims]
    pooled = all_dims if dims is None else list(dims)
    unknown = [d for d in pooled if d not in all_dims]
    if unknown:
        raise ArgumentError(
            f"dims: {unknown} are not dimensions of the truth {tuple(all_dims)}; pass dims= "
            "naming some of them, or None to pool over all"
        )
    kept = [d for d in all_dims if d not in pooled]
    order = kept + pooled
    y = np.asarray(truth.transpose(*order).values, dtype=float)
    x = np.asarray(ens.transpose(*order, member_dim).values, dtype=float)
    n_groups = int(np.prod([truth.sizes[d] for d in kept], dtype=int))
    y, x = y.reshape(n_groups, -1), x.reshape(n_groups, -1, m)
    rank = _ranks(x.reshape(-1, m), y.reshape(-1), np.random.default_rng(seed))
    group = np.repeat(np.arange(n_groups), y.shape[1])
    ok = rank >= 0
    counts = np.bincount(group[ok] * (m + 1) + rank[ok], minlength=n_groups * (m + 1))
    counts = counts.reshape(*[truth.sizes[d] for d in kept], m + 1)
    coords = {d: truth[d] for d in kept if d in truth.coords}
    coords["rank"] = np.arange(m + 1)
    return xr.DataArray(
        counts, dims=(*kept, "rank"), coords=coords, name="rank_histogram",
        attrs={"long_name": "rank of the truth among the members", "units": "1",
               "members": m, "skipped": int((~ok).sum())},
    ).transpose("rank", *kept)


def rank_histogram(
    ensemble: xr.DataArray | xr.Dataset,
    truth: xr.DataArray | xr.Dataset,
    member_dim: Hashable = "member",
    *,
    dims: Sequence[Hashable] | None = None,
    seed: int = 0,
) -> xr.DataArray | xr.Dataset:
    """Counts of the rank of the truth among the ensemble members (a Talagrand diagram).

    At each point the rank is the number of members strictly below the truth plus a uniform
    random share of the members equal to it (ties broken at random with ``seed``), so it runs
    from 0 (truth below every member) to ``m`` (above every member). The ranks of a reliable
    ensemble are uniform [1]_; a U shape means too little spread, a dome too much, a slope a
    bias [2]_.

    Parameters
    ----------
    ensemble : DataArray or Dataset
        Members along ``member_dim``, e.g. (time, member, lat, lon).
    truth : DataArray or Dataset
        Verifying field without ``member_dim``, broadcastable against the ensemble (same
        coordinate values on shared dimensions; a Dataset needs the ensemble's variables).
    member_dim : str
        Ensemble dimension.
    dims : sequence of str, optional
        Dimensions to pool the ranks over; default all of them (one histogram). The others are
        kept: ``dims=["lat", "lon"]`` gives one histogram per time.
    seed : int
        Seed of :func:`numpy.random.default_rng` for breaking ties.

    Returns
    -------
    DataArray or Dataset
        Integer counts with dimension ``rank`` (coordinate ``0..m``) first, then the dimensions
        not pooled; a Dataset for a Dataset (one histogram per variable). Points where the
        truth or any member is NaN are skipped (their number is in ``attrs["skipped"]``). The
        data are computed (dask inputs are loaded).

    Raises
    ------
    ArgumentError
        ``member_dim`` is not a dimension of the ensemble or is one of the truth; ``dims`` names
        a dimension the truth lacks; inputs that are not xarray objects; a negative seed.

    References
    ----------
    .. [1] Anderson (1996), J. Climate 9, 1518-1530.
    .. [2] Hamill (2001), Mon. Wea. Rev. 129, 550-560.
    """
    m = _check(ensemble, truth, member_dim, seed)
    if isinstance(ensemble, xr.DataArray):
        return _histogram(ensemble, truth, member_dim, dims, m, int(seed))
    missing = [v for v in ensemble.data_vars if v not in truth.data_vars]
    if missing:
        raise ArgumentError(
            f"truth: lacks the ensemble's variables {missing}; pass a truth with them or "
            "select the variables to rank (ensemble[[...]])"
        )
    fields = [v for v in ensemble.data_vars if member_dim in ensemble[v].dims]
    return xr.Dataset({
        v: _histogram(ensemble[v], truth[v], member_dim, dims, m, int(seed) + k)
        for k, v in enumerate(fields)
    })
