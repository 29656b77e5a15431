"""Find and normalise the coordinates of xarray objects (latitude, longitude, time) and their units.

Coordinates are found with cf_xarray (``standard_name``, ``units``, ``axis``); where the attributes
are missing (as in many zarr stores) cf_xarray's name-based guess is used and a warning says so.
Latitude may be ascending or descending, longitude in [-180, 180) or [0, 360).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import CoordinateError, UnitsError, XDiffSRWarning

__all__ = ["Grid", "convert_units", "find_coord", "find_time", "grid_of", "wrap_lon"]


def find_coord(obj: xr.Dataset | xr.DataArray, key: str, *, argname: str = "ds") -> xr.DataArray:
    """Return the coordinate that CF conventions identify as ``key`` ('latitude' or 'longitude').

    Raises
    ------
    CoordinateError
        If no coordinate carries CF attributes for ``key`` and none can be guessed from its name.
    """
    try:
        return obj.cf[key]
    except KeyError:
        pass
    guessed = obj.cf.guess_coord_axis(verbose=False)
    try:
        coord = guessed.cf[key]
    except KeyError:
        raise CoordinateError(
            f"no {key} coordinate found in {argname} (coordinates: {list(obj.coords)}). Add CF "
            f"attributes, e.g. ds['lat'].attrs.update(standard_name='{key}', "
            f"units='degrees_{'north' if key == 'latitude' else 'east'}')."
        ) from None
    warnings.warn(
        f"{argname}: the {key} coordinate {coord.name!r} has no CF attributes; it was identified "
        "from its name. Set its standard_name and units to silence this warning.",
        XDiffSRWarning,
        stacklevel=3,
    )
    return obj[coord.name]


def find_time(obj: xr.Dataset | xr.DataArray, *, argname: str = "ds") -> str | None:
    """Name of the datetime dimension of ``obj`` (CF 'T' axis or 'time'), or None if it has none."""
    candidates = []
    for key in ("T", "time"):
        try:
            candidates += list(obj.cf.coordinates.get(key, [])) + list(obj.cf.axes.get(key, []))
        except AttributeError:  # pragma: no cover
            pass
    candidates += [d for d in obj.dims if d in obj.coords]
    for name in dict.fromkeys(candidates):
        if name in obj.dims and np.issubdtype(obj[name].dtype, np.datetime64):
            return str(name)
    return None


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes mapped to [0, 360)."""
    return np.mod(np.asarray(lon, dtype=np.float64), 360.0)


@dataclass(frozen=True)
class Grid:
    """A regular latitude-longitude grid as stored (order and longitude convention preserved).

    Attributes
    ----------
    lat, lon : ndarray
        1-D coordinate values in degrees, in their stored order.
    lat_name, lon_name : str
        Names of the coordinates in the source object.
    """

    lat: np.ndarray
    lon: np.ndarray
    lat_name: str = "lat"
    lon_name: str = "lon"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    @property
    def lat_order(self) -> str:
        return "ascending" if self.lat.size < 2 or self.lat[1] > self.lat[0] else "descending"

    @property
    def lon_convention(self) -> str:
        return "[-180, 180)" if (self.lon < 0).any() else "[0, 360)"

    @property
    def is_global(self) -> bool:
        d = np.diff(np.sort(wrap_lon(self.lon)))
        return self.lon.size > 2 and np.isclose(d.mean() * self.lon.size, 360.0, rtol=1e-3)

    def permutation_to(self, other: Grid) -> tuple[np.ndarray, np.ndarray] | None:
        """Indices ``(ilat, ilon)`` such that ``field[ilat][:, ilon]`` on self is on ``other``.

        None if ``other`` is not the same set of points (up to order and longitude convention).
        """
        if other.lat.size != self.lat.size or other.lon.size != self.lon.size:
            return None
        ilat = _match(self.lat, other.lat)
        ilon = _match(wrap_lon(self.lon), wrap_lon(other.lon), period=360.0)
        if ilat is None or ilon is None:
            return None
        return ilat, ilon

    def describe(self) -> dict[str, str]:
        """Attributes stating the orientation, for provenance."""
        return {"latitude_order": self.lat_order, "longitude_convention": self.lon_convention}


def _match(src: np.ndarray, dst: np.ndarray, period: float | None = None) -> np.ndarray | None:
    order = np.argsort(src)
    pos = np.clip(np.searchsorted(src[order], dst), 0, src.size - 1)
    best = order[pos]
    alt = order[np.clip(pos - 1, 0, src.size - 1)]
    d_best, d_alt = np.abs(src[best] - dst), np.abs(src[alt] - dst)
    if period is not None:
        d_best, d_alt = np.minimum(d_best, period - d_best), np.minimum(d_alt, period - d_alt)
    idx = np.where(d_alt < d_best, alt, best)
    err = np.minimum(d_best, d_alt)
    return idx if np.all(err < 1e-6) and np.unique(idx).size == idx.size else None


def grid_of(obj: xr.Dataset | xr.DataArray, *, argname: str = "ds") -> Grid:
    """The regular lat/lon :class:`Grid` of ``obj``.

    Raises
    ------
    CoordinateError
        If latitude or longitude is missing, not 1-D, or not regularly spaced.
    """
    lat, lon = (
        find_coord(obj, "latitude", argname=argname),
        find_coord(obj, "longitude", argname=argname),
    )
    for c, key in ((lat, "latitude"), (lon, "longitude")):
        if c.ndim != 1:
            raise CoordinateError(
                f"{argname}: {key} {c.name!r} has dims {c.dims}; only 1-D regular lat/lon grids "
                "are supported. Regrid curvilinear data first (e.g. with xESMF)."
            )
        v = np.asarray(c.values, dtype=np.float64)
        if v.size > 2:
            d = np.diff(v if key == "latitude" else np.unwrap(v, period=360.0))
            if not np.allclose(d, d[0], rtol=1e-3, atol=1e-6):
                raise CoordinateError(
                    f"{argname}: {key} {c.name!r} is not regularly spaced (steps "
                    f"from {d.min():g} to "
                    f"{d.max():g} degrees). Interpolate to a regular grid first."
                )
    return Grid(
        np.asarray(lat.values, np.float64),
        np.asarray(lon.values, np.float64),
        str(lat.name),
        str(lon.name),
    )


# ---------------------------------------------------------------------------------------------
# units

_ALIASES = {
    "k": "K",
    "kelvin": "K",
    "degk": "K",
    "deg_k": "K",
    "degc": "degC",
    "deg_c": "degC",
    "celsius": "degC",
    "degree_celsius": "degC",
    "c": "degC",
    "degrees_celsius": "degC",
    "°c": "degC",
    "pa": "Pa",
    "hpa": "hPa",
    "mbar": "hPa",
    "mb": "hPa",
    "millibar": "hPa",
    "kpa": "kPa",
    "m/s": "m s-1",
    "m s-1": "m s-1",
    "m s**-1": "m s-1",
    "m.s-1": "m s-1",
    "m s^-1": "m s-1",
    "ms-1": "m s-1",
    "kt": "knot",
    "knots": "knot",
    "knot": "knot",
    "m2 s-2": "m2 s-2",
    "m**2 s**-2": "m2 s-2",
    "m^2/s^2": "m2 s-2",
    "m2/s2": "m2 s-2",
    "m^2 s^-2": "m2 s-2",
    "m2.s-2": "m2 s-2",
    "m": "m",
    "gpm": "gpm",
    "1": "1",
    "%": "%",
    "percent": "%",
}
# (dimension, scale, offset) with value_SI = value * scale + offset
_TO_SI = {
    "K": ("temperature", 1.0, 0.0),
    "degC": ("temperature", 1.0, 273.15),
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 100.0, 0.0),
    "kPa": ("pressure", 1000.0, 0.0),
    "m s-1": ("speed", 1.0, 0.0),
    "knot": ("speed", 0.514444, 0.0),
    "m2 s-2": ("geopotential", 1.0, 0.0),
    "m": ("length", 1.0, 0.0),
    "gpm": ("length", 1.0, 0.0),
    "1": ("dimensionless", 1.0, 0.0),
    "%": ("dimensionless", 0.01, 0.0),
}


def canonical_units(units: str | None) -> str | None:
    """Canonical spelling of a CF units string, or None when unknown."""
    if units is None:
        return None
    key = " ".join(str(units).strip().lower().split())
    return _ALIASES.get(key)


def convert_units(values, from_units: str | None, to_units: str | None, *, name: str = "data"):
    """Convert ``values`` (array or DataArray) between CF units (K/degC, Pa/hPa, m/s/knot, ...).

    Identical strings pass through unchanged. Unknown or incompatible units raise
    :class:`~xdiffsr.errors.UnitsError` naming the variable.
    """
    if from_units == to_units or to_units is None:
        return values
    src, dst = canonical_units(from_units), canonical_units(to_units)
    if from_units is None:
        raise UnitsError(
            f"{name} has no 'units' attribute but the model expects {to_units!r}; set "
            f"{name}.attrs['units'] (e.g. '{to_units}')."
        )
    if src is None or dst is None or _TO_SI[src][0] != _TO_SI[dst][0]:
        raise UnitsError(
            f"cannot convert {name} from units {from_units!r} to {to_units!r}; convert it "
            "yourself or fix the 'units' attribute (known: K, degC, Pa, hPa, m s-1, knot, m2 s-2)."
        )
    if src == dst:
        return values
    _, a, b = _TO_SI[src]
    _, c, d = _TO_SI[dst]
    return (values * a + b - d) / c


def to_datetime64(values) -> np.ndarray:
    """Times as datetime64[ns] (naive UTC)."""
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(values).ravel()))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.values.astype("datetime64[ns]")
