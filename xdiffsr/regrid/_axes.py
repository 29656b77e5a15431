"""Validated 1-D latitude and longitude axes in any order or longitude convention.

Every public function accepts coordinates in the order they come in (latitude ascending or
descending, longitude in [0, 360) or [-180, 180), possibly starting anywhere on the circle). An axis
object keeps the sorted values together with ``order``, the position of each sorted value in the
array as given, so that weights built on sorted axes are scattered back onto the caller's indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from xdiffsr.errors import CoordinateError

#: Relative tolerance (in units of the grid spacing) for "on the boundary" comparisons.
EDGE_TOL = 1e-9


def as_coord(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Return ``values`` as a finite 1-D float64 array, or raise :class:`CoordinateError`."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise CoordinateError(f"{name} must be numeric degrees; got {values!r:.80}") from err
    if arr.ndim != 1:
        raise CoordinateError(
            f"{name} must be a 1-D coordinate of a rectilinear lat/lon grid; got shape "
            f"{arr.shape}. "
            "Curvilinear (2-D) grids are not supported: interpolate onto a regular grid first."
        )
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise CoordinateError(f"{name} must be non-empty and finite; got {arr[:6]!r}")
    return arr


def grid_bounds(coord: ArrayLike, *, latitude: bool = False) -> NDArray[np.float64]:
    """Cell boundaries of a strictly monotonic 1-D coordinate.

    Interior boundaries lie half-way between neighbouring centres; the two outer boundaries are
    extrapolated by half the outermost spacing, as ``cf_xarray``'s ``add_bounds`` (used by xESMF)
    does. With ``latitude=True`` the boundaries are clipped to [-90, 90], and an outer boundary
    less than half a spacing from a pole closes at the pole on irregular (Gaussian) grids.

    Parameters
    ----------
    coord : array_like, shape (n,)
        Cell centres in degrees, strictly increasing or strictly decreasing, ``n >= 2``.
    latitude : bool, optional
        Clip the boundaries to the poles.

    Returns
    -------
    numpy.ndarray, shape (n + 1,)
        Boundaries in the same direction as ``coord``.

    Raises
    ------
    CoordinateError
        If ``coord`` is not 1-D, has fewer than two values or is not strictly monotonic.

    References
    ----------
    .. [1] CF Conventions 1.11, section 7.1 "Cell Boundaries".
    """
    c = as_coord(coord, "coord")
    if c.size < 2:
        raise CoordinateError(f"coord needs at least 2 values to infer cell bounds; got {c!r}")
    d = np.diff(c)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise CoordinateError(
            f"coord must be strictly monotonic to infer cell bounds; got {c!r:.120}"
        )
    mid = 0.5 * (c[1:] + c[:-1])
    b = np.concatenate([[c[0] - 0.5 * d[0]], mid, [c[-1] + 0.5 * d[-1]]])
    if not latitude:
        return b
    # irregular (Gaussian) latitudes whose outer cell stops short of the pole by less than half a
    # spacing (T42's outermost centre is 87.86 deg) close at the pole, as CDO does; regular grids
    # keep the half-spacing extrapolation (a cropped grid must not grow)
    irregular = not np.allclose(d, d[0], rtol=1e-6, atol=1e-9)
    for end, step in ((0, d[0]), (-1, d[-1])) if irregular else ():
        if 0 < 90.0 - abs(b[end]) < 0.5 * abs(step):
            b[end] = np.sign(b[end]) * 90.0
    return np.clip(b, -90.0, 90.0)


@dataclass(frozen=True)
class LatAxis:
    """Latitudes sorted ascending; ``order[k]`` is the input position of ``values[k]``."""

    values: NDArray[np.float64]
    order: NDArray[np.intp]

    @property
    def size(self) -> int:
        return self.values.size

    def bounds(self) -> NDArray[np.float64]:
        """Ascending cell boundaries, shape (n + 1,), clipped to the poles."""
        return grid_bounds(self.values, latitude=True)


@dataclass(frozen=True)
class LonAxis:
    """Longitudes unwrapped to increase from ``values[0]`` in [0, 360), sorted around the circle.

    ``periodic`` says whether the axis closes around the globe, i.e. whether the gap from the last
    value back to the first (plus 360) is an ordinary grid step.
    """

    values: NDArray[np.float64]
    order: NDArray[np.intp]
    periodic: bool

    @property
    def size(self) -> int:
        return self.values.size

    def bounds(self) -> NDArray[np.float64]:
        """Increasing cell boundaries, shape (n + 1,); across the seam for periodic axes."""
        v = self.values
        if v.size < 2:
            raise CoordinateError(
                f"a longitude axis needs at least 2 values for cell bounds; got {v}"
            )
        b = grid_bounds(v)
        if self.periodic:  # the edge cell boundary lies half-way across the seam
            b[0] = 0.5 * (v[0] + v[-1] - 360.0)
            b[-1] = b[0] + 360.0
        return b

    def to_frame(self, lon: NDArray[np.float64], ref: float) -> NDArray[np.float64]:
        """Map longitudes to the 360-degree window starting at ``ref``."""
        return ref + np.mod(lon - ref, 360.0)

    def nearest_frame(self, lon: NDArray[np.float64]) -> NDArray[np.float64]:
        """Shift longitudes by multiples of 360 to lie closest to the axis' centre."""
        centre = 0.5 * (self.values[0] + self.values[-1])
        return centre + np.mod(lon - centre + 180.0, 360.0) - 180.0


def lat_axis(lat: ArrayLike, name: str = "lat") -> LatAxis:
    """Validate latitudes (any order, unique, within [-90, 90]) and sort them."""
    v = as_coord(lat, name)
    if np.any(np.abs(v) > 90.0):
        bad = v[np.abs(v) > 90.0][:5]
        raise CoordinateError(f"{name} must lie in [-90, 90] degrees_north; got {bad}")
    order = np.argsort(v, kind="stable")
    s = v[order]
    if np.any(np.diff(s) <= 0):
        dup = s[1:][np.diff(s) <= 0][:5]
        raise CoordinateError(f"{name} has repeated values {dup}; each latitude must appear once")
    return LatAxis(s, order)


def lon_axis(lon: ArrayLike, name: str = "lon", periodic: bool | None = None) -> LonAxis:
    """Validate longitudes (any convention and order) and sort them around the circle.

    The circle is cut at its widest gap between neighbouring longitudes (at 0/360 on ties), so a
    regional grid crossing the dateline or Greenwich stays contiguous. ``periodic=None`` calls the
    axis global when that widest gap is less than 1.5 times the median step.
    """
    v = as_coord(lon, name)
    m = np.mod(v, 360.0)
    order = np.argsort(m, kind="stable")
    s = m[order]
    steps = np.diff(s)
    if np.any(steps <= 1e-9):
        dup = v[order[1:][steps <= 1e-9]][:5]
        raise CoordinateError(
            f"{name} repeats longitudes modulo 360 (e.g. {dup}); drop the duplicate column "
            "(a grid must not contain both 0 and 360, or -180 and 180)"
        )
    wrap = s[0] + 360.0 - s[-1]
    cut = s.size - 1  # index after which the circle is cut
    if s.size > 1 and steps.max() > wrap * (1 + 1e-9):
        cut = int(np.argmax(steps))
        order = np.roll(order, -(cut + 1))
        s = np.concatenate([s[cut + 1 :], s[: cut + 1] + 360.0])
    gaps = np.diff(np.concatenate([s, [s[0] + 360.0]]))
    if periodic is None:
        periodic = s.size > 2 and gaps[-1] < 1.5 * float(np.median(gaps[:-1]))
    return LonAxis(s, order, bool(periodic))
