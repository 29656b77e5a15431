"""Thin xarray front end: :class:`Regridder` builds weights once and applies them many times."""

from __future__ import annotations

import os
from collections.abc import Mapping
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

#: xESMF's ``extrap_method`` values -> what to do (only ``None`` and nearest_s2d are built in).
EXTRAP_METHODS = (None, "nearest_s2d")


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


def _check_extrap(extrap_method: object) -> None:
    if extrap_method not in EXTRAP_METHODS:
        raise ArgumentError(
            f"extrap_method={extrap_method!r} is not built in; the closest supported choice is "
            "'nearest_s2d' (or None: no extrapolation)"
        )


def _check_na_thres(na_thres: object) -> float:
    ok = isinstance(na_thres, int | float | np.floating) and not isinstance(na_thres, bool)
    if not ok or not 0.0 <= float(na_thres) <= 1.0:  # type: ignore[arg-type]
        raise ArgumentError(f"na_thres={na_thres!r} must be a number in [0, 1]")
    return float(na_thres)  # type: ignore[arg-type]


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
    method : {"conservative", "bilinear", "bicubic", "conservative_normed", "nearest_s2d", \
"nearest_d2s"}
        See :func:`regrid_weights`; xESMF's names are accepted (``"patch"`` is refused, naming
        ``"bicubic"``).
    weights : None, str, path-like or scipy.sparse matrix, optional
        Precomputed weights (an xESMF/ESMF netCDF file or a matrix of shape (n_out, n_in));
        ``None`` builds them with :func:`regrid_weights` (or reads ``filename``, see below).
    backend : {"auto", "builtin", "xesmf"}
        Passed to :func:`regrid_weights`.
    periodic : bool, optional
        Whether the source longitudes wrap; ``None`` detects it (xESMF's default is False).
    allow_partial : bool
        Passed to :func:`regrid_weights`; destination cells with no source data become NaN.
    filename : str or path-like, optional
        xESMF-layout weight file (:func:`write_weights`): written after the weights are built.
    reuse_weights : bool
        Read the weights from ``filename`` when it exists instead of building them (its grid
        sizes and method are checked); without ``filename`` xESMF's default name
        ``{method}_{nlat_in}x{nlon_in}_{nlat_out}x{nlon_out}.nc`` is used.
    extrap_method : {None, "nearest_s2d"}
        Fill destination cells the method leaves empty (outside a regional source grid; needs
        ``allow_partial=True``) with the nearest source value. xESMF's ``"inverse_dist"`` and
        ``"creep_fill"`` are refused naming ``"nearest_s2d"``.

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
        filename: str | os.PathLike | None = None,
        reuse_weights: bool = False,
        extrap_method: str | None = None,
    ) -> None:
        self.method = check_choice(method, METHODS, "method")
        backend = check_choice(backend, BACKENDS, "backend")
        _check_extrap(extrap_method)
        self._lat_in, self._lon_in = find_latlon(ds_in, "ds_in")
        self._lat_out, self._lon_out = find_latlon(ds_out, "ds_out")
        self.shape_in = (self._lat_in.size, self._lon_in.size)
        self.shape_out = (self._lat_out.size, self._lon_out.size)
        shape = (self.shape_out[0] * self.shape_out[1], self.shape_in[0] * self.shape_in[1])
        if reuse_weights and filename is None:
            filename = self._default_filename()
        self.filename = None if filename is None else Path(filename)
        if weights is None and reuse_weights and self.filename.exists():  # type: ignore[union-attr]
            weights = self.filename
            self._check_file_method()
        if weights is None:
            self.source = "xesmf" if _xesmf.wanted(backend, self.method) else "built-in"
            self.weights = self._build(periodic, backend, allow_partial)
            if extrap_method is not None:
                self.weights = self._extrapolate(self.weights, periodic)
            if self.filename is not None:
                self.to_netcdf(self.filename)
        else:
            self.weights, self.source, file_method = _as_matrix(weights, shape)
            self.method = file_method or self.method
        self._empty = np.diff(self.weights.indptr) == 0

    def _build(self, periodic: bool | None, backend: str, allow_partial: bool) -> sp.csr_matrix:
        return regrid_weights(
            self._lat_in.values,
            self._lon_in.values,
            self._lat_out.values,
            self._lon_out.values,
            self.method,
            periodic=periodic,
            backend=backend,
            allow_partial=allow_partial,
        )

    def _extrapolate(self, w: sp.csr_matrix, periodic: bool | None) -> sp.csr_matrix:
        """Empty rows take the nearest_s2d rows (xESMF's ``extrap_method="nearest_s2d"``)."""
        empty = (np.diff(w.indptr) == 0).astype(float)
        if not empty.any():
            return w
        near = regrid_weights(
            self._lat_in.values, self._lon_in.values, self._lat_out.values,
            self._lon_out.values, "nearest_s2d", periodic=periodic, backend="builtin",
        )
        return sp.csr_matrix(w + sp.diags(empty) @ near)

    def _default_filename(self) -> Path:
        (a, b), (c, d) = self.shape_in, self.shape_out
        return Path(f"{self.method}_{a}x{b}_{c}x{d}.nc")

    def _check_file_method(self) -> None:
        method = read_weights(self.filename)[1]["method"]  # type: ignore[arg-type]
        if method is not None and method != self.method:
            raise ArgumentError(
                f"reuse_weights=True but {self.filename} holds {method!r} weights, not "
                f"{self.method!r}; delete the file, give another filename or reuse_weights=False"
            )

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

    def regrid_array(
        self, data: np.ndarray, *, skipna: bool = False, na_thres: float = 1.0
    ) -> np.ndarray:
        """Regrid a numpy array of shape (..., n_in_lat, n_in_lon) to (..., n_out_lat, n_out_lon).

        Floating dtypes are kept (others become float64); empty rows (``allow_partial``) give
        NaN. Without ``skipna`` NaNs propagate to every destination cell whose weights touch
        them. With ``skipna`` (xESMF's) NaNs are left out and each row is renormalised over its
        valid inputs; a cell becomes NaN where the NaN share of its weights exceeds ``na_thres``
        (1: only cells with no valid input at all).
        """
        data = np.asarray(data)
        if data.shape[-2:] != self.shape_in:
            raise CoordinateError(
                f"data has horizontal shape {data.shape[-2:]}, the regridder expects "
                f"{self.shape_in}"
            )
        dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
        x = data.reshape(-1, self.shape_in[0] * self.shape_in[1])
        if skipna:
            y = self._skipna(x, _check_na_thres(na_thres))
        else:
            y = np.asarray(self.weights @ x.T).T
        if self._empty.any():
            y[:, self._empty] = np.nan
        return y.reshape(*data.shape[:-2], *self.shape_out).astype(dtype, copy=False)

    def _skipna(self, x: np.ndarray, na_thres: float) -> np.ndarray:
        valid = ~np.isnan(x)
        total = np.asarray(self.weights.sum(axis=1)).ravel()
        wsum = np.asarray(self.weights @ valid.T.astype(np.float64)).T
        y = np.asarray(self.weights @ np.where(valid, x, 0.0).T).T
        frac = wsum / np.where(total > 0, total, 1.0)
        bad = (wsum <= 0) | (1.0 - frac > na_thres + 1e-12)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(bad, np.nan, y * (total / np.where(bad, 1.0, wsum)))
        return y

    def __call__(
        self,
        obj: xr.DataArray | xr.Dataset,
        *,
        keep_attrs: bool = True,
        skipna: bool = False,
        na_thres: float = 1.0,
        output_chunks: Mapping[str, int] | tuple[int, int] | None = None,
    ) -> xr.DataArray | xr.Dataset:
        """Regrid a DataArray, or every data variable of a Dataset on the source grid.

        numpy-backed input is computed eagerly; dask-backed input stays lazy (one task per chunk
        of the non-spatial dimensions; the spatial dimensions are merged into a single chunk).
        Dataset variables without the grid's dimensions are kept unchanged.

        Parameters
        ----------
        obj : xarray.DataArray or xarray.Dataset
            Data on the source grid.
        keep_attrs : bool
            Keep the attributes of the data (xESMF's default is False).
        skipna, na_thres : bool, float
            NaN handling, see :meth:`regrid_array`.
        output_chunks : dict or (int, int), optional
            Chunks of the output's latitude and longitude dimensions (dask input only; by
            dimension name, or (n_lat, n_lon)).
        """
        opts = {"keep_attrs": keep_attrs, "skipna": skipna, "na_thres": _check_na_thres(na_thres),
                "output_chunks": output_chunks}
        if isinstance(obj, xr.DataArray):
            return self._regrid_da(obj, **opts)
        if not isinstance(obj, xr.Dataset):
            raise ArgumentError(f"expected a DataArray or Dataset; got {type(obj).__name__}")
        dims = {self._lat_in.dims[0], self._lon_in.dims[0]}
        out = {
            n: self._regrid_da(v, **opts) if dims <= set(v.dims) else v
            for n, v in obj.data_vars.items()
            if dims <= set(v.dims) or not dims & set(v.dims)
        }
        ds = xr.Dataset(out, attrs=obj.attrs if keep_attrs else {})
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

    def _output_chunks(self, chunks: Mapping[str, int] | tuple[int, int]) -> dict[str, int]:
        dims = (self._lat_out.dims[0], self._lon_out.dims[0])
        if isinstance(chunks, Mapping):
            unknown = set(chunks) - set(dims)
            if unknown:
                raise ArgumentError(
                    f"output_chunks names {sorted(map(str, unknown))}; the output grid's "
                    f"dimensions are {list(dims)}"
                )
            return dict(chunks)
        if isinstance(chunks, tuple | list) and len(chunks) == 2:
            return dict(zip(dims, chunks, strict=True))
        raise ArgumentError(
            f"output_chunks={chunks!r} must be a dict by dimension or (n_lat, n_lon)"
        )

    def _regrid_da(
        self,
        da: xr.DataArray,
        *,
        keep_attrs: bool = True,
        skipna: bool = False,
        na_thres: float = 1.0,
        output_chunks: Mapping[str, int] | tuple[int, int] | None = None,
    ) -> xr.DataArray:
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
            kwargs={"skipna": skipna, "na_thres": na_thres},
            keep_attrs=keep_attrs,
        )
        out = out.assign_coords(self._out_coords())
        if output_chunks is not None and out.chunks is not None:
            out = out.chunk(self._output_chunks(output_chunks))
        out.attrs["regrid_method"] = self.method
        return out
