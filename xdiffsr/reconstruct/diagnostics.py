"""Observation-space diagnostics of a posterior ensemble, and the prior-climate check.

For every source and time the observations ``y`` (error variance ``sigma_y``) are compared with
the members mapped to observation space by the source's own operator ``H`` (the ObsBlock's sparse
matrix on the physical model state, or its callable operator):

* ``obs_count``: number of observations;
* ``obs_rms``: ``sqrt(mean_i d_i^2)``, ``d = y - mean_m(H x_m)`` (observation minus ensemble mean);
* ``obs_spread``: ``sqrt(mean_i var_m(H_i x))`` (ddof=1), the ensemble spread at the observations;
* ``obs_error``: ``sqrt(mean_i R_i)`` with ``R = sigma_y / w`` the *effective* error variance
  of a source of weight ``w`` in Eq. 14 (``sigma_y`` itself for ``w = 0``);
* ``obs_chi2``: the normalised innovation chi-square (below).

The chi-square
--------------
For observations that did not enter the reconstruction (weight 0, or held out) the innovation
``d`` has variance ``R + H P_a H^T`` when the error model is right, so

    chi2 = sum_i d_i^2 / sum_i (R_i + v_i),   v_i = var_m(H_i x)

is 1 in expectation (the standard innovation consistency, e.g. Desroziers et al. 2005, Eq. 1;
Ménard 2000). Observations that *were* assimilated pull the ensemble towards themselves: in the
linear-Gaussian case ``E[d d^T] = R - H P_a H^T`` (Desroziers et al. 2005, Eq. 3 with the
analysis-space form), so for them

    chi2 = sum_i d_i^2 / sum_i (R_i - v_i) = sum_i d_i^2 / sum_i R_i (1 - h_i),

with ``h_i = v_i / R_i`` the self-sensitivity (diagonal of the influence matrix ``H K``,
Cardinali et al. 2004). This is the leave-one-out form of the innovation chi-square: its
expectation equals that of ``d_b^T S^{-1} d_b`` against the prior, ``S_true / S_assumed`` with
``S = H B H^T + R``, i.e. 1 when ``sigma_y`` (and the prior) are right, above 1 when the errors
are larger than assumed, below 1 when smaller. (The form with ``R + v`` would be below 1 for
assimilated observations even when everything is right.) It is NaN where it is undetermined: when
the mean self-sensitivity exceeds :data:`MAX_LEVERAGE` (the ensemble interpolates the
observations, as precise observations under a broad prior do, and leaves no residual to test).

Finite ensembles: the mean of ``m`` members misses the posterior mean by a sampling error of
variance ``v_i / m``, which adds to ``d_i^2``; the denominators are therefore
``R_i + v_i (1 + 1/m)`` and ``R_i - v_i (1 - 1/m)`` (without the term a correct 2-member
reconstruction reads chi-square about 1 + h / (2 (1 - h)) instead of 1).

Warnings (:class:`~xdiffsr.errors.XDiffSRWarning`), once per source, pooled over all times:

* inconsistent source: ``chi2 > CHI2_HIGH`` (4) or ``< CHI2_LOW`` (0.25) with at least
  :data:`MIN_COUNT` (20) observations;
* ensemble far from its observations: ``sum d^2 / sum (R + v) > MISFIT_HIGH`` (9: the ensemble
  mean is on average more than 3 combined standard deviations from the observations), also where
  the chi-square is undetermined;
* prior climate (:func:`check_climate`): more than :data:`CLIMATE_FRACTION` (10 %) of a source's
  values lie beyond :data:`CLIMATE_SCALES` (6) normalisation scales of the prior
  (``|y - center_v| / scale_v`` of the observed variable ``v``), with at least 10 values.

References
----------
Desroziers, G., Berre, L., Chapnik, B. & Poli, P. (2005). Diagnosis of observation, background and
analysis-error statistics in observation space. QJRMS 131, 3385-3396.
Cardinali, C., Pezzulli, S. & Andersson, E. (2004). Influence-matrix diagnostic of a data
assimilation system. QJRMS 130, 2767-2786.
Ménard, R. et al. (2000). Assimilation of stratospheric chemical tracer observations using a
Kalman filter. Part I: Formulation. MWR 128, 2654-2671.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from xdiffsr.errors import ArgumentError, XDiffSRWarning
from xdiffsr.grid import find_time, grid_of, to_datetime64
from xdiffsr.models.prior import Prior
from xdiffsr.observations.sources import ObsBlock, Observations, as_source
from xdiffsr.reconstruct.plan import check_weights, output_grid_of

__all__ = [
    "CHI2_HIGH",
    "CHI2_LOW",
    "CLIMATE_FRACTION",
    "CLIMATE_SCALES",
    "MAX_LEVERAGE",
    "MIN_COUNT",
    "MISFIT_HIGH",
    "check_climate",
    "observation_diagnostics",
    "predicted",
]

#: Chi-square above which a source is reported inconsistent (errors larger than assumed).
CHI2_HIGH = 4.0
#: Chi-square below which a source is reported inconsistent (errors smaller than assumed).
CHI2_LOW = 0.25
#: Fewest observations (pooled over times) for the consistency warnings.
MIN_COUNT = 20
#: Normalised misfit ``sum d^2 / sum (R + v)`` above which the ensemble is "far" from a source.
MISFIT_HIGH = 9.0
#: Mean self-sensitivity ``v / R`` above which the chi-square of assimilated data is undetermined.
MAX_LEVERAGE = 0.9
#: Prior-climate check: distance in normalisation scales, and the fraction of values beyond it.
CLIMATE_SCALES = 6.0
CLIMATE_FRACTION = 0.1
_CLIMATE_MIN_COUNT = 10
_SUMS = ("count", "d2", "var", "err", "den_a", "den_i")


def predicted(block: ObsBlock, members: np.ndarray) -> np.ndarray:
    """The members in observation space: ``H x_m``, shape (members, n_obs).

    Parameters
    ----------
    block : ObsBlock
        One source at one time (sparse ``matrix`` on the flattened physical model state, or a
        callable ``operator``, applied with torch under ``no_grad``).
    members : ndarray (members, C, H, W)
        Physical members on the model grid.
    """
    x = np.asarray(members, dtype=np.float64)
    if block.matrix is not None:
        return np.asarray(block.matrix @ x.reshape(x.shape[0], -1).T).T
    with torch.no_grad():
        out = block.operator(torch.as_tensor(x, dtype=torch.float32))
    return out.detach().double().cpu().numpy().reshape(x.shape[0], -1)


def _sums(block: ObsBlock | None, members: np.ndarray, weight: float) -> np.ndarray:
    """(count, sum d^2, sum v, sum R, sum (R - v), sum (R + v)) of one block."""
    if block is None or block.n_obs == 0:
        return np.zeros(len(_SUMS))
    hx = predicted(block, members)
    d = block.y - hx.mean(0)
    m = hx.shape[0]
    v = hx.var(0, ddof=1) if m > 1 else np.zeros_like(d)
    r = np.asarray(block.variance, dtype=np.float64) / (weight if weight > 0 else 1.0)
    # the mean of m members misses the posterior mean by a sampling error of variance v / m
    den_a, den_i = (r - v * (1 - 1 / m)).sum(), (r + v * (1 + 1 / m)).sum()
    return np.array([d.size, (d**2).sum(), v.sum(), r.sum(), den_a, den_i], dtype=np.float64)


def _statistics(s: np.ndarray, assimilated: bool) -> dict[str, np.ndarray]:
    """The diagnostics from sums ``s`` (..., len(_SUMS)) (NaN where there are no observations)."""
    n, d2, v, r, den_a, den_i = np.moveaxis(s, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nn = np.where(n > 0, n, np.nan)
        if assimilated:
            ok = (v / np.where(r > 0, r, np.nan)) <= MAX_LEVERAGE
            chi2 = np.where(ok, d2 / den_a, np.nan)
        else:
            chi2 = d2 / den_i
        return {
            "count": n.astype(np.int64),
            "rms": np.sqrt(d2 / nn),
            "spread": np.sqrt(v / nn),
            "error": np.sqrt(r / nn),
            "chi2": np.where(n > 0, chi2, np.nan),
            "misfit": np.where(n > 0, d2 / den_i, np.nan),
        }


def diagnose(
    prior: Prior,
    sources: Sequence[Observations],
    weights: Sequence[float],
    times: np.ndarray,
    members: np.ndarray,
    blocks: Sequence[Sequence[ObsBlock | None]] | None = None,
) -> np.ndarray:
    """Sums (time, source, 6) behind the diagnostics of physical ``members`` (time, member, C, H,
    W) on the model grid; ``blocks[k][s]`` reuses already built ObsBlocks."""
    out = np.zeros((len(times), len(sources), len(_SUMS)))
    for k, t in enumerate(times):
        for s, (src, w) in enumerate(zip(sources, weights)):
            block = src.at_time(t, prior) if blocks is None else blocks[k][s]
            out[k, s] = _sums(block, members[k], float(w))
    return out


def diagnostics_dataset(
    sums: np.ndarray, times: np.ndarray, tname: str, sources: Sequence[Observations], weights
) -> xr.Dataset:
    """The variables ``obs_count``, ``obs_rms``, ``obs_spread``, ``obs_error``, ``obs_chi2``
    (time, source) from the sums of :func:`diagnose` (see the module docstring)."""
    names = [s.describe() for s in sources]
    names = [n if names.count(n) == 1 else f"{n} [{i}]" for i, n in enumerate(names)]
    cols = [_statistics(sums[:, i], float(w) > 0) for i, w in enumerate(weights)]
    dims = (tname, "source")
    units = {"count": "1", "rms": "", "spread": "", "error": "", "chi2": "1"}
    long = {
        "count": "number of observations",
        "rms": "RMS of observation minus ensemble mean (units of the observed variables)",
        "spread": "ensemble spread at the observations (RMS of the member std)",
        "error": "RMS of the effective observation-error std (sigma_y / weight)",
        "chi2": "normalised innovation chi-square (1 when the error model is right)",
    }
    data = {
        f"obs_{k}": (
            dims,
            np.stack([c[k] for c in cols], axis=1),
            {"long_name": long[k], **({"units": units[k]} if units[k] else {})},
        )
        for k in long
    }
    return xr.Dataset(data, coords={tname: (tname, times), "source": ("source", names)})


def warn_inconsistent(
    sums: np.ndarray, sources: Sequence[Observations], weights, stacklevel: int = 3
) -> None:
    """Warn once per source whose pooled chi-square or misfit is out of bounds (module doc)."""
    for i, (src, w) in enumerate(zip(sources, weights)):
        st = _statistics(sums[:, i].sum(0), float(w) > 0)
        n, chi2, misfit = int(st["count"]), float(st["chi2"]), float(st["misfit"])
        if n == 0:
            continue
        if n >= MIN_COUNT and np.isfinite(chi2) and not CHI2_LOW <= chi2 <= CHI2_HIGH:
            side = "larger" if chi2 > CHI2_HIGH else "smaller"
            warnings.warn(
                f"source {src.describe()}: innovation chi-square {chi2:.3g} over {n} "
                f"observations (about 1 when consistent; bounds [{CHI2_LOW}, {CHI2_HIGH}]): the "
                f"errors look {side} than sigma_y / weight assumes, or the prior is "
                "mis-specified there; see xdiffsr.evaluation.calibration.calibrate.",
                XDiffSRWarning,
                stacklevel=stacklevel,
            )
        if misfit > MISFIT_HIGH:
            warnings.warn(
                f"source {src.describe()}: the ensemble mean ends far from its observations "
                f"(RMS {float(st['rms']):.3g} vs error {float(st['error']):.3g} and spread "
                f"{float(st['spread']):.3g}; normalised misfit {misfit:.3g} > {MISFIT_HIGH}); "
                "check units, the observation operator, or more sampler steps.",
                XDiffSRWarning,
                stacklevel=stacklevel,
            )


def check_climate(
    prior: Prior,
    sources: Sequence[Observations],
    times: np.ndarray,
    blocks: Sequence[Sequence[ObsBlock | None]] | None = None,
    stacklevel: int = 3,
) -> dict[str, float]:
    """Warn when a source's observations lie far outside the prior's climate.

    A value ``y`` of model variable ``v`` is out of climate when it lies more than
    ``CLIMATE_SCALES`` (6) scales outside the prior's range of typical values,
    ``(low_v, high_v, scale_v) =`` :meth:`Prior.climate` (a trained model's normalisation
    ``center``/``scale``; a Gaussian prior's range of mean values and its standard deviation),
    i.e. ``max(low_v - y, y - high_v, 0) / scale_v > 6``; a source warns
    when more than ``CLIMATE_FRACTION`` (10 %) of its values (at least 10) are, e.g. a prior
    trained on one climate fed observations of another, or values in the wrong units. Callable
    operators (no variable per observation) are skipped.

    Returns
    -------
    dict
        Fraction of out-of-climate values per source (by :meth:`describe`), NaN without values.
    """
    fractions = {}
    low, high, scale = prior.climate()
    for s, src in enumerate(sources):
        z = []
        for k, t in enumerate(times):
            b = src.at_time(t, prior) if blocks is None else blocks[k][s]
            if b is not None and b.n_obs and b.var_index is not None:
                vi = np.asarray(b.var_index)
                z.append(np.maximum(np.maximum(low[vi] - b.y, b.y - high[vi]), 0) / scale[vi])
        zz = np.concatenate(z) if z else np.zeros(0)
        frac = float((zz > CLIMATE_SCALES).mean()) if zz.size else float("nan")
        fractions[src.describe()] = frac
        if zz.size >= _CLIMATE_MIN_COUNT and frac > CLIMATE_FRACTION:
            warnings.warn(
                f"source {src.describe()}: {100 * frac:.0f} % of {zz.size} values lie more than "
                f"{CLIMATE_SCALES:g} prior scales outside the prior's climate (Prior.climate(); "
                f"median {np.median(zz):.3g}): a prior trained on another climate, or wrong units?",
                XDiffSRWarning,
                stacklevel=stacklevel,
            )
    return fractions


def to_model_grid(data: np.ndarray, ilat: np.ndarray, ilon: np.ndarray) -> np.ndarray:
    """(…, H, W) on the output grid (model grid permuted by ``ilat``, ``ilon``) -> model grid."""
    return data[..., np.argsort(ilat), :][..., np.argsort(ilon)]


def result_diagnostics(
    prior: Prior,
    sources,
    weights,
    times: np.ndarray,
    tname: str,
    members: np.ndarray,
    *,
    blocks: Sequence[Sequence[ObsBlock | None]] | None = None,
    stacklevel: int = 4,
) -> xr.Dataset:
    """Diagnostics and warnings of physical ``members`` (time, member, C, H, W) on the model
    grid. ``blocks[k][s]``: the ObsBlock of source ``s`` at ``times[k]`` (those the guidance
    used; built here once for the climate check and the statistics if not given). No sources:
    an empty Dataset (the members are prior samples; :func:`super_resolve` warns)."""
    if not len(sources):
        return xr.Dataset()
    if blocks is None:
        blocks = [[src.at_time(t, prior) for src in sources] for t in times]
    check_climate(prior, sources, times, blocks, stacklevel=stacklevel)
    sums = diagnose(prior, sources, weights, times, np.asarray(members), blocks)
    warn_inconsistent(sums, sources, weights, stacklevel=stacklevel)
    return diagnostics_dataset(sums, times, tname, sources, weights)


def observation_diagnostics(
    ensemble: xr.Dataset,
    obs: Sequence,
    model: Prior,
    weights: Sequence[float] | None = None,
    *,
    warn: bool = True,
) -> xr.Dataset:
    """Observation-space diagnostics of a reconstruction (e.g. a computed lazy result).

    Parameters
    ----------
    ensemble : xarray.Dataset
        A result of :func:`xdiffsr.super_resolve` (the model's variables on (time, member, lat,
        lon), the model grid in any order).
    obs : list
        The sources as given to ``super_resolve``.
    model : Prior
        The prior of the reconstruction.
    weights : list of float, optional
        The weights of the reconstruction (default: each source's ``weight`` or 1).
    warn : bool
        Emit the consistency and prior-climate warnings.

    Returns
    -------
    xarray.Dataset
        ``obs_count``, ``obs_rms``, ``obs_spread``, ``obs_error``, ``obs_chi2`` on (time,
        source), defined in :mod:`xdiffsr.reconstruct.diagnostics`.
    """
    if not isinstance(model, Prior):
        raise ArgumentError(f"model={model!r} is not an xdiffsr prior.")
    obs = list(obs) if isinstance(obs, list | tuple) else [obs]
    sources = [as_source(o, model) for o in obs]
    w = check_weights(weights, len(sources), sources)
    tname = find_time(ensemble, argname="ensemble")
    times = to_datetime64(ensemble[tname].values)
    _, (ilat, ilon) = output_grid_of(ensemble, model)
    out_grid = grid_of(ensemble, argname="ensemble")
    order = [tname, "member", out_grid.lat_name, out_grid.lon_name]
    data = np.stack([ensemble[v].transpose(*order).values for v in model.variables], axis=2)
    members = to_model_grid(data, np.asarray(ilat), np.asarray(ilon))
    if not warn:
        sums = diagnose(model, sources, w, times, members)
        return diagnostics_dataset(sums, times, tname, sources, w)
    return result_diagnostics(model, sources, w, times, tname, members, stacklevel=3)
