"""From radiosonde soundings to model variables: vertical operator, errors and time matching.

A sounding (one row per level, as :func:`xdiffsr.io.igra.read_igra` returns) is interpolated
linearly in ``ln p`` to the model's pressure levels, only where two reported levels bracket the
target level (no extrapolation). The result is the tidy point-observation schema consumed by
``ds.diffsr.super_resolve(obs=[...])``: ``time, lat, lon, variable, value, error, station``.

References
----------
.. [1] Durre, I., Vose, R. S., Wuertz, D. B. (2006). Overview of the Integrated Global Radiosonde
   Archive. J. Climate 19, 53-68.
.. [2] Bolton, D. (1980). The computation of equivalent potential temperature. Mon. Wea. Rev.
   108, 1046-1053 (saturation vapour pressure, eq. 10).
.. [3] WMO (1988). Technical Regulations, Vol. I, WMO-No. 49: standard gravity g0 = 9.80665 m s-2
   relating geopotential and geopotential height.

The default errors (``DEFAULT_ERRORS``) and ``G0`` are defined in
:mod:`xdiffsr.observations.error_model` (one table for soundings and gridded sources) and
re-exported here.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from xdiffsr.errors import ArgumentError, ObservationError, XDiffSRWarning
from xdiffsr.observations.error_model import DEFAULT_ERRORS, G0

__all__ = [
    "DEFAULT_ERRORS",
    "G0",
    "SUPPORTED_QUANTITIES",
    "match_times",
    "parse_model_variable",
    "soundings_to_observations",
]

#: Model quantity -> description of how it is computed from a sounding.
SUPPORTED_QUANTITIES = {
    "t": "temperature (K)",
    "u": "eastward wind (m/s)",
    "v": "northward wind (m/s)",
    "z": "geopotential g0 * gph (m2/s2)",
    "gh": "geopotential height gph (m)",
    "r": "relative humidity (%)",
    "q": "specific humidity from dewpoint depression or vapour pressure (kg/kg)",
}

#: Units of each quantity's values (CF/UDUNITS spelling), written to the ``units`` column.
QUANTITY_UNITS = {"t": "K", "u": "m s-1", "v": "m s-1", "z": "m2 s-2", "gh": "m", "r": "%",
                  "q": "kg kg-1"}

#: ERA5 single-level names that look like quantity+level but are heights above ground.
_SINGLE_LEVEL = frozenset({"u10", "v10", "u100", "v100", "t2m", "d2m", "si10"})
_NAME_RE = re.compile(r"^([a-z]+)(\d+(?:\.\d+)?)$")
_KEY_OFFSET, _KEY_STRIDE = 30.0, 100.0  # sort key = sounding * stride + (ln p + offset)


def parse_model_variable(name: str) -> tuple[str, float] | None:
    """Split a flat model variable name into quantity and pressure level.

    Parameters
    ----------
    name : str
        E.g. ``"t850"``, ``"z500"``, ``"u250"``.

    Returns
    -------
    (quantity, level_hPa) or None
        ``("t", 850)``; ``None`` for names that are not quantity+level (``"sp"``, ``"t2m"``) and
        for the ERA5 near-surface names ``u10``, ``v10``, ``u100``, ``v100`` (heights in m).
        The level is an ``int`` when integral.

    Examples
    --------
    >>> parse_model_variable("t850")
    ('t', 850)
    >>> parse_model_variable("sp") is None
    True
    """
    if not isinstance(name, str) or name in _SINGLE_LEVEL:
        return None
    m = _NAME_RE.match(name)
    if m is None:
        return None
    level = float(m.group(2))
    if not 0 < level <= 1100:
        return None
    return m.group(1), int(level) if level.is_integer() else level


def match_times(
    obs_times: Sequence | np.ndarray | pd.Series,
    target_times: Sequence | np.ndarray | pd.Series,
    tolerance: pd.Timedelta | str = "3h",
) -> np.ndarray:
    """Index of the nearest target time within ``tolerance`` of each observation time.

    Parameters
    ----------
    obs_times : array_like of datetime, shape (n,)
        Observation times (e.g. nominal sounding times); NaT never matches.
    target_times : array_like of datetime, shape (m,)
        Target (model) times, in any order.
    tolerance : Timedelta or str
        Largest accepted ``|obs - target|`` (inclusive).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Index into ``target_times`` (as given), or -1 where no target is within tolerance.
        Ties go to the earlier target.
    """
    tol = pd.Timedelta(tolerance)
    if pd.isna(tol) or tol < pd.Timedelta(0):
        raise ArgumentError(f"tolerance={tolerance!r} must be a non-negative time delta.")
    obs = _as_ns(obs_times, "obs_times")
    tgt = _as_ns(target_times, "target_times")
    out = np.full(obs.shape, -1, dtype=np.int64)
    ok_t = ~np.isnat(tgt)
    if obs.size == 0 or not ok_t.any():
        return out
    order = np.flatnonzero(ok_t)[np.argsort(tgt[ok_t], kind="stable")]
    st = tgt[order].astype(np.int64)
    ov = obs.astype(np.int64)
    i = np.searchsorted(st, ov, side="left")
    lo = np.clip(i - 1, 0, len(st) - 1)
    hi = np.clip(i, 0, len(st) - 1)
    d_lo = np.abs(ov - st[lo])
    d_hi = np.abs(st[hi] - ov)
    best = np.where(d_lo <= d_hi, lo, hi)
    dist = np.minimum(d_lo, d_hi)
    hit = ~np.isnat(obs) & (dist <= tol.value)
    out[hit] = order[best[hit]]
    return out


def soundings_to_observations(
    df: pd.DataFrame,
    variables: Iterable[str],
    *,
    errors: Mapping[str, float] | None = None,
    max_gap_log_p: float | None = None,
    target_times: Sequence | np.ndarray | pd.Series | None = None,
    tolerance: pd.Timedelta | str = "3h",
) -> pd.DataFrame:
    """Interpolate soundings to model variables on pressure levels.

    Each sounding is interpolated linearly in ``ln p`` between the two nearest reported levels
    that bracket the target level and have the quantity; a reported level at exactly the target
    pressure is used as is. Levels outside the sounding are not extrapolated.

    Parameters
    ----------
    df : pandas.DataFrame
        Levels in the schema of :func:`xdiffsr.io.igra.read_igra` (``pressure`` in Pa,
        ``temperature`` K, ``gph`` m, ``u``, ``v`` m/s, ``rh`` %, ``dpdp`` K, ``time``, ``lat``,
        ``lon``, ``station``; ``sounding`` groups levels, else (station, time, lat, lon) do).
    variables : iterable of str
        Model variables, e.g. ``["t850", "u500", "z250", "sp"]``; names that are not
        quantity+level (``sp``) are ignored; quantities not in ``SUPPORTED_QUANTITIES`` are
        skipped with a warning.
    errors : mapping, optional
        Error standard deviations overriding :data:`DEFAULT_ERRORS` (the one table of
        :mod:`xdiffsr.observations.error_model`), by quantity (``"t"``) or by variable
        (``"t850"``, which wins).
    max_gap_log_p : float, optional
        Skip a level when its bracketing reports are more than this apart in ``ln p`` (e.g. 0.3
        is about 260 hPa around 850 hPa). Default: no limit.
    target_times : array_like of datetime, optional
        If given, each sounding's nominal time is matched to the nearest target within
        ``tolerance`` (:func:`match_times`); ``time`` becomes that target, the nominal time is
        kept in ``obs_time`` and unmatched soundings are dropped.
    tolerance : Timedelta or str
        Matching window, default 3 h.

    Returns
    -------
    pandas.DataFrame
        Columns ``time`` (datetime64[ns]), ``lat``, ``lon``, ``variable``, ``value`` (model
        units), ``error`` (std, same units), ``units`` (of the values, so the frame goes straight
        into ``super_resolve``), ``station`` (and ``obs_time`` when matching); one row per
        sounding and variable that could be computed.

    Raises
    ------
    ObservationError
        Missing columns.
    ArgumentError
        Bad ``errors``, ``max_gap_log_p`` or ``tolerance``.

    References
    ----------
    .. [1] Durre et al. (2006), J. Climate 19, 53-68 (IGRA levels and variables).
    """
    targets = _targets(variables)
    err = _resolve_errors(targets, errors)
    if max_gap_log_p is not None and not (np.isfinite(max_gap_log_p) and max_gap_log_p > 0):
        raise ArgumentError(f"max_gap_log_p={max_gap_log_p!r} must be a positive number or None.")
    _check_columns(df, targets)
    snd, heads = _soundings(df)
    hdr = _sounding_table(df, heads)
    usable = hdr["time"].notna().to_numpy() & np.isfinite(hdr["lat"]) & np.isfinite(hdr["lon"])
    if (~usable).any():
        warnings.warn(
            f"{int((~usable).sum())} soundings without time or coordinates were skipped; fill "
            "lat/lon (read_igra(..., station_list=...)) to use them.", XDiffSRWarning, stacklevel=2)
    if target_times is not None:
        idx = match_times(hdr["time"], target_times, tolerance)
        tt = _as_ns(target_times, "target_times")
        hdr["obs_time"] = hdr["time"]
        hdr["time"] = np.where(idx >= 0, tt[np.maximum(idx, 0)], np.datetime64("NaT", "ns"))
        usable &= idx >= 0
    logp = np.log(df["pressure"].to_numpy(dtype=float, na_value=np.nan))
    frames = []
    by_q: dict[str, list[tuple[str, float]]] = {}
    for name, (q, lev) in targets.items():
        by_q.setdefault(q, []).append((name, lev))
    for q, items in by_q.items():
        vals = _quantity(df, q)
        s_idx, k_idx, out = _interp_log_p(snd, logp, vals, [lv for _, lv in items], len(heads),
                                          max_gap_log_p)
        keep = usable[s_idx]
        names = np.array([n for n, _ in items], dtype=object)[k_idx[keep]]
        frames.append(_rows(hdr.iloc[s_idx[keep]], names, out[keep], err))
    return _finish(frames, target_times is not None)


# --------------------------------------------------------------------------------------------
def _as_ns(t: object, name: str) -> np.ndarray:
    try:
        arr = pd.to_datetime(pd.Series(np.asarray(t).ravel()) if np.ndim(t) else [t])
    except (ValueError, TypeError) as exc:
        raise ArgumentError(f"{name} must hold dates, got {t!r:.80}.") from exc
    if getattr(arr.dt, "tz", None) is not None:
        arr = arr.dt.tz_convert("UTC").dt.tz_localize(None)
    return arr.to_numpy(dtype="datetime64[ns]")


def _targets(variables: Iterable[str]) -> dict[str, tuple[str, float]]:
    if isinstance(variables, str):
        variables = [variables]
    out: dict[str, tuple[str, float]] = {}
    skipped = []
    for name in variables:
        parsed = parse_model_variable(name)
        if parsed is None:
            continue
        if parsed[0] not in SUPPORTED_QUANTITIES:
            skipped.append(name)
            continue
        out[name] = parsed
    if skipped:
        warnings.warn(
            f"variables {skipped} cannot be computed from radiosondes (supported quantities: "
            f"{sorted(SUPPORTED_QUANTITIES)}); they get no observations.", XDiffSRWarning,
            stacklevel=3)
    return out


def _resolve_errors(targets: Mapping, errors: Mapping[str, float] | None) -> dict[str, float]:
    errors = dict(errors or {})
    for key, val in errors.items():
        known = (key in SUPPORTED_QUANTITIES or key in DEFAULT_ERRORS
                 or parse_model_variable(str(key)) is not None)
        if not known:
            raise ArgumentError(
                f"errors key {key!r} is neither a quantity ({sorted(SUPPORTED_QUANTITIES)}) nor a "
                "model variable like 't850'; fix the key."
            )
        if not (np.isfinite(val) and val > 0):
            raise ArgumentError(f"errors[{key!r}]={val!r} must be a positive number (a std).")
    return {name: float(errors.get(name, errors.get(q, DEFAULT_ERRORS[q])))
            for name, (q, _) in targets.items()}


_NEEDS = {"t": ("temperature",), "u": ("u",), "v": ("v",), "z": ("gph",), "gh": ("gph",),
          "r": ("rh",), "q": ("temperature",)}


def _check_columns(df: pd.DataFrame, targets: Mapping) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ObservationError(f"df must be a DataFrame from read_igra, got {type(df).__name__}.")
    need = {"pressure", "time", "lat", "lon"}
    for q, _ in targets.values():
        need |= set(_NEEDS[q])
    missing = need - set(df.columns)
    if missing:
        raise ObservationError(
            f"df lacks columns {sorted(missing)}; pass the DataFrame returned by read_igra."
        )


def _soundings(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Sounding index per row (0..S-1) and the first row of each sounding."""
    if "sounding" in df:
        codes = pd.factorize(df["sounding"])[0]
    else:
        keys = [c for c in ("station", "time", "lat", "lon") if c in df]
        codes = df.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    heads = np.unique(codes, return_index=True)[1]
    return codes.astype(np.int64), heads


def _sounding_table(df: pd.DataFrame, heads: np.ndarray) -> pd.DataFrame:
    cols = ["time", "lat", "lon"] + (["station"] if "station" in df else [])
    hdr = df.iloc[heads][cols].reset_index(drop=True)
    hdr["time"] = hdr["time"].astype("datetime64[ns]")
    if "station" not in hdr:
        hdr["station"] = ""
    return hdr


def _quantity(df: pd.DataFrame, q: str) -> np.ndarray:
    """Per-level value of quantity ``q`` in model units."""
    def col(name: str) -> np.ndarray:
        if name not in df:
            return np.full(len(df), np.nan)
        return df[name].to_numpy(dtype=float, na_value=np.nan)

    simple = {"t": "temperature", "u": "u", "v": "v", "gh": "gph", "r": "rh"}
    if q in simple:
        return col(simple[q])
    if q == "z":
        return G0 * col("gph")
    # q: specific humidity 0.622 e / (p - 0.378 e), e from dewpoint (Bolton 1980, eq. 10)
    td_c = col("temperature") - col("dpdp") - 273.15
    e = 6.112 * np.exp(17.67 * td_c / (td_c + 243.5))
    e = np.where(np.isfinite(col("vappress")), col("vappress"), e)
    p_hpa = col("pressure") / 100.0
    return 0.622 * e / (p_hpa - 0.378 * e)


def _interp_log_p(
    snd: np.ndarray, logp: np.ndarray, vals: np.ndarray, levels_hpa: list[float], n_snd: int,
    max_gap: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised linear interpolation in ln p for all soundings and levels at once.

    Returns sounding index, level index and value for every (sounding, level) that is bracketed.
    """
    ok = np.isfinite(vals) & np.isfinite(logp) & (np.abs(logp) < _KEY_OFFSET)
    s, lp, v = snd[ok], logp[ok], vals[ok]
    key = s * _KEY_STRIDE + (lp + _KEY_OFFSET)
    order = np.argsort(key, kind="stable")
    key, s, lp, v = key[order], s[order], lp[order], v[order]
    lt = np.log(np.asarray(levels_hpa, dtype=float) * 100.0)
    ss = np.repeat(np.arange(n_snd), len(lt))
    kk = np.tile(np.arange(len(lt)), n_snd)
    tkey = ss * _KEY_STRIDE + (lt[kk] + _KEY_OFFSET)
    n = len(key)
    if n == 0:
        return ss[:0], kk[:0], np.zeros(0)
    i = np.searchsorted(key, tkey, side="left")
    hi = np.minimum(i, n - 1)
    lo = np.maximum(i - 1, 0)
    exact = (i < n) & (s[hi] == ss) & np.isclose(lp[hi], lt[kk], rtol=0, atol=1e-12)
    inner = (i > 0) & (i < n) & (s[lo] == ss) & (s[hi] == ss) & (lp[hi] > lp[lo])
    if max_gap is not None:
        inner &= (lp[hi] - lp[lo]) <= max_gap
    w = np.where(inner, (lt[kk] - lp[lo]) / np.where(inner, lp[hi] - lp[lo], 1.0), 0.0)
    out = np.where(exact, v[hi], v[lo] + w * (v[hi] - v[lo]))  # linear in ln p
    good = exact | inner
    return ss[good], kk[good], out[good]


def _rows(hdr: pd.DataFrame, names: np.ndarray, values: np.ndarray, err: Mapping) -> pd.DataFrame:
    out = hdr.reset_index(drop=True).copy()
    out["variable"] = names.astype(str)
    out["value"] = values
    out["error"] = pd.Series(names, dtype=object).map(err).to_numpy(dtype=float)
    return out


def _finish(frames: list[pd.DataFrame], matched: bool) -> pd.DataFrame:
    cols = ["time", "lat", "lon", "variable", "value", "error", "units", "station"]
    cols += ["obs_time"] if matched else []
    for f in frames:  # the values' units, so the frame is a source as it is (units checked)
        f["units"] = f["variable"].map(lambda v: QUANTITY_UNITS[parse_model_variable(v)[0]])
    frames = [f for f in frames if len(f)]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        for c in ("time", "obs_time"):
            if c in empty:
                empty[c] = empty[c].astype("datetime64[ns]")
        for c in ("variable", "units", "station"):
            empty[c] = empty[c].astype(str)
        return empty
    out = pd.concat(frames, ignore_index=True)[cols]
    out = out.sort_values(["time", "station", "variable"], kind="stable").reset_index(drop=True)
    out["time"] = out["time"].astype("datetime64[ns]")
    return out
