"""One-dimensional interpolation stencils and interval overlaps on sorted axes.

All functions work on ascending node positions ``x`` (shape (n,)) and return, for ``m`` query
positions, integer node indices and weights of shape (m, k) (duplicates allowed; they are summed
when the sparse matrix is assembled).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

IntArr = NDArray[np.intp]
FloatArr = NDArray[np.float64]

#: Keys (1981) boundary condition: ghost node c[-1] = 3 c[0] - 3 c[1] + c[2] (his eq. 25).
_KEYS_GHOST = np.array([3.0, -3.0, 1.0])


def _locate(x: FloatArr, q: FloatArr, periodic: bool) -> tuple[IntArr, FloatArr, FloatArr]:
    """Interval index ``i`` and fraction ``t`` in [0, 1] with ``q = x[i] + t (x[i+1] - x[i])``.

    Non-periodic queries outside [x[0], x[-1]] are clamped to the end nodes (constant
    extrapolation). Periodic queries must already lie in [x[0], x[0] + 360).
    """
    xe = np.append(x, x[0] + 360.0) if periodic else x
    last = xe.size - 2
    qc = q if periodic else np.clip(q, x[0], x[-1])
    i = np.clip(np.searchsorted(xe, qc, side="right") - 1, 0, last)
    t = np.clip((qc - xe[i]) / (xe[i + 1] - xe[i]), 0.0, 1.0)
    return i, t, xe


def linear(x: FloatArr, q: FloatArr, periodic: bool) -> tuple[IntArr, FloatArr]:
    """Piecewise-linear stencil, shape (m, 2)."""
    i, t, _ = _locate(x, q, periodic)
    idx = np.stack([i, i + 1], axis=1) % x.size
    return idx, np.stack([1.0 - t, t], axis=1)


def keys_weights(t: FloatArr) -> FloatArr:
    """Keys cubic-convolution weights (a = -1/2, Catmull-Rom) for nodes i-1, i, i+1, i+2.

    Parameters
    ----------
    t : numpy.ndarray, shape (m,)
        Fractional position in [0, 1] between nodes i and i+1.

    Returns
    -------
    numpy.ndarray, shape (m, 4)
        Weights that sum to 1 and reproduce quadratics exactly (Keys 1981, eqs. 15-16).
    """
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack(
        [-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], axis=1
    )


def cubic(x: FloatArr, q: FloatArr, periodic: bool) -> tuple[IntArr, FloatArr]:
    """Keys cubic-convolution stencil in index space, shape (m, 4) or (m, 7).

    Periodic axes wrap their indices. On open axes the ghost nodes beyond either end follow Keys'
    boundary condition, which keeps quadratics exact up to the outermost nodes; open axes with
    only two nodes fall back to :func:`linear`.
    """
    n = x.size
    if not periodic and n < 3:
        return linear(x, q, periodic)
    i, t, _ = _locate(x, q, periodic)
    idx = i[:, None] + np.arange(-1, 3)
    w = keys_weights(t)
    if periodic:
        return idx % n, w
    lo, hi = idx[:, 0] < 0, idx[:, 3] > n - 1
    ghost_w = np.where(lo, w[:, 0], np.where(hi, w[:, 3], 0.0))[:, None] * _KEYS_GHOST
    ghost_idx = np.where(lo[:, None], np.array([0, 1, 2]), np.array([n - 1, n - 2, n - 3]))
    w[lo, 0] = 0.0
    w[hi, 3] = 0.0
    idx = np.clip(idx, 0, n - 1)
    return np.concatenate([idx, ghost_idx], axis=1), np.concatenate([w, ghost_w], axis=1)


def overlaps(
    b: FloatArr, lo: FloatArr, hi: FloatArr, periodic: bool, period: float = 360.0
) -> tuple[IntArr, IntArr, FloatArr]:
    """Lengths of the overlaps of intervals [lo, hi] with the cells [b[k], b[k+1]].

    Parameters
    ----------
    b : numpy.ndarray, shape (n + 1,)
        Ascending cell boundaries.
    lo, hi : numpy.ndarray, shape (m,)
        Query intervals, ``lo <= hi``; on periodic axes ``lo`` lies in [b[0], b[0] + period).
    periodic : bool
        Whether cell ``k`` repeats every ``period`` (cell indices are then taken modulo n).

    Returns
    -------
    rows, cols : numpy.ndarray of int, shape (nnz,)
        Interval and cell indices of each non-empty overlap.
    length : numpy.ndarray, shape (nnz,)
        Overlap lengths, positive.
    """
    n = b.size - 1
    be = np.concatenate([b, b[1:] + period]) if periodic else b
    ncell = be.size - 1
    k0 = np.clip(np.searchsorted(be, lo, side="right") - 1, 0, ncell - 1)
    k1 = np.clip(np.searchsorted(be, hi, side="left"), 1, ncell)
    count = np.maximum(k1 - k0, 0)
    rows = np.repeat(np.arange(lo.size), count)
    start = np.cumsum(count) - count
    cells = k0[rows] + np.arange(rows.size) - start[rows]
    length = np.minimum(hi[rows], be[cells + 1]) - np.maximum(lo[rows], be[cells])
    keep = length > 0
    return rows[keep], cells[keep] % n, length[keep]
