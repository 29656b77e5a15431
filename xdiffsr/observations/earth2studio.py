"""Observations in earth2studio's DataFrame schema, turned into xdiffsr's tidy point frame.

earth2studio (NVIDIA's Earth-2 framework) hands observations around as a long ``pandas``
DataFrame, one row per observed value, with columns ``time``, ``lat``, ``lon`` (degrees east,
0-360), ``observation`` (the value, in the units of earth2studio's lexicon: K, m s-1, Pa,
m2 s-2, kg kg-1), ``variable`` (earth2studio names), and optionally ``pres`` (Pa, upper-air rows),
``elev``, ``station``, ``type`` and ``quality``. :func:`from_earth2studio` maps such a frame to the
tidy schema of :class:`xdiffsr.PointObservations` (``time, lat, lon, variable, value, error,
station``) for a model's variables:

* surface rows map by name: ``t2m`` -> ``t2m``, ``u10m`` -> ``u10``, ``v10m`` -> ``v10``,
  ``msl`` -> ``msl``, ``sp`` -> ``sp``;
* upper-air rows (``t``, ``u``, ``v``, ``z``, ``q``, ``r`` with ``pres`` in Pa) reach the model's
  pressure levels (``t850``, ``z500``) in one of two ways, chosen with ``vertical``:

  - ``"log-p"`` (default): every station profile (rows sharing ``station`` and ``time``; or
    ``time``, ``lat`` and ``lon`` without a ``station`` column) goes through the sounding
    operator :func:`xdiffsr.observations.vertical.soundings_to_observations`: linear in ln p
    between the two reported levels that bracket a model level, never extrapolated. Levels the
    profile does not bracket get no observation.
  - ``"nearest"``: each row is assigned to the nearest model level of its quantity when
    ``|pres - level|`` is at most ``level_tolerance`` hPa, else dropped. Use it for single-level
    reports (aircraft, satellite winds) and profiles whose rows differ in time or position.

The ``elev`` and ``type`` columns are not used (``type`` is kept as a column). Values keep
earth2studio's units, stated in a ``units`` column (:data:`EARTH2STUDIO_UNITS`, ERA5's units), so
the source converts them to the model's; the error of each row is the default of
:mod:`xdiffsr.observations.error_model` (model units) unless ``errors`` overrides it.

Examples
--------
>>> tidy = from_earth2studio(frame, model.variables)          # doctest: +SKIP
>>> ds.diffsr.super_resolve(obs=[tidy], model=model)          # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Mapping

import numpy as np
import pandas as pd

from xdiffsr.errors import ArgumentError, ObservationError, XDiffSRWarning
from xdiffsr.observations.error_model import G0, default_error_std
from xdiffsr.observations.vertical import parse_model_variable, soundings_to_observations

__all__ = [
    "EARTH2STUDIO_COLUMNS",
    "EARTH2STUDIO_SURFACE",
    "EARTH2STUDIO_UNITS",
    "EARTH2STUDIO_UPPER_AIR",
    "from_earth2studio",
    "is_earth2studio_frame",
]

#: Columns every earth2studio observation frame has.
EARTH2STUDIO_COLUMNS = ("time", "lat", "lon", "observation", "variable")
#: earth2studio surface variable -> model variable.
EARTH2STUDIO_SURFACE = {"t2m": "t2m", "u10m": "u10", "v10m": "v10", "msl": "msl", "sp": "sp"}
#: earth2studio upper-air variable -> column of the sounding operator's (IGRA) schema.
EARTH2STUDIO_UPPER_AIR = {"t": "temperature", "u": "u", "v": "v", "z": "gph", "q": "vappress",
                          "r": "rh"}
_VERTICAL = ("log-p", "nearest")
#: Units of earth2studio's observations by quantity (its lexicon follows ERA5's units).
EARTH2STUDIO_UNITS = {"t2m": "K", "u10": "m s-1", "v10": "m s-1", "msl": "Pa", "sp": "Pa",
                      "t": "K", "u": "m s-1", "v": "m s-1", "z": "m2 s-2", "q": "kg kg-1",
                      "r": "%"}


def is_earth2studio_frame(obj: object) -> bool:
    """Whether ``obj`` is an earth2studio observation frame.

    A DataFrame with an ``observation`` column and no ``value`` column (the tidy schema's value
    column) is one.
    """
    return (
        isinstance(obj, pd.DataFrame)
        and "observation" in obj.columns
        and "value" not in obj.columns
    )


def from_earth2studio(
    df: pd.DataFrame,
    variables: Iterable[str],
    *,
    quality: int | Collection[int] | None = 0,
    vertical: str = "log-p",
    level_tolerance: float = 25.0,
    errors: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Map an earth2studio observation frame to xdiffsr's tidy point observations.

    Parameters
    ----------
    df : pandas.DataFrame
        earth2studio schema: ``time``, ``lat``, ``lon``, ``observation``, ``variable``; ``pres``
        (Pa) for upper-air rows; optionally ``station``, ``quality``, ``elev``, ``type``.
    variables : iterable of str
        The model's variables (``model.variables``): surface names (``t2m``, ``u10``) and
        quantity+level names (``t850``, ``z500``). Observations of variables the model lacks are
        dropped with an :class:`~xdiffsr.errors.XDiffSRWarning` naming them.
    quality : int, collection of int or None
        Keep the rows whose ``quality`` flag is this value or in this set (0, earth2studio's
        "passed" flag, by default; rows with a missing flag are dropped); ``None`` keeps every
        row. Ignored when the frame has no ``quality`` column.
    vertical : {"log-p", "nearest"}
        How upper-air rows reach the model levels (see the module docstring).
    level_tolerance : float
        ``vertical="nearest"`` only: largest distance in hPa from a row's pressure to the model
        level it is assigned to (> 0).
    errors : mapping, optional
        Error standard deviations by quantity (``"t"``) or model variable (``"t850"``, ``"sp"``),
        overriding the defaults of :mod:`xdiffsr.observations.error_model`.

    Returns
    -------
    pandas.DataFrame
        Columns ``time``, ``lat``, ``lon``, ``variable`` (model names), ``value``, ``error``
        (standard deviation), ``units`` (earth2studio's, :data:`EARTH2STUDIO_UNITS`; converted
        to the model's by the source), ``station`` and ``type`` (``""`` when absent); ready for
        ``super_resolve(obs=[...])`` or :class:`xdiffsr.PointObservations`.

    Raises
    ------
    ObservationError
        Not an earth2studio frame (missing columns), unknown earth2studio variables (named, with
        the supported ones), upper-air rows without a ``pres`` column.
    ArgumentError
        Bad ``quality``, ``vertical``, ``level_tolerance`` or ``errors``.
    """
    df = _checked_frame(df)
    variables = [variables] if isinstance(variables, str) else list(variables)
    if vertical not in _VERTICAL:
        raise ArgumentError(f"vertical={vertical!r} must be one of {list(_VERTICAL)}.")
    tol = float(level_tolerance) if _is_number(level_tolerance) else np.nan
    if not (np.isfinite(tol) and tol > 0):
        raise ArgumentError(
            f"level_tolerance={level_tolerance!r} must be a positive number of hPa, e.g. 25."
        )
    errors = _checked_errors(errors)
    df = _filter_quality(df, quality)
    surface = df["variable"].isin(list(EARTH2STUDIO_SURFACE))
    frames = [_surface_rows(df.loc[surface])]
    upper = df.loc[~surface]
    if len(upper):
        if "pres" not in upper.columns:
            raise ObservationError(
                f"upper-air rows ({sorted(set(upper['variable']))}) need a 'pres' column (Pa); "
                "add it or drop those rows."
            )
        levels = [v for v in variables if _upper_quantity(v) is not None]
        if vertical == "log-p":
            frames.append(_profiles(upper, levels, errors))
        else:
            frames.append(_nearest(upper, levels, tol))
    return _finish(pd.concat(frames, ignore_index=True), variables, errors)


# --------------------------------------------------------------------------------------------
def _is_number(x: object) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _checked_frame(df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ObservationError(
            f"an earth2studio observation frame must be a pandas DataFrame; got "
            f"{type(df).__name__}."
        )
    missing = [c for c in EARTH2STUDIO_COLUMNS if c not in df.columns]
    if missing:
        raise ObservationError(
            f"earth2studio observation frame lacks columns {missing} (have {list(df.columns)}); "
            f"it needs {list(EARTH2STUDIO_COLUMNS)} (and 'pres' in Pa for upper-air rows)."
        )
    known = set(EARTH2STUDIO_SURFACE) | set(EARTH2STUDIO_UPPER_AIR)
    unknown = sorted(set(df["variable"].astype(str)) - known)
    if unknown:
        raise ObservationError(
            f"unknown earth2studio variables {unknown}; supported: surface "
            f"{sorted(EARTH2STUDIO_SURFACE)}, upper air {sorted(EARTH2STUDIO_UPPER_AIR)} (with "
            "'pres' in Pa). Drop or rename those rows."
        )
    df = df.copy()
    df["variable"] = df["variable"].astype(str)
    df["time"] = pd.to_datetime(df["time"]).astype("datetime64[ns]")
    for col in ("lat", "lon", "observation") + (("pres",) if "pres" in df else ()):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def _checked_errors(errors: Mapping[str, float] | None) -> dict[str, float]:
    if errors is None:
        return {}
    if not isinstance(errors, Mapping):
        raise ArgumentError(f"errors must be a mapping such as {{'t': 0.5}}; got {errors!r:.60}.")
    for key, val in errors.items():
        if not (_is_number(val) and np.isfinite(val) and val > 0):
            raise ArgumentError(f"errors[{key!r}]={val!r} must be a positive number (a std).")
    return {str(k): float(v) for k, v in errors.items()}


def _filter_quality(df: pd.DataFrame, quality: int | Collection[int] | None) -> pd.DataFrame:
    if quality is None or "quality" not in df.columns:
        return df
    keep = [quality] if _is_number(quality) else quality
    try:
        keep = [float(q) for q in keep]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ArgumentError(
            f"quality={quality!r} must be None, a flag such as 0, or a set of flags."
        ) from None
    return df.loc[pd.to_numeric(df["quality"], errors="coerce").isin(keep)]


def _surface_rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["time", "lat", "lon"]].copy()
    out["variable"] = df["variable"].map(EARTH2STUDIO_SURFACE)
    out["value"] = df["observation"]
    out["station"] = df["station"].astype(str) if "station" in df else ""
    out["type"] = df["type"].astype(str) if "type" in df else ""
    return out


def _upper_quantity(name: str) -> tuple[str, float] | None:
    parsed = parse_model_variable(name)
    if parsed is None or parsed[0] not in EARTH2STUDIO_UPPER_AIR:
        return None
    return parsed


def _profiles(df: pd.DataFrame, levels: list[str], errors: Mapping[str, float]) -> pd.DataFrame:
    """Per-profile log-pressure interpolation through the sounding operator."""
    if not levels:
        return _surface_rows(df.iloc[:0])
    keys = ["station", "time"] if "station" in df else ["time", "lat", "lon"]
    df = df.assign(sounding=df.groupby(keys, sort=False, dropna=False).ngroup())
    wide = df.pivot_table(index=["sounding", "pres"], columns="variable", values="observation",
                          aggfunc="mean").reset_index()
    head = df.groupby("sounding", sort=False)[
        ["time", "lat", "lon"] + (["station"] if "station" in df else [])
    ].first()
    wide = wide.join(head, on="sounding").rename(columns={"pres": "pressure"})
    wide = wide.rename(columns=EARTH2STUDIO_UPPER_AIR)
    if "gph" in wide:
        wide["gph"] = wide["gph"] / G0  # geopotential -> height; the operator multiplies by g0
    if "vappress" in wide:  # specific humidity -> vapour pressure (hPa), inverted exactly
        q, p_hpa = wide["vappress"], wide["pressure"] / 100.0
        wide["vappress"] = q * p_hpa / (0.622 + 0.378 * q)
    for col in EARTH2STUDIO_UPPER_AIR.values():
        if col not in wide:
            wide[col] = np.nan
    wide["station"] = wide["station"].astype(str) if "station" in wide else ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XDiffSRWarning)
        tidy = soundings_to_observations(wide, levels, errors=_level_errors(errors) or None)
    tidy["type"] = ""
    return tidy.drop(columns="error")


def _level_errors(errors: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in errors.items()
            if k in EARTH2STUDIO_UPPER_AIR or _upper_quantity(k) is not None}


def _nearest(df: pd.DataFrame, levels: list[str], tol_hpa: float) -> pd.DataFrame:
    """Each row on the nearest model level of its quantity within ``tol_hpa``."""
    rows = []
    p_hpa = df["pres"].to_numpy(float) / 100.0
    parsed = {n: _upper_quantity(n) for n in levels}
    for q in sorted(set(df["variable"])):
        lev = [(n, p[1]) for n, p in parsed.items() if p is not None and p[0] == q]
        sel = (df["variable"] == q).to_numpy()
        if not lev:
            continue
        lv = np.array([x for _, x in lev], dtype=float)
        k = np.argmin(np.abs(p_hpa[sel, None] - lv[None, :]), axis=1)
        ok = np.abs(p_hpa[sel] - lv[k]) <= tol_hpa
        part = _surface_rows(df.loc[sel].iloc[np.flatnonzero(ok)])
        part["variable"] = np.array([n for n, _ in lev], dtype=object)[k[ok]]
        rows.append(part)
    return pd.concat(rows, ignore_index=True) if rows else _surface_rows(df.iloc[:0])


def _error(name: str, errors: Mapping[str, float]) -> float:
    if name in errors:
        return errors[name]
    parsed = parse_model_variable(name)
    if parsed is not None and parsed[0] in errors:
        return errors[parsed[0]]
    return default_error_std(name)


def _units(name: str) -> str:
    parsed = parse_model_variable(name)
    return EARTH2STUDIO_UNITS[name if parsed is None else parsed[0]]


def _finish(df: pd.DataFrame, variables: list[str], errors: Mapping[str, float]) -> pd.DataFrame:
    cols = ["time", "lat", "lon", "variable", "value", "error", "units", "station", "type"]
    absent = sorted(set(df["variable"]) - set(variables))
    if absent:
        warnings.warn(
            f"dropped earth2studio observations of {absent}: not variables of the model "
            f"({variables}).", XDiffSRWarning, stacklevel=3)
        df = df.loc[df["variable"].isin(variables)]
    df = df.reset_index(drop=True)
    names = sorted(set(df["variable"]))
    table = {n: _error(n, errors) for n in names}
    df["error"] = df["variable"].map(table).astype(float)
    df["units"] = df["variable"].map({n: _units(n) for n in names}).astype(object)
    df["time"] = df["time"].astype("datetime64[ns]")
    df["station"] = df["station"].fillna("").astype(str)
    df["type"] = df["type"].fillna("").astype(str)
    return df[cols].sort_values(["time", "variable"], kind="stable").reset_index(drop=True)
