"""Nearest-neighbour weights (xESMF's ``nearest_s2d`` and ``nearest_d2s``) on rectilinear grids.

Both are separable: the nearest centre is found on each axis separately (in latitude, and in
longitude across the seam on periodic axes) with the linear stencil of :mod:`._builtin`, and the
two 1-D one-hot operators are combined with a Kronecker product.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from xdiffsr.regrid import _builtin as bi
from xdiffsr.regrid._axes import LatAxis, LonAxis


def _in_order(axis: LatAxis | LonAxis) -> NDArray[np.float64]:
    out = np.empty(axis.size)
    out[axis.order] = axis.values
    return out


def _nearest_index(axis: LatAxis | LonAxis, q: NDArray[np.float64]) -> NDArray[np.intp]:
    """Input-order index of the nearest node of ``axis`` to each query (ties: the lower node)."""
    idx, w = bi.stencil_1d(axis, q, "bilinear")
    return idx[np.arange(len(q)), np.argmax(w, axis=1)]


def _one_hot(idx: NDArray[np.intp], n: int) -> sp.csr_matrix:
    m = idx.size
    return sp.csr_matrix((np.ones(m), (np.arange(m), idx)), shape=(m, n))


def _axis_nearest(src: LatAxis | LonAxis, dst_values: NDArray[np.float64]) -> sp.csr_matrix:
    """(len(dst_values), src.size) one-hot matrix of the nearest ``src`` node of each value."""
    q = bi.lon_frame(src, dst_values)[0] if isinstance(src, LonAxis) else dst_values
    return _one_hot(_nearest_index(src, q), src.size)


def nearest_s2d(
    src_la: LatAxis, src_lo: LonAxis, dst_la: LatAxis, dst_lo: LonAxis
) -> sp.csr_matrix:
    """Each destination centre takes the value of the nearest source centre (every row is set).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_dst, n_src)
        One 1 per row.
    """
    a_lat = _axis_nearest(src_la, _in_order(dst_la))
    a_lon = _axis_nearest(src_lo, _in_order(dst_lo))
    return sp.kron(a_lat, a_lon, format="csr")


def nearest_d2s(
    src_la: LatAxis, src_lo: LonAxis, dst_la: LatAxis, dst_lo: LonAxis
) -> sp.csr_matrix:
    """Each source centre goes to its nearest destination centre; destinations average them.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_dst, n_src)
        Rows sum to 1 (the mean of the sources mapped to a destination), or are empty where no
        source centre is nearest to that destination.
    """
    b_lat = _axis_nearest(dst_la, _in_order(src_la))  # (n_src_lat, n_dst_lat)
    b_lon = _axis_nearest(dst_lo, _in_order(src_lo))
    w = sp.csr_matrix(sp.kron(b_lat, b_lon).T)
    count = np.asarray(w.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(np.where(count > 0, 1.0 / np.maximum(count, 1.0), 0.0)) @ w)
