"""Built-in (numpy/scipy) regridding and point-interpolation weights on rectilinear lat/lon grids.

Every operator here is separable: one 1-D operator per axis, combined with a Kronecker product for
grid-to-grid weights or a row-wise ("face-splitting") product for scattered points. Columns index
the source field flattened in C order over (lat, lon) exactly as its coordinates were given.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from xdiffsr.errors import CoordinateError
from xdiffsr.regrid import _stencil
from xdiffsr.regrid._axes import LatAxis, LonAxis

#: Absolute tolerance in degrees for points on the outer boundary of a grid's cells.
_TOL_DEG = 1e-7
#: Relative tolerance on the covered fraction of a destination cell.
_TOL_COVER = 1e-9

FloatArr = NDArray[np.float64]


def lat_inside(axis: LatAxis, lat: FloatArr) -> NDArray[np.bool_]:
    """Whether each latitude lies within the grid's latitude cells (bounds clipped to the poles)."""
    b = axis.bounds() if axis.size > 1 else axis.values[[0, 0]]
    return (lat >= b[0] - _TOL_DEG) & (lat <= b[-1] + _TOL_DEG)


def lon_frame(axis: LonAxis, lon: FloatArr) -> tuple[FloatArr, NDArray[np.bool_]]:
    """Longitudes moved into the axis' frame, and whether they lie within its cells."""
    if axis.periodic:
        return axis.to_frame(lon, axis.values[0]), np.ones(lon.shape, dtype=bool)
    q = axis.nearest_frame(lon)
    b = axis.bounds() if axis.size > 1 else axis.values[[0, 0]]
    return q, (q >= b[0] - _TOL_DEG) & (q <= b[-1] + _TOL_DEG)


def stencil_1d(
    axis: LatAxis | LonAxis, q: FloatArr, method: str
) -> tuple[NDArray[np.intp], FloatArr]:
    """Interpolation stencil on a sorted axis, with indices mapped back to input order."""
    periodic = isinstance(axis, LonAxis) and axis.periodic
    fn = _stencil.cubic if method == "bicubic" else _stencil.linear
    idx, w = fn(axis.values, q, periodic)
    return axis.order[idx], w


def _axis_matrix(
    idx: NDArray[np.intp], w: FloatArr, n: int, valid: NDArray[np.bool_]
) -> sp.csr_matrix:
    """Sparse (m, n) matrix from a stencil; rows with ``valid`` False are left empty."""
    m, k = idx.shape
    rows = np.repeat(np.arange(m), k)
    data = np.where(valid[:, None], w, 0.0).ravel()
    a = sp.csr_matrix((data, (rows, idx.ravel())), shape=(m, n))
    a.sum_duplicates()
    a.eliminate_zeros()
    return a


def interp_axis_matrix(
    axis: LatAxis | LonAxis, q: FloatArr, method: str, valid: NDArray[np.bool_]
) -> sp.csr_matrix:
    """1-D interpolation operator of shape (len(q), axis.size)."""
    idx, w = stencil_1d(axis, q, method)
    return _axis_matrix(idx, w, axis.size, valid)


def face_split(
    lat_st: tuple[NDArray[np.intp], FloatArr],
    lon_st: tuple[NDArray[np.intp], FloatArr],
    n_lon: int,
    n_grid: int,
) -> sp.csr_matrix:
    """Row-wise Kronecker product of per-point lat and lon stencils, shape (m, n_grid)."""
    (il, wl), (ij, wj) = lat_st, lon_st
    m = il.shape[0]
    cols = (il[:, :, None] * n_lon + ij[:, None, :]).reshape(m, -1)
    data = (wl[:, :, None] * wj[:, None, :]).reshape(m, -1)
    rows = np.repeat(np.arange(m), cols.shape[1])
    a = sp.csr_matrix((data.ravel(), (rows, cols.ravel())), shape=(m, n_grid))
    a.sum_duplicates()
    a.eliminate_zeros()
    return a


def _interval_bounds(axis: LatAxis | LonAxis) -> tuple[FloatArr, FloatArr]:
    """Lower and upper cell boundaries of every value, in the input order of the axis."""
    b = axis.bounds()
    lo, hi = np.empty(axis.size), np.empty(axis.size)
    lo[axis.order], hi[axis.order] = b[:-1], b[1:]
    return lo, hi


def _overlap_matrix(
    src_b: FloatArr, src_order: NDArray[np.intp], lo: FloatArr, hi: FloatArr, periodic: bool
) -> tuple[sp.csr_matrix, FloatArr]:
    """Overlap lengths (m, n) of destination intervals with source cells, and row sums."""
    rows, cells, length = _stencil.overlaps(src_b, lo, hi, periodic)
    a = sp.csr_matrix((length, (rows, src_order[cells])), shape=(lo.size, src_order.size))
    return a, np.asarray(a.sum(axis=1)).ravel()


def conservative_lat(src: LatAxis, dst: LatAxis) -> tuple[sp.csr_matrix, FloatArr, FloatArr]:
    """Overlaps in sin(latitude) (area per radian of longitude) and each row's extent."""
    sb = np.sin(np.deg2rad(src.bounds()))
    lo, hi = (np.sin(np.deg2rad(v)) for v in _interval_bounds(dst))
    a, covered = _overlap_matrix(sb, src.order, lo, hi, periodic=False)
    return a, covered, hi - lo


def conservative_lon(src: LonAxis, dst: LonAxis) -> tuple[sp.csr_matrix, FloatArr, FloatArr]:
    """Overlaps in longitude (degrees) and each row's width."""
    sb = src.bounds()
    lo, hi = _interval_bounds(dst)
    width = hi - lo
    if src.periodic:
        lo = src.to_frame(lo, sb[0])
    else:  # put each destination cell on the copy of the circle nearest the source domain
        lo = src.nearest_frame(0.5 * (lo + hi)) - 0.5 * width
    a, covered = _overlap_matrix(sb, src.order, lo, lo + width, periodic=src.periodic)
    return a, covered, width


def normalise_rows(
    a: sp.csr_matrix, covered: FloatArr, extent: FloatArr, partial: bool
) -> tuple[sp.csr_matrix, NDArray[np.bool_]]:
    """Divide overlaps by the destination extent (or, if ``partial``, by the covered part).

    Returns the normalised matrix and the mask of fully covered rows.
    """
    if np.any(extent <= 0):
        raise CoordinateError("destination cells have zero extent; check the destination grid")
    full = covered >= extent * (1 - _TOL_COVER)
    if not partial:
        return sp.diags(1.0 / extent) @ a, full
    denom = np.where(full, extent, np.where(covered > 0, covered, 1.0))
    return sp.diags(1.0 / denom) @ a, full


def partial_error(
    kind: str, values: FloatArr, bad: NDArray[np.bool_], src_range: tuple[float, float]
) -> CoordinateError:
    """Error naming the destination coordinates not covered by the source grid."""
    shown = ", ".join(f"{v:g}" for v in np.unique(values[bad])[:8])
    return CoordinateError(
        f"{int(bad.sum())} destination {kind}(s) (e.g. {shown}) fall partly or wholly outside the "
        f"source grid's {kind} cells [{src_range[0]:g}, {src_range[1]:g}]; crop the destination "
        "grid to the source domain, or pass allow_partial=True (conservative rows are then "
        "renormalised over the covered part and rows with no source data are left empty)"
    )
