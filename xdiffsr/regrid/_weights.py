"""Public weight builders: :func:`regrid_weights`, :func:`point_weights`, :func:`cell_areas`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from xdiffsr.errors import ArgumentError, CoordinateError, ObservationError
from xdiffsr.regrid import _builtin as bi
from xdiffsr.regrid import _xesmf
from xdiffsr.regrid._axes import LatAxis, LonAxis, lat_axis, lon_axis
from xdiffsr.regrid._nearest import nearest_d2s, nearest_s2d

METHODS = (
    "conservative", "bilinear", "bicubic", "conservative_normed", "nearest_s2d", "nearest_d2s"
)
#: xESMF methods without a built-in equivalent -> the closest supported method.
UNSUPPORTED = {"patch": "bicubic"}
POINT_METHODS = ("bilinear", "bicubic")
BACKENDS = ("auto", "builtin", "xesmf")


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    """Return ``value`` lower-cased if it is one of ``choices``, else raise ArgumentError.

    xESMF method names without an equivalent (``"patch"``) are refused naming the closest
    supported method.
    """
    if isinstance(value, str) and value.lower() in UNSUPPORTED:
        raise ArgumentError(
            f"{name}={value!r} (ESMF's patch recovery) is not available without ESMF; the closest "
            f"supported method is {UNSUPPORTED[value.lower()]!r} (smooth, higher order); choose "
            f"one of {list(choices)}"
        )
    if not isinstance(value, str) or value.lower() not in choices:
        raise ArgumentError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value.lower()


def _source_axes(lat: ArrayLike, lon: ArrayLike, periodic: bool | None, prefix: str):
    la, lo = lat_axis(lat, f"{prefix}_lat"), lon_axis(lon, f"{prefix}_lon", periodic)
    for axis, name in ((la, "lat"), (lo, "lon")):
        if axis.size < 2:
            raise CoordinateError(
                f"{prefix}_{name} needs at least 2 values to interpolate from; got {axis.values}"
            )
    return la, lo


def _in_order(axis: LatAxis | LonAxis) -> NDArray[np.float64]:
    """Axis values back in input order (longitudes in the axis' unwrapped frame)."""
    out = np.empty(axis.size)
    out[axis.order] = axis.values
    return out


def regrid_weights(
    src_lat: ArrayLike,
    src_lon: ArrayLike,
    dst_lat: ArrayLike,
    dst_lon: ArrayLike,
    method: str = "conservative",
    *,
    periodic: bool | None = None,
    backend: str = "auto",
    allow_partial: bool = False,
) -> sp.csr_matrix:
    """Sparse weights that regrid a field from one rectilinear lat/lon grid to another.

    ``dst_flat = W @ src_flat`` where both fields are flattened in C order over (lat, lon), with the
    coordinates in the order given (latitudes ascending or descending, longitudes in either
    convention and starting anywhere on the circle).

    Parameters
    ----------
    src_lat, src_lon : array_like, shapes (n_src_lat,), (n_src_lon,)
        Source cell centres in degrees_north and degrees_east, at least 2 of each.
    dst_lat, dst_lon : array_like, shapes (n_dst_lat,), (n_dst_lon,)
        Destination cell centres.
    method : {"conservative", "bilinear", "bicubic", "conservative_normed", "nearest_s2d", \
"nearest_d2s"}
        ``"conservative"``: first-order conservative remapping, weight = exact spherical area of
        the overlap of source and destination cells divided by the destination cell area; cell
        bounds lie half-way between centres (outer ones extrapolated by half a step, latitudes
        clipped to +/-90). ``"bilinear"``: linear in latitude and in longitude between the four
        surrounding centres. ``"bicubic"``: Keys cubic convolution (a = -1/2) in index space on
        the 4 x 4 surrounding centres. ``"conservative_normed"``: conservative with
        ``allow_partial=True`` (rows renormalised over the covered part, as xESMF's method of that
        name). ``"nearest_s2d"``: each destination centre takes the nearest source centre (nearest
        on each axis; every row is set). ``"nearest_d2s"``: each source centre goes to its nearest
        destination centre, which averages them (rows with none stay empty). xESMF's ``"patch"``
        is refused naming ``"bicubic"``.
    periodic : bool, optional
        Whether the source longitudes wrap around the globe. ``None`` detects it (the gap from the
        last to the first longitude is an ordinary step).
    backend : {"auto", "builtin", "xesmf"}
        ``"xesmf"`` builds conservative and bilinear weights with xESMF/ESMF (needs ``xesmf`` and
        ``esmpy``, from conda-forge); ``"auto"`` uses it when it imports and the built-in numpy
        code otherwise. Bicubic weights are always built-in (ESMF has no bicubic method).
    allow_partial : bool
        What to do with destination cells (conservative) or centres (bilinear, bicubic) that fall
        outside a regional source grid. ``False`` raises :class:`CoordinateError` naming them.
        ``True`` keeps them: conservative rows that overlap the source are renormalised to sum to
        1 over the covered part; rows with no source data are left empty (all zero).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_dst_lat * n_dst_lon, n_src_lat * n_src_lon)
        Rows sum to 1 except the empty rows allowed by ``allow_partial``.

    Raises
    ------
    ArgumentError
        Unknown ``method`` or ``backend``, or ``backend="xesmf"`` without xESMF.
    CoordinateError
        Coordinates that are not 1-D, finite, unique and within range, or destination cells
        outside the source grid (see ``allow_partial``).

    Notes
    -----
    Destination points that lie between the outermost source centre and the edge of its cell
    (e.g. poleward of the last latitude of a global grid) take the value of that outermost centre
    (constant extrapolation); see ``docs/regridding.md`` for how this matches xESMF.

    References
    ----------
    .. [1] Jones, P. W. (1999). First- and second-order conservative remapping schemes for grids in
       spherical coordinates. Monthly Weather Review, 127, 2204-2210.
    .. [2] Keys, R. (1981). Cubic convolution interpolation for digital image processing. IEEE
       Trans. Acoustics, Speech, and Signal Processing, 29(6), 1153-1160.
    .. [3] Zhuang, J. et al. xESMF: Universal regridder for geospatial data,
       https://github.com/pangeo-data/xESMF
    """
    method = check_choice(method, METHODS, "method")
    backend = check_choice(backend, BACKENDS, "backend")
    if method == "conservative_normed":
        method, allow_partial = "conservative", True
    src_la, src_lo = _source_axes(src_lat, src_lon, periodic, "src")
    if method == "nearest_d2s":
        dst_la, dst_lo = _source_axes(dst_lat, dst_lon, None, "dst")
    else:
        dst_la, dst_lo = lat_axis(dst_lat, "dst_lat"), lon_axis(dst_lon, "dst_lon")
    _xesmf.wanted(backend, method)  # refuses backend="xesmf" for the built-in-only methods
    if method == "nearest_s2d":
        return nearest_s2d(src_la, src_lo, dst_la, dst_lo)
    if method == "nearest_d2s":
        return nearest_d2s(src_la, src_lo, dst_la, dst_lo)
    if method == "conservative":
        w = _conservative(src_la, src_lo, dst_la, dst_lo, allow_partial)
    else:
        w = _interpolating(src_la, src_lo, dst_la, dst_lo, method, allow_partial)
    if _xesmf.wanted(backend, method):
        wx = _xesmf.weights(src_la, src_lo, dst_la, dst_lo, method)
        w = _xesmf.merge(wx, w, renormalise=method == "conservative" and allow_partial)
    return w


def _interpolating(
    src_la: LatAxis, src_lo: LonAxis, dst_la: LatAxis, dst_lo: LonAxis, method: str, partial: bool
) -> sp.csr_matrix:
    """Kronecker product of 1-D bilinear/bicubic operators."""
    qlat = _in_order(dst_la)
    ok_lat = bi.lat_inside(src_la, qlat)
    qlon, ok_lon = bi.lon_frame(src_lo, _in_order(dst_lo))
    if not partial:
        _raise_uncovered(src_la, src_lo, qlat, ok_lat, qlon, ok_lon)
    a_lat = bi.interp_axis_matrix(src_la, qlat, method, ok_lat)
    a_lon = bi.interp_axis_matrix(src_lo, qlon, method, ok_lon)
    return sp.kron(a_lat, a_lon, format="csr")


def _conservative(
    src_la: LatAxis, src_lo: LonAxis, dst_la: LatAxis, dst_lo: LonAxis, partial: bool
) -> sp.csr_matrix:
    """Kronecker product of 1-D overlap operators: sin-latitude overlaps times longitude overlaps.

    A lat/lon cell [phi1, phi2] x [lam1, lam2] has area (sin phi2 - sin phi1)(lam2 - lam1) on the
    unit sphere, so the overlap area of two such cells factorises into a latitude and a longitude
    term (Jones 1999, eq. 3 for lat/lon-aligned cell sides).
    """
    for axis, name in ((dst_la, "dst_lat"), (dst_lo, "dst_lon")):
        if axis.size < 2:
            raise CoordinateError(
                f"{name} needs at least 2 values to infer conservative cell bounds; got "
                f"{axis.values}; use method='bilinear' for a single row or column"
            )
    a_lat, full_lat = bi.normalise_rows(*bi.conservative_lat(src_la, dst_la), partial)
    a_lon, full_lon = bi.normalise_rows(*bi.conservative_lon(src_lo, dst_lo), partial)
    if not partial:
        _raise_uncovered(src_la, src_lo, _in_order(dst_la), full_lat, _in_order(dst_lo), full_lon)
    return sp.kron(a_lat, a_lon, format="csr")


def _raise_uncovered(
    src_la: LatAxis,
    src_lo: LonAxis,
    qlat: NDArray[np.float64],
    ok_lat: NDArray[np.bool_],
    qlon: NDArray[np.float64],
    ok_lon: NDArray[np.bool_],
) -> None:
    if not ok_lat.all():
        b = src_la.bounds()
        raise bi.partial_error("latitude", qlat, ~ok_lat, (b[0], b[-1]))
    if not ok_lon.all():
        b = src_lo.bounds()
        raise bi.partial_error("longitude", qlon, ~ok_lon, (b[0], b[-1]))


def _points(lat: ArrayLike, lon: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate point coordinates: equal-length 1-D finite arrays, |lat| <= 90."""
    try:
        plat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        plon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ObservationError(f"point lat/lon must be numeric degrees: {err}") from err
    if plat.ndim != 1 or plat.shape != plon.shape:
        raise ArgumentError(
            f"lat and lon must be 1-D arrays of equal length; got shapes {plat.shape}, {plon.shape}"
        )
    bad = ~np.isfinite(plat) | ~np.isfinite(plon) | (np.abs(plat) > 90.0)
    if bad.any():
        first = list(zip(plat[bad][:5].tolist(), plon[bad][:5].tolist()))
        raise ObservationError(
            f"{int(bad.sum())} point(s) have non-finite coordinates or |lat| > 90, first "
            f"(lat, lon): {first}; drop them before building the operator"
        )
    return plat, plon


def point_weights(
    grid_lat: ArrayLike,
    grid_lon: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    method: str = "bilinear",
    *,
    periodic: bool | None = None,
) -> sp.csr_matrix:
    """Sparse operator interpolating a gridded field at arbitrary points.

    ``values = P @ field.ravel()`` where ``field`` has shape (n_lat, n_lon) in the order of
    ``grid_lat`` and ``grid_lon`` as given.

    Parameters
    ----------
    grid_lat, grid_lon : array_like, shapes (n_lat,), (n_lon,)
        Grid centres (any order, either longitude convention), at least 2 of each.
    lat, lon : array_like, shape (n_points,)
        Point coordinates in degrees; longitudes in any convention.
    method : {"bilinear", "bicubic"}
        ``"bilinear"``: 4-point linear interpolation in latitude and longitude. ``"bicubic"``: Keys
        cubic convolution (a = -1/2, Catmull-Rom) on the 4 x 4 surrounding nodes in index space,
        exact for quadratics; beyond the outermost latitude (or regional longitude) node the ghost
        node follows Keys' boundary condition, and an axis with only 2 nodes falls back to linear.
    periodic : bool, optional
        Whether the grid wraps in longitude; ``None`` detects a global axis. On periodic grids
        points between the last and the first longitude (across the dateline or Greenwich) are
        interpolated across the seam.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_points, n_lat * n_lon)
        Each row sums to 1.

    Raises
    ------
    ObservationError
        Points with non-finite coordinates, ``|lat| > 90``, or outside the grid's cells (a regional
        grid, or latitudes beyond the outermost cell); the message gives how many and the first few.
    ArgumentError
        ``lat`` and ``lon`` of different lengths, or an unknown ``method``.
    CoordinateError
        Invalid grid coordinates.

    Notes
    -----
    A point counts as inside when it lies within the grid's cells (bounds half-way between
    centres). Points between the outermost centre and the edge of its cell, e.g. poleward of the
    last latitude of a global grid, take that centre's value (constant extrapolation).

    References
    ----------
    .. [1] Keys, R. (1981). Cubic convolution interpolation for digital image processing. IEEE
       Trans. Acoustics, Speech, and Signal Processing, 29(6), 1153-1160.
    """
    method = check_choice(method, POINT_METHODS, "method")
    la, lo = _source_axes(grid_lat, grid_lon, periodic, "grid")
    plat, plon = _points(lat, lon)
    qlon, ok_lon = bi.lon_frame(lo, plon)
    ok = bi.lat_inside(la, plat) & ok_lon
    if not ok.all():
        lb, ob = la.bounds(), lo.bounds()
        first = list(zip(plat[~ok][:5].tolist(), plon[~ok][:5].tolist()))
        raise ObservationError(
            f"{int((~ok).sum())} of {ok.size} points lie outside the grid (lat cells "
            f"[{lb[0]:g}, {lb[-1]:g}], lon cells [{ob[0]:g}, {ob[-1]:g}]), first (lat, lon): "
            f"{first}; drop them or use a grid that covers them"
        )
    lat_st = bi.stencil_1d(la, plat, method)
    lon_st = bi.stencil_1d(lo, qlon, method)
    return bi.face_split(lat_st, lon_st, lo.size, la.size * lo.size)


def cell_areas(lat: ArrayLike, lon: ArrayLike, *, periodic: bool | None = None) -> NDArray:
    """Areas of the cells of a rectilinear lat/lon grid on the unit sphere (steradians).

    Parameters
    ----------
    lat, lon : array_like, shapes (n_lat,), (n_lon,)
        Cell centres (any order or longitude convention), at least 2 of each; bounds as in
        :func:`grid_bounds` (latitudes clipped to the poles, longitudes across the seam on
        periodic grids).
    periodic : bool, optional
        Whether the longitudes wrap around the globe; ``None`` detects it.

    Returns
    -------
    numpy.ndarray, shape (n_lat, n_lon)
        ``(sin phi2 - sin phi1) * (lam2 - lam1)`` in radians; a global grid sums to 4 pi.

    References
    ----------
    .. [1] Jones, P. W. (1999). Monthly Weather Review, 127, 2204-2210 (cell areas, eq. 3).
    """
    la, lo = _source_axes(lat, lon, periodic, "grid")
    dsin = np.empty(la.size)
    dsin[la.order] = np.diff(np.sin(np.deg2rad(la.bounds())))
    dlon = np.empty(lo.size)
    dlon[lo.order] = np.deg2rad(np.diff(lo.bounds()))
    return np.outer(dsin, dlon)
