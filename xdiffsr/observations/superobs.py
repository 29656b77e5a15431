"""Super-observations: many observations of one model cell averaged into one.

A gridded source at or finer than the model grid (an analysis at 0.25-1 degree guiding a 2.8 degree
model) puts many values in each model cell. Entering them one by one, the paper's guidance sums one
likelihood gradient per value, so its step grows with the number of values per cell until the
sampler diverges; and their errors, treated as independent, would make the cell ``n`` times more
certain than the data are. Averaging them first gives one observation per covered model cell.

For model cell ``j`` with averaging weights ``w_ji`` (conservative regridding weights from the
source grid to the model grid, rows normalised to 1 over the valid values; for points, ``1/n`` for
the ``n`` points in the cell):

- value: ``ybar_j = sum_i w_ji y_i``;
- operator: ``Mbar_j = sum_i w_ji M_i`` (the average of the original operator rows, so nothing is
  assumed about where the values lie; for a source grid nested in the model grid it is the
  identity on the covered cells);
- error variance, for errors of standard deviation ``s_i`` with a common correlation ``rho``
  between any two values of one cell::

      Sigma_j = (1 - rho) sum_i w_ji^2 s_i^2 + rho (sum_i w_ji s_i)^2

  i.e. ``s^2 (rho + (1 - rho) / n_eff)`` for equal errors, with ``n_eff = 1 / sum_i w_ji^2`` the
  effective number of values. ``rho = 0`` is the independent-error variance ``s^2 / n_eff`` (with
  exactly nested grids the super-observation posterior then equals the posterior given every
  value); ``rho > 0`` keeps a floor ``rho s^2`` however many values there are, for errors
  correlated within a cell (analysis errors, representativeness). One value (``n_eff = 1``) keeps
  ``s^2`` for any ``rho``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import Grid
from xdiffsr.regrid import regrid_weights

#: Default within-cell error correlation ``rho`` of super-observations.
DEFAULT_SUPEROBS_RHO = 0.25

#: A source grid counts as "at or finer than the model grid" when its median spacing is below the
#: model's times this factor in both directions.
_FINE = 1.01


def check_superobs(superobs, rho, allow_auto: bool = True) -> None:
    """Validate a source's ``superobs`` flag (True, False, or None for automatic) and ``rho``."""
    if not (superobs is None and allow_auto) and not isinstance(superobs, bool):
        allowed = "True, False or None (automatic)" if allow_auto else "True or False"
        raise ArgumentError(f"superobs={superobs!r} must be {allowed}.")
    ok = isinstance(rho, int | float) and not isinstance(rho, bool) and 0.0 <= rho <= 1.0
    if not ok:
        raise ArgumentError(f"superobs_rho={rho!r} must be a number in [0, 1].")


def superobs_suffix(superobs, rho: float) -> str:
    """Provenance suffix of a source description ('' when super-observations are off)."""
    if superobs is False:
        return ""
    when = "" if superobs else "auto, "
    return f", super-obs({when}rho={float(rho):g})"


def _spacing(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.median(np.abs(np.diff(v)))) if v.size > 1 else np.inf


def is_fine(obs_grid: Grid, model_grid: Grid) -> bool:
    """Whether ``obs_grid`` is at or finer than ``model_grid`` (median spacings, both axes)."""
    lat_ok = _spacing(obs_grid.lat) <= _FINE * _spacing(model_grid.lat)
    lon_o = np.sort(np.mod(np.asarray(obs_grid.lon, dtype=np.float64), 360.0))
    lon_m = np.sort(np.mod(np.asarray(model_grid.lon, dtype=np.float64), 360.0))
    return bool(lat_ok and _spacing(lon_o) <= _FINE * _spacing(lon_m))


def grid_averaging(obs_grid: Grid, model_grid: Grid) -> sp.csr_matrix:
    """Conservative weights from the source grid to the model grid, (model cells, source cells);
    rows of model cells the source does not cover are empty."""
    return regrid_weights(
        obs_grid.lat,
        obs_grid.lon,
        model_grid.lat,
        model_grid.lon,
        "conservative",
        allow_partial=True,
    ).tocsr()


def cell_averaging(cells: np.ndarray) -> sp.csr_matrix:
    """Equal-weight averaging of observations by cell id: (distinct cells, observations)."""
    cells = np.asarray(cells)
    uniq, inv = np.unique(cells, return_inverse=True)
    counts = np.bincount(inv)
    n = cells.size
    return sp.csr_matrix((1.0 / counts[inv], (inv, np.arange(n))), shape=(uniq.size, n))


def superobs_rows(
    weights: sp.spmatrix,
    operator: sp.spmatrix,
    y: np.ndarray,
    variance: np.ndarray,
    rho: float,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """Super-observations of one source and variable (see the module docstring).

    Parameters
    ----------
    weights : sparse (cells, n)
        Averaging weights over the ``n`` valid observations; rows are renormalised to sum to 1
        and empty rows dropped.
    operator : sparse (n, N)
        Operator rows of the observations.
    y, variance : ndarray (n,)
        Values and error variances.
    rho : float
        Within-cell error correlation, in [0, 1].

    Returns
    -------
    operator (k, N), y (k,), variance (k,), n_eff (k,) of the ``k`` covered cells.
    """
    W = sp.csr_matrix(weights, dtype=np.float64)
    W.eliminate_zeros()
    total = np.asarray(W.sum(axis=1)).ravel()
    keep = np.flatnonzero(total > 1e-12)
    W = (sp.diags(1.0 / total[keep]) @ W[keep]).tocsr()
    var = np.asarray(variance, dtype=np.float64)
    w2 = W.multiply(W).tocsr()
    var_bar = (1.0 - rho) * (w2 @ var) + rho * (W @ np.sqrt(var)) ** 2
    n_eff = 1.0 / np.asarray(w2.sum(axis=1)).ravel()
    M = (W @ sp.csr_matrix(operator)).tocsr()
    M.eliminate_zeros()
    return M, W @ np.asarray(y, dtype=np.float64), var_bar, n_eff


def point_superobs(
    matrix: sp.spmatrix,
    y: np.ndarray,
    variance: np.ndarray,
    var_index: np.ndarray,
    gamma: np.ndarray,
    rho: float,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point observations averaged per (model variable, model cell): the mean of their values and
    of their operator rows, the variance of :func:`superobs_rows`, the mean ``Gamma``.

    An observation's cell is the model point of its largest interpolation weight (the nearest
    centre; ``matrix`` columns already carry the variable). Returns matrix, y, variance,
    var_index and gamma of the super-observations.
    """
    var_index = np.asarray(var_index, dtype=np.int64)
    A = sp.csr_matrix(matrix)
    W = cell_averaging(np.asarray(abs(A).argmax(axis=1)).ravel())
    M, ybar, vbar, _ = superobs_rows(W, matrix, y, variance, rho)
    first = np.asarray(W.argmax(axis=1)).ravel()  # any member: the variable is the cell's
    return M, ybar, vbar, var_index[first], W @ np.asarray(gamma, dtype=np.float64)
