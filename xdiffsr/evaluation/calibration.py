"""Observation-error models learned from data: per-source error inflation (Desroziers).

With ``d_b = y - H x_b`` (observation minus prior mean) and ``d_a = y - H x_a`` (observation minus
posterior mean), the linear-Gaussian identity ``E[d_a d_b^T] = R`` (Desroziers et al. 2005,
Eq. 3), in its diagonal form

    E[d_a,i d_b,i] = R_i

holds when the gains are computed with the true ``R`` (and ``B``). With an assumed ``R'`` the
left side is ``R' S'^{-1} S``, ``S = H B H^T + R``: iterating ``R <- mean(d_a d_b)`` (here a
factor per source, ``f = mean(d_a d_b) / mean(R')``) converges to the true ``R`` (Desroziers
et al. 2005, Sect. 3; Ménard 2016), quickly when the observations are no more precise than the
prior at their positions, slowly when they are much more precise (the factor of convergence is
about ``h = H P_a H^T / R``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, XDiffSRWarning
from xdiffsr.grid import find_time, to_datetime64
from xdiffsr.models.prior import Prior
from xdiffsr.observations.sources import Observations, as_source
from xdiffsr.reconstruct import super_resolve
from xdiffsr.reconstruct.diagnostics import predicted, to_model_grid
from xdiffsr.reconstruct.plan import output_grid_of

__all__ = ["calibrate", "scale_errors"]


def scale_errors(
    source: Observations, factor: float | Mapping[str, float], prior: Prior
) -> Observations:
    """A copy of ``source`` with every error variance multiplied by ``factor``
    (:meth:`Observations.scaled <xdiffsr.observations.base.Observations.scaled>`).

    ``factor`` is one number, or a ``{variable: factor}`` mapping (variables not in it keep
    their variances). An ``error`` column (std, used when ``sigma_y`` is None) is multiplied by
    ``sqrt(factor)``; otherwise ``sigma_y`` becomes a dict of the variances the source used
    (its ``sigma_y`` or the defaults) times ``factor``, keyed as the source reads it (model
    variables; channels for column observations); a callable source's scalar is scaled (by one
    number only).
    """
    return source.scaled(factor, prior)


def _members(ens: xr.Dataset, prior: Prior, tname: str) -> np.ndarray:
    """Physical members (time, member, C, H, W) on the model grid."""
    _, (ilat, ilon) = output_grid_of(ens, prior)
    order = [tname, "member", "lat", "lon"]
    data = np.stack([ens[v].transpose(*order).values for v in prior.variables], axis=2)
    return to_model_grid(data, np.asarray(ilat), np.asarray(ilon))


def _means_at_obs(prior, sources, times, members) -> list[list[np.ndarray]]:
    """Ensemble mean in observation space, per source and time (empty where no data)."""
    out = []
    for src in sources:
        per_t = []
        for k, t in enumerate(times):
            b = src.at_time(t, prior)
            if b is None or b.n_obs == 0:
                per_t.append((np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, int)))
            else:
                per_t.append((b.y, predicted(b, members[k]).mean(0), np.asarray(b.variance),
                              np.asarray(b.var_index, int)))
        out.append(per_t)
    return out


def _factor(total: np.ndarray, groups: list[str]) -> float | dict[str, float]:
    """One source's cumulative factor(s) as :func:`scale_errors` takes them."""
    return float(total[0]) if groups == ["all"] else dict(zip(groups, map(float, total)))


def _quiet_resolve(ds, sources, weights, prior, options) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XDiffSRWarning)
        return super_resolve(ds, sources, weights, model=prior, **options)


def calibrate(
    ds: xr.Dataset,
    obs: Sequence[Any],
    model: Prior,
    weights: Sequence[float] | None = None,
    *,
    iterations: int = 5,
    rtol: float = 0.05,
    min_count: int = 20,
    by: str = "source",
    **sampler_options: Any,
) -> tuple[list[Observations], pd.DataFrame]:
    """Fit one error-variance inflation factor per source from innovation statistics.

    Reconstructs the times of ``ds`` (a validation set: observations whose truth is unknown) once
    without guidance (the prior mean ``x_b``, estimated by the unguided members) and then with
    the sources, and rescales each source's error variances by ``mean(d_a d_b) / mean(R)`` over
    all its observations and times (Desroziers et al. 2005), repeating with the rescaled sources
    until every factor is within ``rtol`` of 1 or after ``iterations`` reconstructions.

    Parameters
    ----------
    ds : xarray.Dataset
        The times (and optionally the grid) of the validation set, as for
        :func:`xdiffsr.super_resolve`.
    obs : list
        The sources (anything :func:`xdiffsr.super_resolve` takes).
    model : Prior
        The prior.
    weights : list of float, optional
        Weights of the sources; the error variance fitted is that of the weighted likelihood,
        ``sigma_y / w``, and is put back into ``sigma_y`` with ``w`` kept.
    iterations : int
        Most guided reconstructions.
    rtol : float
        Stop when every factor of the last iteration is within ``rtol`` of 1.
    min_count : int
        Sources (or variables of a source) with fewer observations in all are left unchanged
        (factor 1).
    by : {"source", "variable"}
        One factor per source, or one per source and model variable (a coarse analysis may be
        exact in temperature and not in wind).
    **sampler_options
        Sampler options of both reconstructions (``members``, ``steps``, ``guidance``, ...).

    Returns
    -------
    sources : list of Observations
        The sources with their error variances rescaled (:func:`scale_errors`), ready to reuse.
    history : pandas.DataFrame
        Columns ``iteration, source, variable, count, factor, total``: the factor of each
        iteration and the cumulative one (``total``, the ratio of fitted to original variances);
        ``variable`` is "all" with ``by="source"``.

    References
    ----------
    Desroziers, G., Berre, L., Chapnik, B. & Poli, P. (2005). QJRMS 131, 3385-3396.
    Ménard, R. (2016). Error covariance estimation methods based on analysis residuals. QJRMS 142,
    257-273.
    """
    if not isinstance(model, Prior):
        raise ArgumentError(f"model={model!r} is not an xdiffsr prior.")
    if int(iterations) < 1 or not rtol > 0:
        raise ArgumentError(f"iterations={iterations!r} must be >= 1 and rtol={rtol!r} > 0.")
    if by not in ("source", "variable"):
        raise ArgumentError(f"by={by!r}: use 'source' (one factor per source) or 'variable'.")
    obs = list(obs) if isinstance(obs, list | tuple) else [obs]
    original = [as_source(o, model) for o in obs]
    w = [1.0] * len(original) if weights is None else [float(x) for x in weights]
    tname = find_time(ds, argname="ds")
    times = to_datetime64(ds[tname].values)
    opts = {k: v for k, v in sampler_options.items() if k != "guidance"}
    bg = _quiet_resolve(ds, original, w, model, {**opts, "guidance": "none"})
    hxb = _means_at_obs(model, original, times, _members(bg, model, tname))
    groups = ["all"] if by == "source" else list(model.variables)
    total = np.ones((len(original), len(groups)))
    rows: list[dict[str, Any]] = []
    sources = list(original)
    for it in range(1, int(iterations) + 1):
        ens = _quiet_resolve(ds, sources, w, model, sampler_options)
        hxa = _means_at_obs(model, sources, times, _members(ens, model, tname))
        factors = np.ones_like(total)
        for s, (wb, wa) in enumerate(zip(hxb, hxa)):
            d_b = np.concatenate([y - m for y, m, _, _ in wb])
            d_a = np.concatenate([y - m for y, m, _, _ in wa])
            r = np.concatenate([v for _, _, v, _ in wa]) / (w[s] if w[s] > 0 else 1.0)
            var = np.concatenate([i for *_, i in wa])
            for g, name in enumerate(groups):
                sel = np.ones(d_a.size, bool) if name == "all" else var == g
                if sel.sum() >= min_count and w[s] > 0:
                    f = float(np.mean(d_a[sel] * d_b[sel])) / float(np.mean(r[sel]))
                    factors[s, g] = max(f, 1e-6)
                if name == "all" or sel.any():
                    rows.append({"iteration": it, "source": sources[s].describe(),
                                 "variable": name, "count": int(sel.sum()),
                                 "factor": factors[s, g], "total": total[s, g] * factors[s, g]})
        total *= factors
        sources = [scale_errors(src, _factor(t, groups), model) for src, t in zip(original, total)]
        if np.all(np.abs(factors - 1) <= rtol):
            break
    columns = ["iteration", "source", "variable", "count", "factor", "total"]
    return sources, pd.DataFrame(rows, columns=columns)
