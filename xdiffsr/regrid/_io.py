"""Regridding weight files in the xESMF / ESMF netCDF layout.

A weight file holds the non-zeros of the (n_b, n_a) matrix W in coordinate form: variables ``S``
(weights), ``row`` (destination index) and ``col`` (source index), all on dimension ``n_s``, with
1-based (Fortran) indices. xESMF writes only these three variables; ESMF's ``ESMF_RegridWeightGen``
adds, among others, ``src_grid_dims`` and ``dst_grid_dims`` (grid shapes, fastest-varying dimension
first, i.e. (n_lon, n_lat) for a lat/lon grid). A flat index is ``i_lat * n_lon + i_lon`` (C order
over (lat, lon)), the same for both tools.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr

from xdiffsr.errors import ArgumentError, FormatError

_MAP_METHOD = {
    "conservative": "Conservative remapping",
    "bilinear": "Bilinear remapping",
    "bicubic": "Bicubic remapping",
}


def _shape(value: Sequence[int], name: str) -> tuple[int, int]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"{name} must be (n_lat, n_lon); got {value!r}") from err
    if len(shape) != 2 or min(shape) < 1:
        raise ArgumentError(f"{name} must be two positive integers (n_lat, n_lon); got {value!r}")
    return shape  # type: ignore[return-value]


def write_weights(
    path: str | os.PathLike,
    matrix: sp.spmatrix | sp.sparray,
    *,
    src_shape: Sequence[int],
    dst_shape: Sequence[int],
    method: str,
) -> Path:
    """Write regridding weights as an xESMF-readable netCDF file.

    Parameters
    ----------
    path : str or path-like
        Output file (overwritten).
    matrix : scipy.sparse matrix, shape (prod(dst_shape), prod(src_shape))
        Weights, ``dst_flat = matrix @ src_flat`` with C-order flattening over (lat, lon).
    src_shape, dst_shape : (int, int)
        Grid shapes (n_lat, n_lon).
    method : str
        Method name recorded in the attributes (``xdiffsr_method``, ESMF-style ``map_method``).

    Returns
    -------
    pathlib.Path
        The path written.

    Notes
    -----
    Variables ``S`` (float64), ``row`` and ``col`` (int32, 1-based) on dimension ``n_s``, as
    xESMF's ``Regridder.to_netcdf`` writes them, plus ESMF's ``src_grid_dims`` and
    ``dst_grid_dims`` (n_lon, n_lat) and global attributes ``n_a``, ``n_b``, ``map_method``.

    References
    ----------
    .. [1] ESMF Reference Manual, "Regridding weight file format" (ESMF_RegridWeightGen).
    .. [2] xESMF, ``xesmf/frontend.py`` (``BaseRegridder.to_netcdf``) and ``xesmf/smm.py``
       (``read_weights``), https://github.com/pangeo-data/xESMF
    """
    src, dst = _shape(src_shape, "src_shape"), _shape(dst_shape, "dst_shape")
    if not sp.issparse(matrix):
        raise ArgumentError(f"matrix must be a scipy.sparse matrix; got {type(matrix).__name__}")
    expected = (dst[0] * dst[1], src[0] * src[1])
    if matrix.shape != expected:
        raise ArgumentError(
            f"matrix has shape {matrix.shape} but dst_shape {dst} and src_shape {src} imply "
            f"{expected}; pass the grid shapes the matrix was built for"
        )
    coo = sp.coo_matrix(matrix)
    coo.sum_duplicates()  # also sorts by (row, col)
    ds = xr.Dataset(
        {
            "S": ("n_s", coo.data.astype(np.float64)),
            "row": ("n_s", (coo.row + 1).astype(np.int32)),
            "col": ("n_s", (coo.col + 1).astype(np.int32)),
            "src_grid_dims": ("src_grid_rank", np.array(src[::-1], dtype=np.int32)),
            "dst_grid_dims": ("dst_grid_rank", np.array(dst[::-1], dtype=np.int32)),
        },
        attrs={
            "title": "xdiffsr regridding weights",
            "map_method": _MAP_METHOD.get(str(method), str(method)),
            "xdiffsr_method": str(method),
            "n_a": np.int32(expected[1]),
            "n_b": np.int32(expected[0]),
            "index_base": np.int32(1),
        },
    )
    path = Path(path)
    ds.to_netcdf(path, engine=_engine())
    return path


def _engine() -> str:
    try:
        import netCDF4  # noqa: F401
    except ImportError:
        return "scipy"
    return "netcdf4"


def _open(path: str | os.PathLike) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return xr.load_dataset(path, decode_times=False, mask_and_scale=False)
    except (OSError, ValueError, TypeError) as err:
        raise FormatError(f"{path} is not a readable netCDF weights file: {err}") from err


def _index(ds: xr.Dataset, name: str, path: Path) -> np.ndarray:
    v = np.asarray(ds[name].values)
    if v.ndim != 1 or not np.issubdtype(v.dtype, np.number):
        raise FormatError(f"{path}: variable {name!r} must be a 1-D numeric array; got {v.dtype}")
    if v.size and (not np.all(np.isfinite(v)) or np.any(v != np.round(v)) or v.min() < 1):
        raise FormatError(
            f"{path}: {name!r} must hold 1-based integer indices (ESMF/xESMF convention); "
            f"found values such as {v[(v < 1) | (v != np.round(v))][:5]}"
        )
    return v.astype(np.int64) - 1


def _grid_shape(ds: xr.Dataset, which: str) -> tuple[int, ...] | None:
    name = f"{which}_grid_dims"
    if name in ds.variables:
        return tuple(int(v) for v in np.asarray(ds[name].values)[::-1])
    return None


def _size(ds: xr.Dataset, key: str, shape: tuple[int, ...] | None, index: np.ndarray) -> int:
    """Matrix dimension from the grid shape, then n_a/n_b (attribute or dimension), else indices."""
    if shape is not None:
        return int(np.prod(shape))
    if key in ds.attrs:
        return int(ds.attrs[key])
    if key in ds.sizes:
        return int(ds.sizes[key])
    return int(index.max()) + 1 if index.size else 0


def read_weights(path: str | os.PathLike) -> tuple[sp.csr_matrix, dict[str, Any]]:
    """Read an xESMF or ESMF netCDF weight file.

    Parameters
    ----------
    path : str or path-like
        File with variables ``S``, ``row``, ``col`` (1-based) on dimension ``n_s``.

    Returns
    -------
    matrix : scipy.sparse.csr_matrix, shape (n_b, n_a)
        Weights (duplicate entries summed). The size comes from ``src_grid_dims``/``dst_grid_dims``
        when present, then from ``n_a``/``n_b`` (attributes or dimensions), and otherwise from the
        largest index (files written by xESMF itself carry no sizes: empty trailing rows or
        columns cannot be seen, so pass grid shapes to :class:`Regridder` to check them).
    meta : dict
        ``src_shape`` and ``dst_shape`` ((n_lat, n_lon) or None), ``method`` (str or None),
        ``n_a``, ``n_b`` and the file's global ``attrs``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FormatError
        Not netCDF, missing ``S``/``row``/``col``, indices that are not 1-based integers or exceed
        the grid sizes, or non-finite weights.

    References
    ----------
    .. [1] ESMF Reference Manual, "Regridding weight file format".
    .. [2] xESMF ``xesmf/smm.py`` (``read_weights``), https://github.com/pangeo-data/xESMF
    """
    path = Path(path)
    ds = _open(path)
    missing = [v for v in ("S", "row", "col") if v not in ds.variables]
    if missing:
        raise FormatError(
            f"{path}: missing variable(s) {missing}; an xESMF/ESMF weight file needs 'S', 'row' "
            "and 'col' on dimension 'n_s'"
        )
    s = np.asarray(ds["S"].values, dtype=np.float64)
    row, col = _index(ds, "row", path), _index(ds, "col", path)
    if not (s.ndim == 1 and s.shape == row.shape == col.shape):
        raise FormatError(
            f"{path}: S, row, col must be 1-D of equal length; got "
            f"{s.shape}, {row.shape}, {col.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise FormatError(f"{path}: S holds {int((~np.isfinite(s)).sum())} non-finite weights")
    src_shape, dst_shape = _grid_shape(ds, "src"), _grid_shape(ds, "dst")
    n_a, n_b = _size(ds, "n_a", src_shape, col), _size(ds, "n_b", dst_shape, row)
    if row.size and (row.max() >= n_b or col.max() >= n_a):
        raise FormatError(
            f"{path}: indices exceed the grid sizes (max row {row.max() + 1} > n_b={n_b} or max "
            f"col {col.max() + 1} > n_a={n_a})"
        )
    matrix = sp.csr_matrix((s, (row, col)), shape=(n_b, n_a))
    method = ds.attrs.get("xdiffsr_method") or _method_from_esmf(ds.attrs.get("map_method"))
    meta = {
        "src_shape": src_shape,
        "dst_shape": dst_shape,
        "method": method,
        "n_a": n_a,
        "n_b": n_b,
        "attrs": dict(ds.attrs),
    }
    return matrix, meta


def _method_from_esmf(map_method: object) -> str | None:
    text = str(map_method).lower() if map_method is not None else ""
    return next((m for m in _MAP_METHOD if m in text), None)
