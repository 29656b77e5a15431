"""Parsing of IGRA v2 fixed-width records: layouts, headers, levels, dates and problem reports.

The record layouts of the sounding-data and derived-parameter formats, the vectorised
parsing of header and level records of a whole file (on top of :mod:`xdiffsr.io.igra_fixed`),
the conversion of levels to SI units, the filters applied to headers, and the reporting of
truncated or malformed soundings. The public readers are in :mod:`xdiffsr.io.igra`; the public
names defined here (``STANDARD_LEVELS_HPA``, ``QC_BITS``, :class:`IgraFormatWarning`,
:func:`in_bbox`, :func:`wind_components`, :func:`wind_direction_speed`) are re-exported there.

See :mod:`xdiffsr.io.igra` for the format documents this parser follows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xdiffsr.errors import ArgumentError, FormatError, XDiffSRWarning
from xdiffsr.io import igra_fixed as fx

__all__ = [
    "LAYOUTS",
    "QC_BITS",
    "STANDARD_LEVELS_HPA",
    "Filters",
    "IgraFormatWarning",
    "Layout",
    "assemble",
    "in_bbox",
    "parse_file",
    "report_problems",
    "report_skipped",
    "wind_components",
    "wind_direction_speed",
]

#: Standard pressure levels of IGRA (LVLTYP1 = 1), hPa [2].
STANDARD_LEVELS_HPA = (1000, 925, 850, 700, 500, 400, 300, 250, 200, 150, 100, 70, 50, 30, 20, 10,
                       7, 5, 3, 2, 1)
#: bit of ``qc_removed`` per variable: set where the file holds -8888 (removed by IGRA QC) [2].
QC_BITS = {"etime": 1, "gph": 2, "temperature": 4, "rh": 8, "dpdp": 16, "wdir": 32, "wspd": 64,
           "pressure": 128}
_FLAG_CODES = {32: "", 65: "A", 66: "B"}


class IgraFormatWarning(XDiffSRWarning):
    """An IGRA file holds truncated or malformed soundings, which were dropped, or odd level
    records, which were skipped (their soundings kept)."""


# --------------------------------------------------------------------------------------------
# record layouts (1-based inclusive columns, as printed in the format descriptions [2, 3])
@dataclass(frozen=True)
class Layout:
    """Column layout of one IGRA record format (1-based inclusive columns) [2, 3]."""

    kind: str
    width: int
    head_ints: tuple[tuple[str, int, int], ...]
    head_chars: tuple[tuple[str, int, int], ...]
    head_blank: tuple[int, ...]
    level_width: int
    level_ints: tuple[tuple[str, int, int], ...]
    level_flags: tuple[tuple[str, int], ...]
    level_blank: tuple[int, ...]


_DATE_FIELDS = (("year", 14, 17), ("month", 19, 20), ("day", 22, 23), ("hour", 25, 26),
                ("reltime", 28, 31))
_DATA = Layout(
    kind="data", width=71,
    head_ints=(*_DATE_FIELDS, ("numlev", 33, 36), ("lat", 56, 62), ("lon", 64, 71)),
    head_chars=(("station", 2, 12), ("p_src", 38, 45), ("np_src", 47, 54)),
    head_blank=(13, 18, 21, 24, 27, 32, 37, 46, 55, 63),
    level_width=51,
    level_ints=(("lvltyp1", 1, 1), ("lvltyp2", 2, 2), ("etime", 4, 8), ("pressure", 10, 15),
                ("gph", 17, 21), ("temp", 23, 27), ("rh", 29, 33), ("dpdp", 35, 39),
                ("wdir", 41, 45), ("wspd", 47, 51)),
    level_flags=(("pflag", 16), ("zflag", 22), ("tflag", 28)),
    level_blank=(3, 9, 34, 40, 46),
)
_DRVD_HEAD = ("pw", "invpress", "invhgt", "invtempdif", "mixpress", "mixhgt", "frzpress", "frzhgt",
              "lclpress", "lclhgt", "lfcpress", "lfchgt", "lnbpress", "lnbhgt", "li", "si", "ki",
              "tti", "cape", "cin")
_DRVD_LEVEL = ("pressure", "repgph", "calcgph", "temp", "tempgrad", "ptemp", "ptempgrad", "vtemp",
               "vptemp", "vappress", "satvap", "reprh", "calcrh", "rhgrad", "uwnd", "uwndgrad",
               "vwnd", "vwndgrad", "n")
_DERIVED = Layout(
    kind="derived", width=157,
    head_ints=(*_DATE_FIELDS, ("numlev", 32, 36),
               *((n, 38 + 6 * k, 43 + 6 * k) for k, n in enumerate(_DRVD_HEAD))),
    head_chars=(("station", 2, 12),),
    head_blank=(13, 18, 21, 24, 27, 37),
    level_width=151,
    level_ints=tuple((n, 1 + 8 * k, 7 + 8 * k) for k, n in enumerate(_DRVD_LEVEL)),
    level_flags=(),
    level_blank=tuple(8 + 8 * k for k in range(18)),
)
LAYOUTS = {"data": _DATA, "derived": _DERIVED}


def in_bbox(lat: np.ndarray, lon: np.ndarray, bbox: Sequence[float]) -> np.ndarray:
    """Mask of points inside ``bbox = (lon_min, lat_min, lon_max, lat_max)``.

    Longitudes may use either convention (they are compared modulo 360); ``lon_min > lon_max``
    (after wrapping to [-180, 180)) selects a box that crosses the antimeridian. Edges are
    inclusive. NaN coordinates are outside.

    Parameters
    ----------
    lat, lon : array_like, shape (n,)
    bbox : sequence of 4 floats

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
    """
    lon_min, lat_min, lon_max, lat_max = _check_bbox(bbox)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lon_max - lon_min >= 360:
        in_lon = np.isfinite(lon)
    else:
        rel = np.mod(lon - lon_min, 360.0)
        in_lon = rel <= np.mod(lon_max - lon_min, 360.0) + 1e-9
        in_lon |= np.isclose(rel, 360.0)
    return in_lon & (lat >= lat_min) & (lat <= lat_max)


def wind_components(wdir: np.ndarray, wspd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eastward and northward wind from meteorological direction (from, degrees) and speed.

    ``u = -s sin(d)``, ``v = -s cos(d)`` (WMO convention: a wind *from* the north, d = 0, blows
    southward, v < 0).

    Parameters
    ----------
    wdir, wspd : array_like, shape (n,)

    Returns
    -------
    u, v : numpy.ndarray, shape (n,)
    """
    rad = np.deg2rad(np.asarray(wdir, dtype=float))
    s = np.asarray(wspd, dtype=float)
    return -s * np.sin(rad), -s * np.cos(rad)


def wind_direction_speed(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`wind_components`: direction in [0, 360) (0 for calm) and speed."""
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    spd = np.hypot(u, v)
    d = np.mod(np.degrees(np.arctan2(-u, -v)), 360.0)
    d = np.where(spd == 0, 0.0, d)
    return d, spd


# --------------------------------------------------------------------------------------------
# filters
@dataclass(frozen=True)
class Filters:
    """Validated ``start``, ``end``, ``bbox`` and ``stations`` filters of ``read_igra``."""

    start: np.datetime64 | None
    end: np.datetime64 | None
    bbox: tuple[float, float, float, float] | None
    stations: frozenset[str] | None

    @staticmethod
    def make(start: object, end: object, bbox: object, stations: object) -> Filters:
        t0 = _to_ns(start, "start")
        t1 = _to_ns(end, "end")
        if t0 is not None and t1 is not None and t1 < t0:
            raise ArgumentError(f"end={end!r} is before start={start!r}; swap them.")
        box = None if bbox is None else _check_bbox(bbox)
        if stations is None:
            ids = None
        else:
            ids = frozenset([stations] if isinstance(stations, str) else map(str, stations))
        return Filters(t0, t1, box, ids)


def _to_ns(t: object, name: str) -> np.datetime64 | None:
    if t is None:
        return None
    try:
        ts = pd.Timestamp(t)
    except (ValueError, TypeError) as exc:
        raise ArgumentError(f"{name}={t!r} is not a date; pass e.g. '2015-03-01T00'.") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ns")


def _check_bbox(bbox: object) -> tuple[float, float, float, float]:
    try:
        box = tuple(float(b) for b in bbox)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise ArgumentError(
            f"bbox={bbox!r} is not 4 numbers; pass (lon_min, lat_min, lon_max, lat_max)."
        ) from exc
    if len(box) != 4 or not np.all(np.isfinite(box)):
        raise ArgumentError(f"bbox={bbox!r} must be 4 finite (lon_min, lat_min, lon_max, lat_max).")
    if not (-90 <= box[1] <= box[3] <= 90):
        raise ArgumentError(
            f"bbox={bbox!r}: latitudes must satisfy -90 <= lat_min <= lat_max <= 90; the order is "
            "(lon_min, lat_min, lon_max, lat_max)."
        )
    return box  # type: ignore[return-value]


def parse_file(lines: fx.Lines, lay: Layout, filt: Filters, path: Path) -> tuple[dict, list[dict]]:
    """Parse one file's records: (level columns of the kept soundings, problems found)."""
    mat = lines.mat
    n = len(mat)
    heads = np.flatnonzero(mat[:, 0] == ord("#"))
    if heads.size == 0:
        raise FormatError(f"path={str(path)!r} has no header record; it is not an IGRA file.")
    h = _parse_headers(mat[heads], lines.tail[heads], lay)
    gap = np.append(heads[1:], n) - heads - 1
    problems: list[dict] = []
    if heads[0] > 0:
        problems.append(_problem(path, "", "", 1, f"{heads[0]} lines before the first header"))
    # 0 complete, 1 bad header, 2 truncated, 3 extra lines, 4 bad level record
    status = np.select([~h["ok"], gap < h["numlev"], gap > h["numlev"]], [1, 2, 3], 0)
    # level records of soundings whose structure is complete
    rows = np.flatnonzero(mat[:, 0] != ord("#"))
    rows = rows[rows > heads[0]]
    owner = np.searchsorted(heads, rows) - 1
    sel = status[owner] == 0
    rows, owner = rows[sel], owner[sel]
    lev, lev_bad, lev_skip = _parse_levels(mat[rows], lines.tail[rows], lay)
    bad_snd, first = np.unique(owner[lev_bad], return_index=True)
    status[bad_snd] = 4
    bad_line = np.full(len(heads), -1)
    bad_line[bad_snd] = rows[lev_bad][first]
    for k in np.flatnonzero(status):
        problems.append(_status_problem(path, h, heads, gap, k, status[k], bad_line))
    keep = (status == 0) & _header_filter(h, filt)
    why = {1: "unknown level type", 2: "every value blank or missing"}
    skipped = [_problem(path, str(h["station"][owner[i]]), str(h["date_text"][owner[i]]),
                        rows[i] + 1, f"level record skipped: {why[int(lev_skip[i])]}")
               for i in np.flatnonzero((lev_skip > 0) & keep[owner])]
    keep_rows = keep[owner] & (lev_skip == 0)
    lev = {k: v[keep_rows] for k, v in lev.items()}
    hsel = {k: v[keep] for k, v in h.items()}
    counts = np.bincount(owner[keep_rows], minlength=len(heads))[keep]
    block = _expand(hsel, counts, lev, lay)
    block["n_soundings"] = int(keep.sum())
    block["skipped"] = skipped
    return block, problems


def _parse_headers(mat: np.ndarray, tail: np.ndarray, lay: Layout) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    ok = ~tail & fx.blank_cols(mat, lay.head_blank)
    vals, valid, _ = fx.parse_ints(mat, lay.head_ints)
    out.update(vals)
    ok &= np.logical_and.reduce(list(valid.values()))
    for name, a, b in lay.head_chars:
        out[name] = fx.parse_chars(mat, a, b)
    out["date_text"] = fx.parse_chars(mat, 14, 26)
    ok &= out["station"] != ""
    ok &= (out["numlev"] >= 0) & ((out["hour"] <= 23) | (out["hour"] == 99)) & (out["hour"] >= 0)
    if lay.kind == "data":
        ok &= (np.abs(out["lat"]) <= 900000) & (np.abs(out["lon"]) <= 3600000)
    day, day_ok = _dates(out["year"], out["month"], out["day"])
    ok &= day_ok
    out["time"], out["release_time"] = _times(day, out["hour"], out["reltime"])
    out["ok"] = ok
    return out


def _dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = (month >= 1) & (month <= 12) & (year >= 1800) & (year <= 2500)
    m = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    first = m.astype("datetime64[D]")
    ndays = ((m + np.timedelta64(1, "M")).astype("datetime64[D]") - first).astype(np.int64)
    ok &= (day >= 1) & (day <= ndays)
    d = m.astype("datetime64[D]") + np.where(ok, day - 1, 0)
    return d, ok


def _times(day: np.ndarray, hour: np.ndarray, reltime: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nominal and release times (datetime64[ns]) from date, HOUR and RELTIME (HHMM) [2]."""
    base = day.astype("datetime64[ns]")
    one_h, one_d = np.timedelta64(1, "h"), np.timedelta64(1, "D")
    nominal = base + hour * one_h
    rh, rm = reltime // 100, reltime % 100
    rel_ok = (reltime >= 0) & (reltime != 9999) & (rh <= 23) & ((rm <= 59) | (rm == 99))
    rel = base + rh * one_h + np.where(rm == 99, 0, rm) * np.timedelta64(1, "m")
    has_hour = hour != 99
    diff = rel - nominal
    rel = rel - np.where(has_hour & (diff > 12 * one_h), one_d, 0)
    rel = rel + np.where(has_hour & (diff < -12 * one_h), one_d, 0)
    nat = np.datetime64("NaT", "ns")
    rel = np.where(rel_ok, rel, nat)
    nominal = np.where(has_hour, nominal, rel)
    return nominal, rel


def _parse_levels(
    mat: np.ndarray, tail: np.ndarray, lay: Layout
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Level fields, the malformed records (they cost their sounding: shifted or damaged
    columns) and the odd records that are skipped alone (well formed, but of an unknown level
    type, or with every value blank or missing)."""
    ok = ~tail & fx.blank_cols(mat, lay.level_blank)
    ok &= (mat[:, lay.level_width :] == 32).all(axis=1)
    vals, valid, blank = fx.parse_ints(mat, lay.level_ints)
    out: dict[str, np.ndarray] = dict(vals)
    ok &= np.logical_and.reduce([valid[n] | blank[n] for n in valid])
    for name, c in lay.level_flags:
        code = mat[:, c - 1]
        ok &= np.isin(code, list(_FLAG_CODES))
        out[name] = code
    values = [n for n, _, _ in lay.level_ints if n not in ("lvltyp1", "lvltyp2")]
    codes = (-9999, -8888) if lay.kind == "data" else (-99999,)
    missing = [blank[n] | (valid[n] & np.isin(vals[n], codes)) for n in values]
    any_blank = np.logical_or.reduce([blank[n] for n in values])
    empty = np.logical_and.reduce(missing) & any_blank
    known = np.ones(len(mat), dtype=bool)
    if lay.kind == "data":
        known = valid["lvltyp1"] & np.isin(out["lvltyp1"], (1, 2, 3))
        known &= valid["lvltyp2"] & np.isin(out["lvltyp2"], (0, 1, 2))
    skip = np.where(ok & ~known, 1, np.where(ok & empty, 2, 0))
    bad = ~ok | ((skip == 0) & any_blank)
    return out, bad, skip


def _header_filter(h: dict[str, np.ndarray], filt: Filters) -> np.ndarray:
    keep = np.ones(len(h["ok"]), dtype=bool)
    t = h["time"]
    if filt.start is not None:
        keep &= ~np.isnat(t) & (t >= filt.start)
    if filt.end is not None:
        keep &= ~np.isnat(t) & (t <= filt.end)
    if filt.stations is not None:
        keep &= np.isin(h["station"], list(filt.stations))
    if filt.bbox is not None and "lat" in h:
        keep &= in_bbox(h["lat"] / 1e4, h["lon"] / 1e4, filt.bbox)
    return keep


def _missing(raw: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    return np.where((raw == -9999) | (raw == -8888), np.nan, raw * scale + offset)


def _expand(h: dict, counts: np.ndarray, lev: dict, lay: Layout) -> dict[str, np.ndarray]:
    """Broadcast header fields to levels and convert level fields to SI units [2, 3]."""
    rep = np.repeat(np.arange(len(counts)), counts)
    out: dict[str, np.ndarray] = {
        "station": h["station"][rep],
        "sounding": rep.astype(np.int64),
        "time": h["time"][rep],
        "release_time": h["release_time"][rep],
    }
    if lay.kind == "data":
        out["lat"] = h["lat"][rep] / 1e4
        out["lon"] = h["lon"][rep] / 1e4
        out.update(_data_levels(lev))
        out["p_src"] = h["p_src"][rep]
        out["np_src"] = h["np_src"][rep]
    else:
        first = np.ones(len(rep), dtype=bool)
        first[1:] = rep[1:] != rep[:-1]
        out.update(_derived_levels(lev, first))
        for name in _DRVD_HEAD:
            out[name] = _derived_head(name, h[name])[rep]
    return out


def _data_levels(lev: dict) -> dict[str, np.ndarray]:
    et = lev["etime"]
    etime = np.where(et < 0, np.nan, (et // 100) * 60 + et % 100)  # MMMSS -> s; <0 missing
    out = {
        "lvltyp1": lev["lvltyp1"].astype(np.int8),
        "lvltyp2": lev["lvltyp2"].astype(np.int8),
        "etime": etime.astype(float),
        "pressure": _missing(lev["pressure"]),
        "gph": _missing(lev["gph"]),
        "temperature": _missing(lev["temp"], 0.1, 273.15),
        "rh": _missing(lev["rh"], 0.1),
        "dpdp": _missing(lev["dpdp"], 0.1),
        "wdir": _missing(lev["wdir"]),
        "wspd": _missing(lev["wspd"], 0.1),
    }
    out["u"], out["v"] = wind_components(out["wdir"], out["wspd"])
    lut = np.array([_FLAG_CODES.get(i, "?") for i in range(256)], dtype=object)
    for name in ("pflag", "zflag", "tflag"):
        out[name] = lut[lev[name]]
    raw = {"etime": "etime", "gph": "gph", "temperature": "temp", "rh": "rh", "dpdp": "dpdp",
           "wdir": "wdir", "wspd": "wspd", "pressure": "pressure"}
    qc = np.zeros(len(et), dtype=np.int16)
    for name, bit in QC_BITS.items():
        qc |= np.where(lev[raw[name]] == -8888, bit, 0).astype(np.int16)
    out["qc_removed"] = qc
    return out


def _derived_levels(lev: dict, first: np.ndarray) -> dict[str, np.ndarray]:
    def d(name: str, scale: float = 1.0) -> np.ndarray:
        return np.where(lev[name] == -99999, np.nan, lev[name] * scale)

    p = d("pressure")
    u, v = d("uwnd", 0.1), d("vwnd", 0.1)
    wdir, wspd = wind_direction_speed(u, v)
    std = np.isin(p, np.asarray(STANDARD_LEVELS_HPA) * 100.0)
    n = len(p)
    return {
        "lvltyp1": np.where(std, 1, np.where(np.isfinite(p), 2, 3)).astype(np.int8),
        "lvltyp2": first.astype(np.int8),
        "etime": np.full(n, np.nan), "pressure": p, "gph": d("repgph"),
        "temperature": d("temp", 0.1), "rh": d("reprh", 0.1), "dpdp": np.full(n, np.nan),
        "wdir": wdir, "wspd": wspd, "u": u, "v": v,
        "pflag": np.full(n, "", dtype=object), "zflag": np.full(n, "", dtype=object),
        "tflag": np.full(n, "", dtype=object), "qc_removed": np.zeros(n, dtype=np.int16),
        "gph_calc": d("calcgph"), "tempgrad": d("tempgrad", 0.1), "ptemp": d("ptemp", 0.1),
        "ptempgrad": d("ptempgrad", 0.1), "vtemp": d("vtemp", 0.1), "vptemp": d("vptemp", 0.1),
        "vappress": d("vappress", 1e-3), "satvap": d("satvap", 1e-3), "rh_calc": d("calcrh", 0.1),
        "rhgrad": d("rhgrad", 0.1), "ugrad": d("uwndgrad", 0.1), "vgrad": d("vwndgrad", 0.1),
        "n": d("n"),
    }


def _derived_head(name: str, raw: np.ndarray) -> np.ndarray:
    scale = {"pw": 0.01, "invtempdif": 0.1}.get(name, 1.0)
    return np.where(raw == -99999, np.nan, raw * scale)


_DATA_COLS = ["station", "sounding", "time", "release_time", "lat", "lon", "lvltyp1", "lvltyp2",
              "etime", "pressure", "gph", "temperature", "rh", "dpdp", "wdir", "wspd", "u", "v",
              "pflag", "zflag", "tflag", "qc_removed"]


def assemble(blocks: list[dict], fmt: str) -> pd.DataFrame:
    """Concatenate the parsed blocks of several files into the tidy frame of ``read_igra``."""
    if fmt == "data":
        cols = [*_DATA_COLS, "p_src", "np_src"]
    else:
        extra = ["gph_calc", "tempgrad", "ptemp", "ptempgrad", "vtemp", "vptemp", "vappress",
                 "satvap", "rh_calc", "rhgrad", "ugrad", "vgrad", "n", *_DRVD_HEAD]
        cols = [*_DATA_COLS[:4], "lat", "lon", *_DATA_COLS[6:], *extra]
    data = {}
    for c in cols:
        parts = [b[c] for b in blocks if c in b]
        data[c] = np.concatenate(parts) if parts else np.zeros(0)
    if fmt == "derived":
        data["lat"] = np.full(len(data["sounding"]), np.nan)
        data["lon"] = np.full(len(data["sounding"]), np.nan)
    df = pd.DataFrame(data, columns=cols)
    for c in ("time", "release_time"):
        df[c] = df[c].astype("datetime64[ns]")
    for c in ("station", "pflag", "zflag", "tflag", "p_src", "np_src"):
        if c in df:
            df[c] = df[c].astype(str)
    df["sounding"] = df["sounding"].astype(np.int64)
    return df


# --------------------------------------------------------------------------------------------
# problems
def _problem(path: Path, station: str, date: str, line: int, reason: str) -> dict:
    return {"file": str(path), "station": station, "date": date, "line": int(line),
            "reason": reason}


def _status_problem(path: Path, h: dict, heads: np.ndarray, gap: np.ndarray, k: int, code: int,
                    bad_line: np.ndarray) -> dict:
    reasons = {
        1: "malformed header record",
        2: f"truncated: header announces {h['numlev'][k]} levels but {gap[k]} follow",
        3: f"header announces {h['numlev'][k]} levels but {gap[k]} lines follow",
    }
    line = heads[k] + 1
    if code == 4:
        reason = f"malformed level record at line {bad_line[k] + 1}"
    else:
        reason = reasons[int(code)]
    return _problem(path, str(h["station"][k]), str(h["date_text"][k]), line, reason)


def report_problems(problems: list[dict], path: Path, on_error: str) -> None:
    """Warn about, raise on, or ignore (``on_error``) the dropped soundings of one file."""
    if not problems or on_error == "ignore":
        return
    lines = [f"{p['station']} {p['date']} (header line {p['line']}): {p['reason']}"
             for p in problems[:10]]
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    msg = (f"{path}: {len(problems)} sounding(s) not read: " + "; ".join(lines) + more)
    if on_error == "raise":
        raise FormatError(msg + ". Re-download the file, or pass on_error='warn' to keep the "
                          "complete soundings.")
    warnings.warn(msg + ". They were dropped; complete soundings were kept.", IgraFormatWarning,
                  stacklevel=4)


def report_skipped(skipped: list[dict], path: Path, on_error: str) -> None:
    """Warn about, raise on, or ignore (``on_error``) the level records skipped in one file
    (an unknown level type, or no values: the record is left out, its sounding kept)."""
    if not skipped or on_error == "ignore":
        return
    lines = [f"{p['station']} {p['date']} line {p['line']}: {p['reason'].split(': ', 1)[-1]}"
             for p in skipped[:10]]
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    msg = f"{path}: {len(skipped)} level record(s) skipped: " + "; ".join(lines) + more
    if on_error == "raise":
        raise FormatError(msg + ". Pass on_error='warn' to skip these records and keep their "
                          "soundings.")
    warnings.warn(msg + ". Their soundings were kept without them (df.attrs["
                  "'igra_skipped_records'] lists them).", IgraFormatWarning, stacklevel=4)
