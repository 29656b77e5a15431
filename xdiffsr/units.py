"""CF units: canonical spellings and conversion between compatible units (K/degC, Pa/hPa, ...).

Only linear conversions within one dimension are done (``value_SI = value * scale + offset``);
anything else raises :class:`~xdiffsr.errors.UnitsError` naming the variable and the fix.
"""

from __future__ import annotations

from xdiffsr.errors import UnitsError

__all__ = ["canonical_units", "convert_units"]


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
