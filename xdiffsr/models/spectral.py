"""A Gaussian prior from a handful of fields: smooth mean, stationary spectral covariance.

The statistics behind :meth:`xdiffsr.GaussianPrior.fit` with ``covariance="spectral"``:

* the mean: the zonal mean of the fit fields (per latitude) or their time mean (per cell);
* the variance about it per latitude (a variance that varies with latitude only);
* the correlations: stationary in longitude and in the latitude index (the even reflection of
  :class:`~xdiffsr.core.covariance.SpectralCovariance`), from the ring-averaged power spectrum of
  the fields' anomalies divided by their standard deviation, optionally with the cross-spectra of
  the variables (scale-by-scale coherence), and optionally extended beyond the scales the fit
  data resolve by a fitted power law.

The physical covariance is ``S B S`` with ``B`` the stationary correlation and ``S`` the diagonal
of standard deviations per (variable, latitude), rescaled so that ``diag(S B S)`` is the fitted
variance exactly (``B``'s diagonal is not quite constant near the poles).

References
----------
Daley, R. (1991). Atmospheric Data Analysis. Cambridge University Press. (homogeneous
    background-error covariances, spectral estimates)
Parrish, D. F., Derber, J. C. (1992). The National Meteorological Center's spectral statistical-
    interpolation analysis system. Mon. Wea. Rev., 120, 1747-1763.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr

from xdiffsr.core.covariance import SpectralCovariance, extrapolate_power
from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.grid import Grid, grid_of
from xdiffsr.names import check_flat, to_model_layout

__all__ = ["MEANS", "SpectralFit", "effective_samples", "fit_spectral"]

#: The smooth means :func:`fit_spectral` knows.
MEANS = ("zonal", "time")


@dataclass(frozen=True)
class SpectralFit:
    """What :func:`fit_spectral` estimates, in the variables' physical units.

    Attributes
    ----------
    variables : list of str
    grid : Grid
    mean : ndarray (C, H, W)
        The smooth mean.
    scale : ndarray (C, H, 1)
        ``S``: physical standard deviation per (variable, latitude) divided by the square root
        of ``B``'s diagonal, so that ``diag(S B S)`` is the fitted variance.
    covariance : SpectralCovariance
        ``B``, the stationary correlation (unit mean variance per variable).
    samples : int
        Number of fields fitted.
    units, attrs : dict
        Per variable, from the fit data.
    """

    variables: list[str]
    grid: Grid
    mean: np.ndarray
    scale: np.ndarray
    covariance: SpectralCovariance
    samples: int
    units: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _as_samples(ds: xr.Dataset, dims: tuple[str, ...], variables: list[str],
                grid: Grid) -> np.ndarray:
    """(N, C, H, W) float64 array of the fields, the sample dims stacked (computes lazy data
    one variable at a time)."""
    out = []
    for v in variables:
        da = ds[v]
        da = da.transpose(*dims, grid.lat_name, grid.lon_name)
        out.append(np.asarray(da.values, dtype=np.float64).reshape(-1, *grid.shape))
    return np.stack(out, axis=1)


def _check_grid(grid: Grid, window: str | None) -> None:
    if grid.lon.size % 2:
        raise CoordinateError(
            f"ds: {grid.lon.size} longitudes; the spectral covariance needs an even number. "
            "Regrid to an even longitude count first (xdiffsr.regrid.Regridder)."
        )
    if grid.shape[0] < 4:
        raise CoordinateError(f"ds: {grid.shape[0]} latitudes; a spectral fit needs at least 4.")
    if not grid.is_global and window is None:
        lo, hi = float(grid.lon.min()), float(grid.lon.max())
        raise CoordinateError(
            f"ds: longitudes {lo:g}..{hi:g} do not go around the globe, and the spectral "
            "covariance is periodic in longitude. Fit on global fields, or pass window='hann' "
            "to taper the anomalies at the box's east and west edges (the prior then correlates "
            "the two edges weakly), or use covariance='sample' (rank=...)."
        )


def _nan_mask(X: np.ndarray, nan: str, variables: list[str]) -> np.ndarray:
    """Finite-value mask of ``X`` (N, C, H, W); refuse NaNs unless ``nan='skip'``."""
    ok = np.isfinite(X)
    bad = int(ok.size - ok.sum())
    if bad and nan != "skip":
        per = {v: int((~ok[:, i]).sum()) for i, v in enumerate(variables) if (~ok[:, i]).any()}
        raise ArgumentError(
            f"ds: {bad} missing (NaN) values among the fit fields ({per}); a spectral fit "
            "needs complete fields. Pass nan='skip' to estimate from the valid values (mean "
            "and variance over them, the spectrum of the anomalies with the gaps set to zero), "
            "or fill them first."
        )
    count = ok.sum(axis=(0, 3))  # (C, H)
    if (count < 2).any():
        c, h = np.argwhere(count < 2)[0]
        raise ArgumentError(
            f"ds: variable {variables[c]!r} has fewer than 2 valid values at latitude row {h}; "
            "nothing to estimate its variance from. Drop the masked rows or fill them first."
        )
    return ok


def _moments(X: np.ndarray, ok: np.ndarray, mean: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C, H, W) and variance about it per (C, H), over the valid values of X."""
    Xz = np.where(ok, X, 0.0)
    n_t = ok.sum(axis=0)  # (C, H, W)
    if mean == "zonal":
        mu = Xz.sum(axis=(0, 3)) / ok.sum(axis=(0, 3))
        mu = np.broadcast_to(mu[..., None], X.shape[1:]).copy()
    else:
        mu = Xz.sum(axis=0) / np.maximum(n_t, 1)
    if not np.isfinite(mu).all():  # a cell never valid: its latitude's mean
        row = np.nanmean(np.where(n_t > 0, mu, np.nan), axis=-1, keepdims=True)
        mu = np.where(n_t > 0, mu, row)
    anom = np.where(ok, X - mu, 0.0)
    var = (anom**2).sum(axis=(0, 3)) / ok.sum(axis=(0, 3))
    if mean == "time":  # a new state about a mean of few (correlated) fields
        t = effective_samples(anom)
        var = var * ((t + 1) / (t - 1))[:, None]
    return mu, var


def effective_samples(anom: np.ndarray) -> np.ndarray:
    """Effective number of independent fields per variable, ``1 +`` the participation ratio
    ``tr(K)^2 / tr(K^2)`` of the Gram matrix ``K`` of the anomalies ``anom`` (N, C, H, W) about
    their mean: ``N`` for independent fields much larger than ``N``, about 3 for 3 weather
    states with 10 ensemble members each.

    The variance of a new state about the mean of ``T`` independent fields is
    ``(1 + 1/T) sigma^2``, and the anomalies' mean square estimates ``(1 - 1/T) sigma^2``:
    :func:`fit_spectral` with ``mean='time'`` multiplies it by ``(T + 1) / (T - 1)``.
    """
    a = anom.reshape(anom.shape[0], anom.shape[1], -1)
    K = np.einsum("ncp,mcp->cnm", a, a)
    tr = np.trace(K, axis1=1, axis2=2)
    tr2 = np.einsum("cnm,cmn->c", K, K)
    return 1.0 + tr**2 / np.maximum(tr2, 1e-300)


def _taper(w: int) -> np.ndarray:
    """A Tukey window (cosine tapers over a quarter of the box at each edge), unit mean square."""
    x = (np.arange(w) + 0.5) / w
    t = np.ones(w)
    edge = x < 0.25
    t[edge] = 0.5 * (1 - np.cos(np.pi * x[edge] / 0.25))
    t[::-1][edge] = t[edge]
    return t / np.sqrt((t**2).mean())


def fit_spectral(
    ds: xr.Dataset,
    *,
    dim: str | Sequence[str] = "time",
    mean: str = "zonal",
    multivariate: bool = False,
    resolved: float = 1.0,
    nan: str = "raise",
    window: str | None = None,
    variables: Sequence[str] | None = None,
) -> SpectralFit:
    """Estimate a smooth mean and a stationary spectral covariance from fields of ``ds``.

    Parameters
    ----------
    ds : Dataset
        Fit fields with sample dimension(s) ``dim`` (flat (time, lat, lon) variables, or any
        layout of :mod:`xdiffsr.names` with ``variables``); lazy (dask) data are computed one
        variable at a time.
    dim : str or sequence of str
        The sample dimension(s); several (``("time", "number")``) are stacked.
    mean : {'zonal', 'time'}
        The smooth mean: per latitude (zonal mean over samples and longitudes) or per cell.
    multivariate : bool
        Estimate the cross-spectra of the variables (their coherence scale by scale).
    resolved : float in (0, 1]
        Fraction of the grid's Nyquist wavenumber the fit fields resolve; the spectrum beyond is
        a power law fitted on the resolved scales (:func:`~xdiffsr.core.covariance.
        extrapolate_power`). 1: the fields resolve every scale of their grid.
    nan : {'raise', 'skip'}
        Missing values (land-masked fields): refuse with their count, or skip them.
    window : {None, 'hann'}
        Regional grids only: taper the anomalies in longitude before the spectrum.
    variables : sequence of str, optional
        Model channel names to take from any layout.

    Raises
    ------
    ArgumentError
        Fewer than two fields, an unknown ``mean``/``nan``/``window``, or NaN with
        ``nan='raise'``.
    CoordinateError
        A regional grid without ``window``, an odd longitude count, or a variable with extra
        dimensions.
    """
    dims = (dim,) if isinstance(dim, str) else tuple(str(d) for d in dim)
    for name, value, choices in (("mean", mean, MEANS), ("nan", nan, ("raise", "skip")),
                                 ("window", window, (None, "hann"))):
        if value not in choices:
            raise ArgumentError(f"{name}={value!r}; choose one of {choices}.")
    if variables is not None:
        ds = to_model_layout(ds, variables, argname="ds", keep=dims)
    else:
        check_flat(ds, argname="ds", keep=dims)
    grid = grid_of(ds, argname="ds")
    names = [str(v) for v in ds.data_vars if all(d in ds[v].dims for d in dims)]
    n = int(np.prod([ds.sizes.get(d, 0) for d in dims]))
    if not names or n < 2:
        raise ArgumentError(
            f"ds: a spectral fit needs at least 2 fields along {list(dims)}, got {n} "
            f"(variables {names}). Pass more times (or stack ensemble members with "
            "dim=('time', 'number'))."
        )
    _check_grid(grid, window)
    X = _as_samples(ds, dims, names, grid)
    ok = _nan_mask(X, nan, names)
    mu, var = _moments(X, ok, mean)
    if (var <= 0).any():
        c = int(np.argwhere(var <= 0)[0][0])
        raise ArgumentError(
            f"ds: variable {names[c]!r} does not vary at some latitude (e.g. a constant field); "
            "a covariance cannot be estimated. Drop the variable."
        )
    sd = np.sqrt(var)[..., None]
    # The correlation shape from the anomalies in physical units (per variable over its mean
    # variance): the latitudes that carry the variance set it. Anomalies divided by their own
    # latitude's deviation gave the tropics' flatter spectrum to the mid-latitudes, and a spread
    # 1.2-1.6 times the error at 2x coarsening (benchmarks/RESULTS.md).
    z = np.where(ok, (X - mu) / np.sqrt((sd**2).mean(axis=1, keepdims=True)), 0.0)
    if window is not None:
        z = z * _taper(grid.lon.size)
    cov = _spectrum(z, multivariate, resolved, grid.lon.size)
    scale = sd / np.sqrt(cov.row_variance().double().numpy())[..., None]
    return SpectralFit(
        names, grid, mu, scale, cov, n,
        {v: str(ds[v].attrs.get("units", "")) for v in names},
        {v: dict(ds[v].attrs) for v in names},
    )


def _spectrum(z: np.ndarray, multivariate: bool, resolved: float, w: int) -> SpectralCovariance:
    """The stationary correlation ``B`` of normalised anomalies ``z`` (N, C, H, W): ring-averaged
    (cross-)spectrum, extrapolated beyond ``resolved``, scaled to unit mean variance."""
    est = SpectralCovariance.from_states(torch.as_tensor(z, dtype=torch.float32), isotropic=True,
                                         multivariate=multivariate, center=False)
    if multivariate:
        power = _cross_power(est)
    else:
        power = est.power
    # gaps set to zero lower the power by the valid fraction; the variance is rescaled anyway
    power = extrapolate_power(power, w, float(resolved))
    cov = SpectralCovariance(power)
    level = cov.variance().double().clamp_min(1e-30)
    k = (1.0 / level).float()
    if multivariate:
        k2 = k.sqrt()
        return SpectralCovariance(power * k2[:, None, None, None] * k2[None, :, None, None])
    return SpectralCovariance(power * k[:, None, None])


def _cross_power(cov: SpectralCovariance) -> torch.Tensor:
    """The (C, C, 2H, Wf) cross-spectrum ``V diag(lam) V^T`` of a multivariate covariance."""
    return torch.einsum("klcj,klj,kldj->cdkl", cov.vec, cov.lam, cov.vec)

