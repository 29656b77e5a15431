"""Optional xESMF backend: ESMF-built weights, permuted onto the caller's coordinate order.

xESMF (and ESMF under it) is not on PyPI, so this module imports it lazily. The grids handed to
xESMF are the sorted axes (latitudes ascending, longitudes unwrapped and increasing) with explicit
cell bounds, so ESMF sees the same cells as the built-in code; the resulting matrix is then
permuted back to the input order of each coordinate.
"""

from __future__ import annotations

import importlib

import numpy as np
import scipy.sparse as sp
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.regrid._axes import LatAxis, LonAxis

_LAT_ATTRS = {"standard_name": "latitude", "units": "degrees_north"}
_LON_ATTRS = {"standard_name": "longitude", "units": "degrees_east"}


def available() -> bool:
    """Whether ``import xesmf`` succeeds."""
    try:
        importlib.import_module("xesmf")
    except ImportError:
        return False
    return True


def wanted(backend: str, method: str) -> bool:
    """Whether to build ``method`` weights with xESMF under the ``backend`` choice.

    Only conservative and bilinear weights come from xESMF; the other methods are built in
    (``backend="xesmf"`` with them is refused).
    """
    if method == "conservative_normed":
        method = "conservative"
    own = method not in ("conservative", "bilinear")
    if backend == "builtin" or (backend == "auto" and own):
        return False
    if backend == "xesmf" and own:
        raise ArgumentError(
            f"backend='xesmf' builds only conservative and bilinear weights here; method="
            f"{method!r} is built in: use backend='builtin' or 'auto'"
        )
    if available():
        return True
    if backend == "xesmf":
        raise ArgumentError(
            "backend='xesmf' but `import xesmf` failed; install xesmf and esmpy (conda-forge; "
            "ESMF is not on PyPI) or use backend='builtin'"
        )
    return False


def _grid(la: LatAxis, lo: LonAxis) -> xr.Dataset:
    """xESMF grid dataset on the sorted axes with explicit bounds ``lat_b``/``lon_b``."""
    return xr.Dataset(
        coords={
            "lat": ("lat", la.values, _LAT_ATTRS),
            "lon": ("lon", lo.values, _LON_ATTRS),
            "lat_b": ("lat_b", la.bounds()),
            "lon_b": ("lon_b", lo.bounds()),
        }
    )


def _flat_order(la: LatAxis, lo: LonAxis) -> np.ndarray:
    """Input-order flat index of each sorted (lat, lon) cell, C order."""
    return (la.order[:, None] * lo.size + lo.order[None, :]).ravel()


def _to_scipy(w: object) -> sp.coo_matrix:
    """xESMF's weights (DataArray of sparse.COO, or a scipy matrix in old versions) as COO."""
    data = getattr(w, "data", w)
    if hasattr(data, "to_scipy_sparse"):
        data = data.to_scipy_sparse()
    return sp.coo_matrix(data)


def weights(
    src_la: LatAxis, src_lo: LonAxis, dst_la: LatAxis, dst_lo: LonAxis, method: str
) -> sp.csr_matrix:
    """ESMF weights, shape (n_dst, n_src), in the input order of all four coordinates."""
    xesmf = importlib.import_module("xesmf")
    regridder = xesmf.Regridder(
        _grid(src_la, src_lo), _grid(dst_la, dst_lo), method, periodic=src_lo.periodic
    )
    w = _to_scipy(regridder.weights)
    rows, cols = _flat_order(dst_la, dst_lo)[w.row], _flat_order(src_la, src_lo)[w.col]
    shape = (dst_la.size * dst_lo.size, src_la.size * src_lo.size)
    return sp.csr_matrix((w.data, (rows, cols)), shape=shape)


def merge(w_esmf: sp.csr_matrix, w_builtin: sp.csr_matrix, renormalise: bool) -> sp.csr_matrix:
    """ESMF weights with the built-in conventions for unmapped and partial rows.

    Rows ESMF leaves empty that the built-in weights fill (destination centres between the
    outermost source centre and the edge of its cell) take the built-in weights; with
    ``renormalise`` rows are divided by their sums, as for ``allow_partial`` conservative weights.
    """
    empty = np.diff(w_esmf.indptr) == 0
    fill = empty & (np.diff(w_builtin.indptr) > 0)
    w = sp.diags((~fill).astype(float)) @ w_esmf + sp.diags(fill.astype(float)) @ w_builtin
    if renormalise:
        s = np.asarray(w.sum(axis=1)).ravel()
        w = sp.diags(np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)) @ w
    w = sp.csr_matrix(w)
    w.eliminate_zeros()
    return w
