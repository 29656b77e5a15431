"""Validation of observation sources: the checks their constructors run on their options and
on the columns of point observations, so that bad input is refused with a typed error naming the
argument or column, the bad value and the fix (never a raw numpy or pandas error later)."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, ObservationError, UnitsError
from xdiffsr.grid import to_datetime64

__all__ = ["check_number", "check_options", "check_points", "grid_units", "is_real",
           "numeric_column", "point_units", "time_column"]


def check_number(name: str, value: Any, *, positive: bool = False) -> None:
    """ArgumentError unless ``value`` is a finite real number >= 0 (> 0 if ``positive``)."""
    ok = isinstance(value, Real) and not isinstance(value, bool)
    x = float(value) if ok else np.nan
    if not np.isfinite(x) or x < 0 or (positive and x == 0):
        need = "> 0" if positive else ">= 0"
        raise ArgumentError(f"{name}={value!r} must be a finite number {need}.")


def check_options(src: Any) -> None:
    """Validate the options common to every source: ``sigma_y``, ``gamma``, ``weight``,
    ``method`` and ``name`` (a constructor never accepts a value that fails later)."""
    label = type(src).__name__
    if isinstance(src.sigma_y, Mapping):
        for var, v in src.sigma_y.items():
            check_number(f"{label} sigma_y[{var!r}]", v, positive=True)
    elif src.sigma_y is not None:
        check_number(f"{label} sigma_y", src.sigma_y, positive=True)
    check_number(f"{label} gamma", src.gamma)
    if src.weight is not None:
        check_number(f"{label} weight", src.weight)
    if src.method is not None and src.method not in _METHODS:
        raise ArgumentError(
            f"{label} method={src.method!r} is not an interpolation method; choose one of "
            f"{_METHODS} (points: bilinear or bicubic)."
        )
    if src.name is not None and not isinstance(src.name, str):
        raise ArgumentError(f"{label} name={src.name!r} must be a string or None.")


_METHODS = ("bilinear", "bicubic", "conservative")


def is_real(dtype) -> bool:
    return bool(np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))


def numeric_column(df: pd.DataFrame, col: str) -> np.ndarray:
    """Column ``col`` as float64; None/NaN stay NaN, text that is not a number is refused."""
    raw = df[col]
    try:
        return raw.to_numpy(dtype=float)
    except (TypeError, ValueError):
        pass
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna()
    if bad.any() or raw.map(lambda v: isinstance(v, bool | complex)).any():
        i = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
        raise ObservationError(
            f"point observations column {col!r} holds {raw.iloc[i]!r} (row {raw.index[i]!r}, "
            f"{int(bad.sum())} such rows), which is not a number; convert the column with "
            "pandas.to_numeric (NaN or None rows are dropped with a warning)."
        )
    return num.to_numpy(dtype=float)


def time_column(df: pd.DataFrame) -> np.ndarray:
    """The ``time`` column as datetime64[ns] (None/NaT allowed, dropped later)."""
    try:
        return to_datetime64(df["time"])
    except (TypeError, ValueError, OverflowError) as err:
        conv = pd.to_datetime(df["time"], errors="coerce")
        bad = (conv.isna() & df["time"].notna()).to_numpy()
        i = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise ObservationError(
            f"point observations column 'time' holds {df['time'].iloc[i]!r} (row "
            f"{df.index[i]!r}), which is not a date ({err}); give datetime64 values or ISO "
            "strings such as '2020-01-01T12:00'."
        ) from err


def check_points(df: pd.DataFrame) -> None:
    """Refuse latitudes outside [-90, 90] and variable names that are not strings."""
    lat = df["lat"].to_numpy(float)
    out = np.abs(lat) > 90
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ObservationError(
            f"point observations column 'lat' holds {float(lat[i])!r} (row {df.index[i]!r}, "
            f"{int(out.sum())} such rows), outside [-90, 90]; give latitudes in degrees_north "
            "(swapped lat and lon columns?)."
        )
    names = df["variable"]
    odd = ~names.map(lambda v: isinstance(v, str)).to_numpy(bool)
    if odd.any():
        i = int(np.flatnonzero(odd)[0])
        raise ObservationError(
            f"point observations column 'variable' holds {names.iloc[i]!r} (row "
            f"{df.index[i]!r}), not a variable name; give model variable names such as 't850'."
        )


def _units_help(what: str, example: str) -> str:
    return (
        f"{what} has no units; state them: {example}, or pass units= to the source "
        "(one CF string or a dict by variable, e.g. units={'t850': 'K'}), or opt into the "
        "model's units with assume_units=True (super_resolve(..., assume_units=True))."
    )


def point_units(df: pd.DataFrame, units, assume: bool) -> pd.DataFrame:
    """``df`` with a ``units`` column from ``units=`` where it has none; refuses rows without
    units unless ``assume`` (then they are taken to be in the model's units)."""
    if units is not None:
        given = (df["variable"].map(dict(units)) if isinstance(units, Mapping)
                 else pd.Series(str(units), index=df.index))
        df["units"] = df["units"].fillna(given) if "units" in df else given
    if assume:
        return df
    lacking = (df["units"].isna() | (df["units"].astype(str).str.strip() == "")
               if "units" in df else pd.Series(True, index=df.index))
    if lacking.any():
        names = sorted(map(str, df.loc[lacking, "variable"].unique()))
        raise UnitsError(_units_help(
            f"point observations of {names} ({int(lacking.sum())} rows)",
            "a 'units' column (df['units'] = 'K')",
        ))
    return df


def grid_units(ds: xr.Dataset, units, assume: bool) -> xr.Dataset:
    """``ds`` with the ``units`` attribute of each variable from ``units=`` where it has none;
    refuses variables without units unless ``assume``."""
    ds = ds.copy()
    for name in map(str, ds.data_vars):
        given = units.get(name) if isinstance(units, Mapping) else units
        if not str(ds[name].attrs.get("units", "")).strip() and given is not None:
            ds[name].attrs["units"] = str(given)
        if not str(ds[name].attrs.get("units", "")).strip() and not assume:
            raise UnitsError(_units_help(
                f"obs dataset variable {name!r}", f"ds[{name!r}].attrs['units'] = 'K'"
            ))
    return ds
