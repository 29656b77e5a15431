"""One lexicon of variable names: model channels and the ecosystem's layouts.

The model's channels are flat (time, lat, lon) fields named ``t850``, ``u500``, ``z500``,
``q700``, ``sp``, ``msl``, ``t2m``, ``u10``, ``v10``. Data arrive in other layouts:

* WeatherBench 2 / ARCO ERA5: ``temperature(time, level, latitude, longitude)`` with ``level``
  in hPa (or Pa), surface fields ``2m_temperature``, ``10m_u_component_of_wind``, ...;
* cfgrib: short names ``t``, ``u``, ``z`` with an ``isobaricInhPa`` dimension, ``t2m``, ``u10``;
* earth2studio: flat names ``t850``, ``u10m``, ``v10m``, ``t2m``, ``msl``, ``sp``;
* CF: ``standard_name`` (``air_temperature``, ``eastward_wind``, ``surface_air_pressure``, ...)
  with a vertical coordinate recognised by its units (hPa, Pa) or ``axis='Z'``.

:func:`to_model_layout` turns any of these into the flat model layout for a list of model
variables; :func:`parse_channel` and :func:`channel_name` convert between a channel and its
(quantity, level) pair.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.grid import find_latlon, find_time
from xdiffsr.units import canonical_units, convert_units

__all__ = [
    "LEVEL_DIMS",
    "QUANTITIES",
    "SHORT_NAMES",
    "Quantity",
    "channel_name",
    "check_flat",
    "extra_dims",
    "level_dim",
    "level_values_hpa",
    "parse_channel",
    "to_model_layout",
]


@dataclass(frozen=True)
class Quantity:
    """One physical quantity under its names in each layout.

    Attributes
    ----------
    short : str
        Model / cfgrib / ECMWF short name (``t``, ``sp``, ``u10``).
    long : str
        WeatherBench 2 / ARCO ERA5 name (``temperature``, ``10m_u_component_of_wind``).
    standard_name : str
        CF standard name.
    levels : bool
        True for pressure-level quantities (``t850``), False for single-level fields.
    earth2studio : str
        earth2studio name of a single-level field (``u10m``); pressure-level fields are
        ``short + level`` there too.
    """

    short: str
    long: str
    standard_name: str
    levels: bool
    earth2studio: str = ""


QUANTITIES: dict[str, Quantity] = {
    q.short: q
    for q in (
        Quantity("t", "temperature", "air_temperature", True),
        Quantity("u", "u_component_of_wind", "eastward_wind", True),
        Quantity("v", "v_component_of_wind", "northward_wind", True),
        Quantity("z", "geopotential", "geopotential", True),
        Quantity("q", "specific_humidity", "specific_humidity", True),
        Quantity("r", "relative_humidity", "relative_humidity", True),
        Quantity("w", "vertical_velocity", "lagrangian_tendency_of_air_pressure", True),
        Quantity("gh", "geopotential_height", "geopotential_height", True),
        Quantity("sp", "surface_pressure", "surface_air_pressure", False, "sp"),
        Quantity("msl", "mean_sea_level_pressure", "air_pressure_at_mean_sea_level", False, "msl"),
        Quantity("t2m", "2m_temperature", "air_temperature", False, "t2m"),
        Quantity("u10", "10m_u_component_of_wind", "eastward_wind", False, "u10m"),
        Quantity("v10", "10m_v_component_of_wind", "northward_wind", False, "v10m"),
        Quantity("tcwv", "total_column_water_vapour", "atmosphere_mass_content_of_water_vapor",
                 False, "tcwv"),
    )
}
#: WeatherBench 2 long name -> short name (the training data's channel rule).
SHORT_NAMES: dict[str, str] = {q.long: q.short for q in QUANTITIES.values()} | {
    "potential_vorticity": "pv", "divergence": "d", "vorticity": "vo",
}
_ALIASES = {q.earth2studio: q.short for q in QUANTITIES.values() if q.earth2studio}
#: Names of vertical (pressure-level) dimensions in the layouts above.
LEVEL_DIMS = ("level", "pressure_level", "plev", "isobaricInhPa", "lev", "pressure", "air_pressure")
_CHANNEL = re.compile(r"^([a-z]+?)(\d+(?:\.\d+)?)$")


def parse_channel(name: str) -> tuple[str, float | None]:
    """``(quantity short name, level in hPa or None)`` of a model channel name.

    ``"t850" -> ("t", 850.0)``, ``"u10m" -> ("u10", None)``, ``"t2m" -> ("t2m", None)``;
    names outside the lexicon come back as ``(name, None)``.
    """
    name = str(name)
    if name in QUANTITIES and not QUANTITIES[name].levels:
        return name, None
    if name in _ALIASES:
        return _ALIASES[name], None
    m = _CHANNEL.match(name)
    if m and m.group(1) in QUANTITIES and QUANTITIES[m.group(1)].levels:
        return m.group(1), float(m.group(2))
    return name, None


def channel_name(variable: str, level: float | None = None) -> str:
    """Flat channel name of ``variable`` (any layout's name) at pressure ``level`` (hPa).

    ``("temperature", 850) -> "t850"``, ``("geopotential", 500) -> "z500"``,
    ``("surface_pressure", None) -> "sp"``, ``("foo", 925.5) -> "foo925.5"``.
    """
    short = SHORT_NAMES.get(variable, variable)
    return short if level is None else f"{short}{float(level):g}"


def _is_vertical(coord: xr.DataArray) -> bool:
    units = canonical_units(coord.attrs.get("units"))
    return (
        str(coord.name) in LEVEL_DIMS
        or coord.attrs.get("axis") == "Z"
        or coord.attrs.get("positive") in ("up", "down")
        or coord.attrs.get("standard_name") == "air_pressure"
        or units in ("Pa", "hPa", "kPa")
    )


def level_dim(da: xr.DataArray, space: Iterable[Hashable]) -> str | None:
    """The vertical dimension of ``da`` among those not in ``space``, or None."""
    extra = [d for d in da.dims if d not in set(space)]
    found = [d for d in extra if _is_vertical(da[d] if d in da.coords else xr.DataArray(
        [], name=d))]
    return str(found[0]) if len(found) == 1 else None


def level_values_hpa(coord: xr.DataArray) -> np.ndarray:
    """Pressure levels of a vertical coordinate in hPa (its units, else Pa when > 1100)."""
    v = np.asarray(coord.values, dtype=np.float64)
    units = canonical_units(coord.attrs.get("units"))
    if units in ("Pa", "hPa", "kPa"):
        return np.asarray(convert_units(v, units, "hPa", name=str(coord.name)))
    return v / 100.0 if v.size and np.nanmax(v) > 1100 else v


def _candidates(ds: xr.Dataset, quantity: Quantity, space: set, want_level: bool) -> list[str]:
    """Variables of ``ds`` that hold ``quantity``: by name (any layout), then standard_name."""
    names = [quantity.long, quantity.short] + ([quantity.earth2studio] if quantity.earth2studio
                                              else [])
    out = [n for n in names if n in ds.data_vars
           and (level_dim(ds[n], space) is not None) == want_level]
    if out:
        return out[:1]
    if not want_level and quantity.short in ("t2m", "u10", "v10"):
        return []  # a surface air_temperature is not told apart from others by standard_name
    return [str(n) for n, v in ds.data_vars.items()
            if v.attrs.get("standard_name") == quantity.standard_name
            and (level_dim(v, space) is not None) == want_level]


def _select_level(da: xr.DataArray, level: float, space: set, channel: str) -> xr.DataArray:
    dim = level_dim(da, space)
    hpa = (level_values_hpa(da[dim]) if dim in da.coords
           else np.arange(da.sizes[dim], dtype=float))
    hit = np.flatnonzero(np.isclose(hpa, level, rtol=0, atol=1e-6))
    if hit.size != 1:
        raise ArgumentError(
            f"variable {channel!r}: level {level:g} hPa is not in {da.name!r}.{dim} (levels in "
            f"hPa: {hpa.tolist()}); request one of those levels or give data that has it."
        )
    return da.isel({dim: int(hit[0])}, drop=True)


def _find(ds: xr.Dataset, channel: str, space: set) -> xr.DataArray | None:
    """The (time, lat, lon) field of ``channel`` in ``ds``, or None when ``ds`` lacks it."""
    if channel in ds.data_vars and level_dim(ds[channel], space) is None:
        return ds[channel]
    short, level = parse_channel(channel)
    quantity = QUANTITIES.get(short)
    if quantity is None:
        return None
    if level is None:
        flat = [n for n in (quantity.short, quantity.earth2studio, quantity.long)
                if n and n in ds.data_vars and level_dim(ds[n], space) is None]
        found = flat or _candidates(ds, quantity, space, want_level=False)
        return ds[found[0]] if found else None
    found = _candidates(ds, quantity, space, want_level=True)
    if not found:
        return None
    da = ds[found[0]]
    hpa = level_values_hpa(da[level_dim(da, space)])
    if not np.isclose(hpa, level, rtol=0, atol=1e-6).any():
        return None
    return _select_level(da, level, space, channel)


def _check_extra(da: xr.DataArray, space: set, channel: str, argname: str) -> None:
    extra = [str(d) for d in da.dims if d not in space]
    if extra:
        d = extra[0]
        raise CoordinateError(
            f"{argname}: variable {channel!r} (from {da.name!r}) has dimension {d!r} (size "
            f"{da.sizes[d]}) besides time, latitude and longitude; select one value first, e.g. "
            f"{argname}.sel({d}=...) or {argname}.isel({d}=0) (an ensemble member: .sel(number=0))"
            f", or average it, e.g. .mean({d!r})."
        )


def to_model_layout(
    ds: xr.Dataset,
    variables: Sequence[str],
    *,
    argname: str = "ds",
    missing: str = "raise",
    keep: Sequence[str] = (),
) -> xr.Dataset:
    """The flat model layout of ``ds``: one (time, lat, lon) variable per model channel.

    Parameters
    ----------
    ds : xarray.Dataset
        Any layout of the lexicon: flat (``t850``), WeatherBench 2 (``temperature`` with
        ``level`` in hPa or Pa), cfgrib (``t`` with ``isobaricInhPa``), earth2studio (``u10m``)
        or CF (``standard_name`` with a vertical coordinate found by its units or axis).
    variables : sequence of str
        Model channel names, e.g. ``["t850", "z500", "t2m"]``.
    argname : str
        Name of the argument, for messages.
    missing : {"raise", "skip"}
        What to do with a channel ``ds`` does not hold.
    keep : sequence of str
        Further dimensions to keep besides time, latitude and longitude (e.g. the sample
        dimension of a fit).

    Returns
    -------
    xarray.Dataset
        The requested channels (those found, with ``missing="skip"``), named as requested, with
        the caller's latitude/longitude/time coordinates and dimension names, lat/lon last; each
        keeps its source's attributes plus ``source_variable``.

    Raises
    ------
    ArgumentError
        A channel that ``ds`` lacks (with ``missing="raise"``), or a level it does not have.
    CoordinateError
        A dimension other than time, latitude, longitude and the selected level (e.g.
        ``number``), naming it and the fix (``.sel(number=0)``).
    """
    if not isinstance(ds, xr.Dataset):
        raise ArgumentError(f"{argname} must be an xarray Dataset, got {type(ds).__name__}.")
    lat, lon = find_latlon(ds, argname)
    tname = find_time(ds, argname=argname)
    space = {lat.dims[0], lon.dims[0], *keep} | ({tname} if tname else set())
    out = {}
    for channel in map(str, variables):
        da = _find(ds, channel, space)
        if da is None:
            if missing == "skip":
                continue
            raise ArgumentError(
                f"{argname} has no variable for the model channel {channel!r} (variables: "
                f"{sorted(map(str, ds.data_vars))}); give it under the model name or a name of "
                "the lexicon (xdiffsr.names.QUANTITIES: WeatherBench 2, cfgrib, earth2studio, CF "
                "standard_name) with its level."
            )
        _check_extra(da, space, channel, argname)
        order = [d for d in da.dims if d not in (lat.dims[0], lon.dims[0])]
        da = da.transpose(*order, lat.dims[0], lon.dims[0])
        out[channel] = da.assign_attrs({**da.attrs, "source_variable": str(da.name)}).rename(
            channel)
    return xr.Dataset(out, attrs=ds.attrs)


def extra_dims(ds: xr.Dataset, *, argname: str = "ds") -> list[str]:
    """Dimensions of ``ds``'s variables that are neither time, latitude, longitude nor
    vertical (e.g. ``number``): what :func:`to_model_layout` would refuse."""
    lat, lon = find_latlon(ds, argname)
    tname = find_time(ds, argname=argname)
    space = {lat.dims[0], lon.dims[0]} | ({tname} if tname else set())
    out = []
    for da in ds.data_vars.values():
        vert = level_dim(da, space)
        out += [str(d) for d in da.dims if d not in space and d != vert and str(d) not in out]
    return out


def check_flat(ds: xr.Dataset, *, argname: str = "ds", keep: Sequence[str] = ()) -> None:
    """Refuse a Dataset whose variables have dimensions besides time, lat/lon and ``keep``,
    naming the dimension and the fix (select a level, a member)."""
    lat, lon = find_latlon(ds, argname)
    tname = find_time(ds, argname=argname)
    space = {lat.dims[0], lon.dims[0], *keep} | ({tname} if tname else set())
    for name, da in ds.data_vars.items():
        vert = level_dim(da, space)
        if vert is not None:
            hpa = level_values_hpa(da[vert]) if vert in da.coords else []
            example = [channel_name(str(name), float(h)) for h in list(hpa)[:2]]
            raise CoordinateError(
                f"{argname}: variable {name!r} has the vertical dimension {vert!r}; pass the "
                f"model channels to pick levels, e.g. variables={example or ['t850']}, or "
                f"select one level first ({argname}.sel({vert}=...))."
            )
        _check_extra(da, space, str(name), argname)
