"""The package's one coordinate layer: latitude, longitude and time of xarray objects, grids.

Coordinates are found with cf_xarray (``standard_name``, ``units``, ``axis``); where the attributes
are missing (as in many zarr stores) the names ``lat``/``latitude``/``lon``/``longitude`` are used
and a warning says so (:func:`find_latlon`, used by regridding, observations, priors, training,
metrics and the OSSE). Latitude may be ascending or descending, longitude in [-180, 180) or
[0, 360). :func:`cell_centre_grid` defines the regular grids (the paper's 16 x 32 coarse grid
among them). Units live in :mod:`xdiffsr.units`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError, XDiffSRWarning

__all__ = [
    "REAL_CALENDARS",
    "Grid",
    "cell_centre_grid",
    "find_latlon",
    "find_time",
    "grid_of",
    "has_latlon",
    "latlon_dataset",
    "to_datetime64",
    "wrap_lon",
]


#: CF units of latitude / longitude (CF Conventions 1.11, sections 4.1 and 4.2).
_UNITS = {
    "latitude": {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"},
    "longitude": {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"},
}
_NAMES = {"latitude": ("lat", "latitude", "nav_lat"), "longitude": ("lon", "longitude", "nav_lon")}


def _variables(obj: xr.Dataset | xr.DataArray) -> dict:
    out = dict(obj.coords)
    if isinstance(obj, xr.Dataset):
        out.update(obj.data_vars)
    return out


def _candidates(obj: xr.Dataset | xr.DataArray, key: str) -> tuple[list[xr.DataArray], bool]:
    """Coordinates that CF attributes (standard_name, units, axis) call ``key``; failing that,
    those whose name says so. The flag is True when the name was all there was to go on."""
    try:
        found = obj.cf[key]
        if isinstance(found, xr.DataArray):
            return [found], False
    except (KeyError, ValueError):
        pass
    variables = _variables(obj)
    by_attr = [
        v
        for v in variables.values()
        if v.attrs.get("standard_name") == key
        or str(v.attrs.get("units", "")).lower() in _UNITS[key]
    ]
    if by_attr:
        return by_attr, False
    return [v for n, v in variables.items() if str(n).lower() in _NAMES[key]], True


def _from_mapping(obj: Mapping, argname: str) -> xr.Dataset:
    try:
        return xr.Dataset(
            coords={
                "lat": ("lat", np.asarray(obj["lat"]), {"standard_name": "latitude"}),
                "lon": ("lon", np.asarray(obj["lon"]), {"standard_name": "longitude"}),
            }
        )
    except (KeyError, ValueError) as err:
        raise CoordinateError(
            f"{argname} as a dict needs 1-D 'lat' and 'lon' arrays: {err}"
        ) from err


def find_latlon(obj: Any, argname: str = "ds") -> tuple[xr.DataArray, xr.DataArray]:
    """The 1-D latitude and longitude coordinates of ``obj``: the package's one coordinate finder.

    Coordinates are identified by CF attributes through cf_xarray (``standard_name``, ``units``,
    ``axis``), then by CF attributes on any variable; only when no attribute says which is which
    are the names ``lat``/``latitude``/``lon``/``longitude`` used, with an
    :class:`~xdiffsr.errors.XDiffSRWarning` saying so.

    Parameters
    ----------
    obj : Dataset, DataArray or mapping
        An xarray object, or a ``{"lat": array, "lon": array}`` mapping of 1-D arrays.
    argname : str
        Name of the argument, for messages.

    Returns
    -------
    lat, lon : DataArray
        1-D coordinates along two different dimensions of ``obj``.

    Raises
    ------
    CoordinateError
        Either is missing, ambiguous, not 1-D, or both share a dimension (curvilinear grids).
    ArgumentError
        ``obj`` is not an xarray object or mapping.
    """
    if isinstance(obj, Mapping) and not isinstance(obj, xr.Dataset):
        obj = _from_mapping(obj, argname)
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise ArgumentError(
            f"{argname} must be an xarray Dataset or DataArray; got {type(obj).__name__}"
        )
    out = []
    for key in ("latitude", "longitude"):
        found, guessed = _candidates(obj, key)
        found = [c for c in found if c.ndim == 1 and c.dims[0] in obj.dims]
        index = [c for c in found if c.name in obj.dims]  # prefer dimension coordinates
        found = index if len(found) > 1 and len(index) == 1 else found
        if len(found) != 1:
            raise CoordinateError(
                f"{argname} has {'no' if not found else 'several'} 1-D {key} coordinate(s) "
                f"({[c.name for c in found]}; coordinates: {list(obj.coords)}); give it one 1-D "
                f"coordinate with standard_name='{key}' or units='{sorted(_UNITS[key])[1]}', "
                f"e.g. ds['lat'].attrs.update(standard_name='{key}')"
            )
        if guessed:
            warnings.warn(
                f"{argname}: the {key} coordinate {found[0].name!r} has no CF attributes; it was "
                "identified from its name. Set its standard_name and units to silence this "
                "warning.",
                XDiffSRWarning,
                stacklevel=3,
            )
        out.append(obj[found[0].name] if found[0].name in obj.coords else found[0])
    if out[0].dims == out[1].dims:
        raise CoordinateError(
            f"{argname}: latitude and longitude share dimension {out[0].dims}; only rectilinear "
            "grids with separate lat and lon dimensions are supported. Regrid curvilinear data "
            "first (e.g. with xESMF)."
        )
    return out[0], out[1]


def has_latlon(obj: xr.Dataset | xr.DataArray) -> bool:
    """True if ``obj`` has any coordinate or variable that CF attributes or its name call
    latitude or longitude (usable as a grid or not: curvilinear ones count)."""
    for key in ("latitude", "longitude"):
        for name, v in _variables(obj).items():
            if (
                v.attrs.get("standard_name") == key
                or str(v.attrs.get("units", "")).lower() in _UNITS[key]
                or str(name).lower() in _NAMES[key]
            ):
                return True
    return False


def cell_centre_grid(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
    """Equiangular global grid of cell centres: latitudes ascending (no poles), longitudes from 0.

    The one definition of the package's regular grids: ``(64, 128)`` is the 2.8125-degree
    WeatherBench grid of the default model, ``(32, 64)`` the 5.625-degree one (centres at
    +-87.1875), ``(16, 32)`` the 11.25-degree grid of the paper's low-resolution data (latitudes
    -84.375 ... 84.375, longitudes 0, 11.25, ..., 348.75).
    """
    dlat, dlon = 180.0 / nlat, 360.0 / nlon
    return -90 + dlat * (np.arange(nlat) + 0.5), dlon * np.arange(nlon)


def latlon_dataset(lat: np.ndarray, lon: np.ndarray) -> xr.Dataset:
    """An empty Dataset carrying ``lat``/``lon`` coordinates with CF attributes."""
    return xr.Dataset(
        coords={
            "lat": ("lat", np.asarray(lat, float), _LAT_ATTRS),
            "lon": ("lon", np.asarray(lon, float), _LON_ATTRS),
        }
    )


_LAT_ATTRS = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}
_LON_ATTRS = {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}


def _is_cftime(values) -> bool:
    v = np.asarray(values)
    return v.dtype == object and v.size > 0 and hasattr(v.flat[0], "calendar")


def find_time(obj: xr.Dataset | xr.DataArray, *, argname: str = "ds") -> str | None:
    """Name of the time dimension of ``obj`` (CF 'T' axis or 'time'), or None if it has none.

    datetime64 times and cftime dates (as decoded from climate model files with ``noleap``,
    ``360_day`` ... calendars) both count; :func:`to_datetime64` converts the latter where the
    calendar maps to real dates.
    """
    candidates = []
    for key in ("T", "time"):
        try:
            candidates += list(obj.cf.coordinates.get(key, [])) + list(obj.cf.axes.get(key, []))
        except AttributeError:  # pragma: no cover
            pass
    candidates += [d for d in obj.dims if d in obj.coords]
    for name in dict.fromkeys(candidates):
        if name in obj.dims and (
            np.issubdtype(obj[name].dtype, np.datetime64) or _is_cftime(obj[name].values)
        ):
            return str(name)
    return None


#: cftime calendars whose dates are real (proleptic Gregorian) dates.
REAL_CALENDARS = ("standard", "gregorian", "proleptic_gregorian", "noleap", "365_day",
                  "all_leap", "366_day")


def _cftime_to_datetime64(values: np.ndarray) -> np.ndarray:
    flat = values.ravel()
    calendar = str(getattr(flat[0], "calendar", "") or "standard")
    if calendar not in REAL_CALENDARS:
        raise CoordinateError(
            f"times in the {calendar!r} calendar cannot be used: only calendars whose dates are "
            f"real dates are supported ({', '.join(REAL_CALENDARS)}); a {calendar!r} date such "
            "as 30 February has no place in the observations' and the model's real calendar. "
            "Convert the dates yourself (e.g. ds.convert_calendar('noleap', align_on='year')) "
            "and choose what the days mean."
        )
    out = np.empty(flat.size, dtype="datetime64[ns]")
    for i, d in enumerate(flat):
        try:
            out[i] = pd.Timestamp(d.year, d.month, d.day, d.hour, d.minute, d.second,
                                  d.microsecond).to_datetime64()
        except ValueError as err:
            raise CoordinateError(
                f"the {calendar!r} date {d} does not exist in the real calendar ({err}); drop "
                "it, or convert the dates (ds.convert_calendar('standard', align_on='date'))."
            ) from err
    return out


def to_datetime64(values) -> np.ndarray:
    """Times as datetime64[ns] (naive UTC); cftime dates of the calendars in
    :data:`REAL_CALENDARS` are converted, others refused with :class:`CoordinateError`."""
    arr = np.asarray(values)
    if _is_cftime(arr):
        return _cftime_to_datetime64(arr)
    idx = pd.DatetimeIndex(pd.to_datetime(arr.ravel()))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.values.astype("datetime64[ns]")


def wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitudes mapped to [0, 360)."""
    return np.mod(np.asarray(lon, dtype=np.float64), 360.0)


@dataclass(frozen=True)
class Grid:
    """A latitude-longitude grid as stored (order and longitude convention preserved); latitudes
    may be irregular (Gaussian grids), longitudes are regular.

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
    """The lat/lon :class:`Grid` of ``obj``: 1-D monotonic latitudes (regular or not, e.g.
    Gaussian), regularly spaced 1-D longitudes.

    Raises
    ------
    CoordinateError
        If latitude or longitude is missing or not 1-D, latitudes are not monotonic or
        longitudes not regularly spaced.
    """
    lat, lon = find_latlon(obj, argname)
    for c, key in ((lat, "latitude"), (lon, "longitude")):
        if c.ndim != 1:
            raise CoordinateError(
                f"{argname}: {key} {c.name!r} has dims {c.dims}; only 1-D regular lat/lon grids "
                "are supported. Regrid curvilinear data first (e.g. with xESMF)."
            )
        v = np.asarray(c.values, dtype=np.float64)
        if key == "latitude" and v.size > 1:
            d = np.diff(v)
            if not (np.all(d > 0) or np.all(d < 0)):
                raise CoordinateError(
                    f"{argname}: latitude {c.name!r} is not strictly monotonic; sort it, e.g. "
                    f"{argname}.sortby({c.name!r})."
                )
        elif v.size > 2:
            d = np.diff(np.unwrap(v, period=360.0))
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
