"""Thin xarray front end: :class:`Regridder` builds weights once and applies them many times."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.grid import find_latlon
from xdiffsr.regrid import _xesmf
from xdiffsr.regrid._io import read_weights, write_weights
from xdiffsr.regrid._weights import BACKENDS, METHODS, check_choice, regrid_weights


def _as_matrix(weights: Any, shape: tuple[int, int]) -> tuple[sp.csr_matrix, str, str | None]:
    """Weights from a path or a matrix, checked (and, for size-less xESMF files, padded)."""
    method = None
    if isinstance(weights, str | os.PathLike):
        w, meta = read_weights(weights)
        method, source = meta["method"], f"file {Path(weights).name}"
        if meta["src_shape"] is None and w.shape[0] <= shape[0] and w.shape[1] <= shape[1]:
            w.resize(shape)  # xESMF files carry no sizes; empty trailing rows/cols are implicit
    elif sp.issparse(weights) or isinstance(weights, np.ndarray):
        w, source = sp.csr_matrix(weights), "user matrix"
    else:
        raise ArgumentError(
            f"weights must be None, a path to a weights file or a sparse matrix; got "
            f"{type(weights).__name__}"
        )
    if w.shape != shape:
        raise ArgumentError(
            f"weights have shape {w.shape} but the grids need {shape} (n_out, n_in); build them "
            "for these grids or pass weights=None"
        )
    return sp.csr_matrix(w, dtype=np.float64), source, method


def _describe(lat: xr.DataArray, lon: xr.DataArray) -> str:
    la, lo = np.asarray(lat), np.asarray(lon)
    return (
        f"{(la.size, lo.size)}  lat {la[0]:g}..{la[-1]:g} ({lat.dims[0]}), "
        f"lon {lo[0]:g}..{lo[-1]:g} ({lon.dims[0]})"
    )


class Regridder:
    """Regrid xarray objects between two rectilinear lat/lon grids with precomputed weights.

    Parameters
    ----------
    ds_in, ds_out : xarray.Dataset or xarray.DataArray
        Objects carrying the source and destination grids; latitude and longitude are found with
        cf_xarray (``obj.cf["latitude"]``), then by CF ``standard_name``/``units``, then by the
        names ``lat``/``latitude``/``lon``/``longitude``.
    method : {"conservative", "bilinear", "bicubic"}
        See :func:`regrid_weights`.
    weights : None, str, path-like or scipy.sparse matrix, optional
        Precomputed weights (an xESMF/ESMF netCDF file or a matrix of shape (n_out, n_in));
        ``None`` builds them with :func:`regrid_weights`.
    backend : {"auto", "builtin", "xesmf"}
        Passed to :func:`regrid_weights`.
    periodic : bool, optional
        Whether the source longitudes wrap; ``None`` detects it.
    allow_partial : bool
        Passed to :func:`regrid_weights`; destination cells with no source data become NaN.

    Attributes
    ----------
    weights : scipy.sparse.csr_matrix, shape (n_out_lat * n_out_lon, n_in_lat * n_in_lon)
    shape_in, shape_out : tuple of int
        (n_lat, n_lon) of the two grids.

    Examples
    --------
    >>> rg = Regridder(fine, coarse, "conservative")  # doctest: +SKIP
    >>> coarse_t = rg(fine["t850"])                     # doctest: +SKIP
    """

    def __init__(
        self,
        ds_in: xr.Dataset | xr.DataArray,
        ds_out: xr.Dataset | xr.DataArray,
        method: str = "conservative",
        *,
        weights: Any = None,
        backend: str = "auto",
        periodic: bool | None = None,
        allow_partial: bool = False,
    ) -> None:
        self.method = check_choice(method, METHODS, "method")
        backend = check_choice(backend, BACKENDS, "backend")
        self._lat_in, self._lon_in = find_latlon(ds_in, "ds_in")
        self._lat_out, self._lon_out = find_latlon(ds_out, "ds_out")
        self.shape_in = (self._lat_in.size, self._lon_in.size)
        self.shape_out = (self._lat_out.size, self._lon_out.size)
        shape = (self.shape_out[0] * self.shape_out[1], self.shape_in[0] * self.shape_in[1])
        if weights is None:
            self.source = "xesmf" if _xesmf.wanted(backend, self.method) else "built-in"
            self.weights = regrid_weights(
                self._lat_in.values,
                self._lon_in.values,
                self._lat_out.values,
                self._lon_out.values,
                self.method,
                periodic=periodic,
                backend=backend,
                allow_partial=allow_partial,
            )
        else:
            self.weights, self.source, file_method = _as_matrix(weights, shape)
            self.method = file_method or self.method
        self._empty = np.diff(self.weights.indptr) == 0

    def __repr__(self) -> str:
        return "\n".join(
            [
                "xdiffsr.regrid.Regridder",
                f"  method:      {self.method}",
                f"  weights:     {self.source}, {self.weights.nnz} non-zeros, "
                f"{int(self._empty.sum())} empty rows",
                f"  input grid:  {_describe(self._lat_in, self._lon_in)}",
                f"  output grid: {_describe(self._lat_out, self._lon_out)}",
            ]
        )

    def to_netcdf(self, path: str | os.PathLike) -> Path:
        """Write the weights in xESMF's netCDF format (see :func:`write_weights`)."""
        return write_weights(
            path,
            self.weights,
            src_shape=self.shape_in,
            dst_shape=self.shape_out,
            method=self.method,
        )

    def regrid_array(self, data: np.ndarray) -> np.ndarray:
        """Regrid a numpy array of shape (..., n_in_lat, n_in_lon) to (..., n_out_lat, n_out_lon).

        Floating dtypes are kept (others become float64); NaNs propagate to every destination
        cell whose weights touch them, and empty rows (``allow_partial``) give NaN.
        """
        data = np.asarray(data)
        if data.shape[-2:] != self.shape_in:
            raise CoordinateError(
                f"data has horizontal shape {data.shape[-2:]}, the regridder expects "
                f"{self.shape_in}"
            )
        dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
        x = data.reshape(-1, self.shape_in[0] * self.shape_in[1])
        y = np.asarray(self.weights @ x.T).T
        if self._empty.any():
            y[:, self._empty] = np.nan
        return y.reshape(*data.shape[:-2], *self.shape_out).astype(dtype, copy=False)

    def __call__(self, obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
        """Regrid a DataArray, or every data variable of a Dataset on the source grid.

        numpy-backed input is computed eagerly; dask-backed input stays lazy (one task per chunk
        of the non-spatial dimensions; the spatial dimensions are merged into a single chunk).
        Dataset variables without the grid's dimensions are kept unchanged.
        """
        if isinstance(obj, xr.DataArray):
            return self._regrid_da(obj)
        if not isinstance(obj, xr.Dataset):
            raise ArgumentError(f"expected a DataArray or Dataset; got {type(obj).__name__}")
        dims = {self._lat_in.dims[0], self._lon_in.dims[0]}
        out = {
            n: self._regrid_da(v) if dims <= set(v.dims) else v
            for n, v in obj.data_vars.items()
            if dims <= set(v.dims) or not dims & set(v.dims)
        }
        ds = xr.Dataset(out, attrs=obj.attrs)
        return ds.drop_vars(
            [c for c in ds.coords if dims & set(ds[c].dims)], errors="ignore"
        ).assign_coords(self._out_coords())

    def _out_coords(self) -> dict[Any, xr.Variable]:
        return {c.name: c.variable for c in (self._lat_out, self._lon_out)}

    def _check_grid(self, da: xr.DataArray) -> None:
        for ref in (self._lat_in, self._lon_in):
            dim = ref.dims[0]
            if dim not in da.dims:
                raise CoordinateError(
                    f"{da.name!r} lacks the source grid dimension {dim!r} (dims {da.dims})"
                )
            if ref.name in da.coords and (
                da[ref.name].shape != ref.shape
                or not np.allclose(np.asarray(da[ref.name]), np.asarray(ref))
            ):
                raise CoordinateError(
                    f"{da.name!r} has {ref.name} values that differ from the regridder's source "
                    "grid; build a Regridder for this grid"
                )

    def _regrid_da(self, da: xr.DataArray) -> xr.DataArray:
        self._check_grid(da)
        lat_in, lon_in = self._lat_in.dims[0], self._lon_in.dims[0]
        lat_out, lon_out = self._lat_out.dims[0], self._lon_out.dims[0]
        if da.chunks is not None:
            da = da.chunk({lat_in: -1, lon_in: -1})
        dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.float64
        out = xr.apply_ufunc(
            self.regrid_array,
            da,
            input_core_dims=[[lat_in, lon_in]],
            output_core_dims=[[lat_out, lon_out]],
            exclude_dims={lat_in, lon_in},
            dask="parallelized",
            output_dtypes=[dtype],
            dask_gufunc_kwargs={
                "output_sizes": {lat_out: self.shape_out[0], lon_out: self.shape_out[1]}
            },
            keep_attrs=True,
        )
        out = out.assign_coords(self._out_coords())
        out.attrs["regrid_method"] = self.method
        return out
