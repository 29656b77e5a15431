"""Integrated Global Radiosonde Archive (IGRA) v2 readers and writer.

Reads the station list, the sounding data files (``*-data.txt``) and the derived-parameter files
(``*-drvd.txt``), plain, ``.gz`` or ``.zip``, one file, a list or a directory, into one tidy
:class:`pandas.DataFrame` with one row per level, in SI units. Parsing is vectorised over the whole
file (see :mod:`xdiffsr.io.igra_fixed`); every field is validated, so a truncated or damaged
sounding is reported (station, date, line number) and dropped instead of being read with shifted
columns.

The vertical operator (soundings to model variables such as ``t850``) lives in
:mod:`xdiffsr.observations.vertical` and is re-exported here.

References
----------
.. [1] Durre, I., Yin, X., Vose, R. S., Applequist, S., Arnfield, J. (2018). Enhancing the Data
   Coverage in the Integrated Global Radiosonde Archive. J. Atmos. Oceanic Technol. 35, 1753-1770.
.. [2] NOAA NCEI, "IGRA v2.2 Format Description: Sounding Data", igra2-data-format.txt (2023).
.. [3] NOAA NCEI, "IGRA v2.2 Format Description: Derived Parameters", igra2-derived-format.txt.
.. [4] NOAA NCEI, "IGRA v2.2 Format Description: Station, Country, and U.S. State Code Lists",
   igra2-list-format.txt (2023).
"""

from __future__ import annotations

import gzip
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from xdiffsr.errors import ArgumentError, FormatError, XDiffSRWarning
from xdiffsr.io import igra_fixed as fx

__all__ = [
    "STANDARD_LEVELS_HPA",
    "IgraFormatWarning",
    "in_bbox",
    "read_igra",
    "read_igra_derived",
    "read_station_list",
    "wind_components",
    "wind_direction_speed",
    "write_igra",
]

PathType = str | PathLike
#: Standard pressure levels of IGRA (LVLTYP1 = 1), hPa [2].
STANDARD_LEVELS_HPA = (1000, 925, 850, 700, 500, 400, 300, 250, 200, 150, 100, 70, 50, 30, 20, 10,
                       7, 5, 3, 2, 1)
#: bit of ``qc_removed`` per variable: set where the file holds -8888 (removed by IGRA QC) [2].
QC_BITS = {"etime": 1, "gph": 2, "temperature": 4, "rh": 8, "dpdp": 16, "wdir": 32, "wspd": 64,
           "pressure": 128}
_FLAG_CODES = {32: "", 65: "A", 66: "B"}
_NAME_RE = re.compile(r"^[A-Z0-9]{11}-(data|drvd)\.txt(\.gz|\.zip)?$", re.IGNORECASE)


class IgraFormatWarning(XDiffSRWarning):
    """An IGRA file holds truncated or malformed soundings, which were dropped."""


# --------------------------------------------------------------------------------------------
# record layouts (1-based inclusive columns, as printed in the format descriptions [2, 3])
@dataclass(frozen=True)
class _Layout:
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
_DATA = _Layout(
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
_DERIVED = _Layout(
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
_LAYOUTS = {"data": _DATA, "derived": _DERIVED}


# --------------------------------------------------------------------------------------------
# station list
def read_station_list(path: PathType) -> pd.DataFrame:
    """Read the IGRA v2 station list (``igra2-station-list.txt``) [4].

    Parameters
    ----------
    path : str or path-like
        Plain, ``.gz`` or ``.zip`` file in the fixed-width layout of ``igra2-list-format.txt``.

    Returns
    -------
    pandas.DataFrame
        One row per station with columns ``id`` (str), ``lat`` (degrees_north), ``lon``
        (degrees_east, [-180, 180]), ``elevation`` (m), ``state`` (str, '' outside the USA),
        ``name`` (str), ``first_year``, ``last_year``, ``nobs`` (int) and ``mobile`` (bool).
        Missing elevations (-999.9) and the coordinates of mobile stations (-98.8888, -998.8888,
        -998.8) are NaN.

    Raises
    ------
    FormatError
        If a record does not follow the layout (the line number is given).
    """
    path = _existing(path, "path")
    lines = fx.to_lines(fx.read_bytes(path), 88)
    mat = lines.mat
    fields = {"lat": (13, 20), "lon": (22, 30), "elevation": (32, 37)}
    out: dict[str, np.ndarray] = {"id": fx.parse_chars(mat, 1, 11)}
    bad = lines.tail | ~fx.blank_cols(mat, (12, 21, 31, 38, 41, 72, 77, 82)) | (out["id"] == "")
    for name, (a, b) in fields.items():
        txt = fx.parse_chars(mat, a, b)
        val = pd.to_numeric(pd.Series(txt), errors="coerce").to_numpy(dtype=float)
        bad |= ~np.isfinite(val)
        out[name] = val
    out["state"] = fx.parse_chars(mat, 39, 40)
    out["name"] = fx.parse_chars(mat, 42, 71)
    for name, (a, b) in {"first_year": (73, 76), "last_year": (78, 81), "nobs": (83, 88)}.items():
        val, ok, _ = fx.parse_int(mat, a, b)
        bad |= ~ok
        out[name] = val
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FormatError(
            f"path={str(path)!r}: line {i + 1} is not a station record in the layout of "
            f"igra2-list-format.txt ({int(bad.sum())} bad lines); pass an IGRA v2 station list."
        )
    mobile = out["lat"] == -98.8888
    out["mobile"] = mobile
    out["lat"] = np.where(mobile, np.nan, out["lat"])
    out["lon"] = np.where(mobile | (out["lon"] == -998.8888), np.nan, out["lon"])
    out["elevation"] = np.where(np.isin(out["elevation"], (-999.9, -998.8)), np.nan,
                                out["elevation"])
    cols = ["id", "lat", "lon", "elevation", "state", "name", "first_year", "last_year", "nobs",
            "mobile"]
    return pd.DataFrame({c: out[c] for c in cols})


# --------------------------------------------------------------------------------------------
# sounding files
def read_igra(
    path: PathType | Sequence[PathType],
    *,
    start: object = None,
    end: object = None,
    bbox: Sequence[float] | None = None,
    stations: str | Iterable[str] | None = None,
    on_error: str = "warn",
    kind: str | None = None,
    station_list: pd.DataFrame | PathType | None = None,
) -> pd.DataFrame:
    """Read IGRA v2 sounding files into a tidy DataFrame with one row per level.

    Parameters
    ----------
    path : str, path-like, or sequence of them
        A ``*-data.txt`` or ``*-drvd.txt`` file (plain, ``.gz`` or ``.zip``), a directory holding
        such files (named ``<ID>-data.txt[.gz|.zip]``), or a list of files/directories.
    start, end : datetime-like, optional
        Keep soundings whose nominal ``time`` lies in ``[start, end]`` (inclusive, UTC).
    bbox : (lon_min, lat_min, lon_max, lat_max), optional
        Keep soundings inside this box (degrees; either longitude convention; ``lon_min >
        lon_max`` crosses the antimeridian), see :func:`in_bbox`.
    stations : str or iterable of str, optional
        Keep only these IGRA station ids (e.g. ``"AUM00011035"``).
    on_error : {"warn", "raise", "ignore"}
        What to do with truncated or malformed soundings: every complete sounding is kept and the
        others are dropped with one :class:`IgraFormatWarning` per file naming station, date and
        line number (``"warn"``), dropped silently (``"ignore"``), or a :class:`FormatError` is
        raised (``"raise"``). Each problem is also listed in ``df.attrs["igra_problems"]``.
    kind : {"data", "derived"}, optional
        Format; detected from the first header record when omitted. Required for a directory
        holding both kinds of file.
    station_list : DataFrame or path, optional
        Station list (:func:`read_station_list`) used to fill ``lat``/``lon`` of derived files,
        whose headers carry no coordinates. Ignored for the data format.

    Returns
    -------
    pandas.DataFrame
        One row per level, soundings in file order, levels in file order. Columns:

        - ``station`` (str), ``sounding`` (int, running index of the sounding in this frame),
          ``time`` (nominal UTC from date and hour, datetime64[ns]; for hour 99 the release
          time; NaT when both are missing), ``release_time`` (datetime64[ns], NaT if missing;
          the day is chosen so that it lies within 12 h of the nominal time), ``lat``, ``lon``
          (degrees; data format: header values / 1e4);
        - ``lvltyp1`` (1 standard, 2 other pressure, 3 non-pressure level), ``lvltyp2`` (1
          surface, 2 tropopause, 0 other), ``etime`` (s since launch), ``pressure`` (Pa),
          ``gph`` (geopotential height, m), ``temperature`` (K), ``rh`` (%), ``dpdp`` (dewpoint
          depression, K), ``wdir`` (degrees, direction the wind blows from), ``wspd`` (m/s),
          ``u``, ``v`` (m/s, eastward and northward);
        - data format: ``pflag``, ``zflag``, ``tflag`` ('' not checked, 'A' tier-1, 'B' tier-1
          and tier-2 climatology checks passed), ``qc_removed`` (bit mask of values removed by
          IGRA QC, -8888 in the file; bits in ``QC_BITS``), ``p_src``, ``np_src``;
        - derived format: ``gph_calc``, ``rh_calc`` and the other derived parameters in SI-like
          units (``vappress``, ``satvap`` in hPa; gradients per km) and the header parameters
          (``pw`` in mm, ``cape``, ``cin`` in J/kg, ...); ``lvltyp1`` is inferred from the
          pressure, ``lvltyp2`` is 1 for the first (surface) level, flags are ''.

        Missing values (-9999, -8888, -99999) are NaN. ``df.attrs["igra_format"]`` is "data" or
        "derived" and ``df.attrs["igra_problems"]`` lists dropped soundings.

    Raises
    ------
    FormatError
        A file that is not IGRA (no header record) or, with ``on_error="raise"``, a truncated or
        malformed sounding.
    ArgumentError
        Bad filters, ``on_error`` or ``kind``, or files of both formats mixed.

    References
    ----------
    .. [1] NOAA NCEI, "IGRA v2.2 Format Description: Sounding Data", igra2-data-format.txt.
    """
    if on_error not in ("warn", "raise", "ignore"):
        raise ArgumentError(f"on_error={on_error!r} is not valid; use 'warn', 'raise' or 'ignore'.")
    if kind not in (None, "data", "derived"):
        raise ArgumentError(f"kind={kind!r} is not valid; use None, 'data' or 'derived'.")
    filt = _Filters.make(start, end, bbox, stations)
    files, kind = _collect_files(path, kind, filt.stations)
    blocks, problems, kinds = [], [], set()
    offset = 0
    for f in files:
        block, probs, fkind = _read_one(f, kind, filt, on_error)
        kinds.add(fkind)
        problems += probs
        if block is not None:
            block["sounding"] = block["sounding"] + offset
            offset += int(block["n_soundings"])
            blocks.append(block)
    if len(kinds) > 1:
        raise ArgumentError(
            f"path={path!r} mixes data and derived files; pass kind='data' or kind='derived'."
        )
    fmt = kinds.pop() if kinds else (kind or "data")
    df = _assemble(blocks, fmt)
    if fmt == "derived" and filt.bbox is not None and station_list is None:
        raise ArgumentError(
            "bbox needs coordinates, which derived files lack; pass station_list=."
        )
    if fmt == "derived":
        df = _fill_coordinates(df, station_list)
        if filt.bbox is not None:
            df = df[in_bbox(df["lat"].to_numpy(), df["lon"].to_numpy(), filt.bbox)]
            df = df.reset_index(drop=True)
    df.attrs["igra_format"] = fmt
    df.attrs["igra_problems"] = problems
    return df


def read_igra_derived(path: PathType | Sequence[PathType], **kwargs: object) -> pd.DataFrame:
    """Read IGRA v2 derived-parameter files (``*-drvd.txt``); :func:`read_igra` with
    ``kind="derived"``. See :func:`read_igra` for parameters and columns.

    References
    ----------
    .. [1] NOAA NCEI, "IGRA v2.2 Format Description: Derived Parameters".
    """
    return read_igra(path, kind="derived", **kwargs)  # type: ignore[arg-type]


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
# internals of the reader
@dataclass(frozen=True)
class _Filters:
    start: np.datetime64 | None
    end: np.datetime64 | None
    bbox: tuple[float, float, float, float] | None
    stations: frozenset[str] | None

    @staticmethod
    def make(start: object, end: object, bbox: object, stations: object) -> _Filters:
        t0 = _to_ns(start, "start")
        t1 = _to_ns(end, "end")
        if t0 is not None and t1 is not None and t1 < t0:
            raise ArgumentError(f"end={end!r} is before start={start!r}; swap them.")
        box = None if bbox is None else _check_bbox(bbox)
        if stations is None:
            ids = None
        else:
            ids = frozenset([stations] if isinstance(stations, str) else map(str, stations))
        return _Filters(t0, t1, box, ids)


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


def _existing(path: object, name: str) -> Path:
    p = Path(path)  # type: ignore[arg-type]
    if not p.exists():
        raise ArgumentError(f"{name}={str(path)!r} does not exist; pass an existing file.")
    return p


def _collect_files(
    path: object, kind: str | None, stations: frozenset[str] | None
) -> tuple[list[Path], str | None]:
    items = [path] if isinstance(path, str | PathLike) else list(path)  # type: ignore[arg-type]
    files: list[Path] = []
    for item in items:
        p = _existing(item, "path")
        if not p.is_dir():
            files.append(p)
            continue
        found = sorted(f for f in p.iterdir() if _NAME_RE.match(f.name))
        kinds = {"data" if "-data." in f.name.lower() else "derived" for f in found}
        if kind is None and len(kinds) > 1:
            raise ArgumentError(
                f"path={str(p)!r} holds both data and derived IGRA files; pass kind='data' or "
                "kind='derived'."
            )
        want = kind or (kinds.pop() if kinds else None)
        tag = "-data." if want == "data" else "-drvd."
        files += [f for f in found if tag in f.name.lower()]
        if not found:
            raise ArgumentError(
                f"path={str(p)!r} holds no IGRA files named like 'USM00070026-data.txt[.gz]'."
            )
    if stations is not None:  # skip files of other stations, judged by their standard name
        files = [f for f in files if not _NAME_RE.match(f.name) or f.name[:11] in stations]
    return files, kind


def _detect(data: bytes, path: Path) -> str:
    i = data.find(b"#")
    if i < 0:
        raise FormatError(
            f"path={str(path)!r} has no header record (a line starting with '#'); it is not an "
            "IGRA v2 sounding file."
        )
    j = data.find(b"\n", i)
    head = data[i : (len(data) if j < 0 else j)].rstrip()
    return "derived" if len(head) > 100 else "data"


def _read_one(
    path: Path, kind: str | None, filt: _Filters, on_error: str
) -> tuple[dict | None, list[dict], str]:
    data = fx.read_bytes(path)
    fkind = _detect(data, path)
    if kind is not None and fkind != kind:
        raise FormatError(
            f"path={str(path)!r} is in the IGRA {fkind} format, not {kind}; pass kind={fkind!r}."
        )
    lay = _LAYOUTS[fkind]
    lines = fx.to_lines(data, lay.width)
    block, problems = _parse(lines, lay, filt, path)
    _report(problems, path, on_error)
    return block, problems, fkind


def _parse(lines: fx.Lines, lay: _Layout, filt: _Filters, path: Path) -> tuple[dict, list[dict]]:
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
    lev, lev_bad = _parse_levels(mat[rows], lines.tail[rows], lay)
    bad_snd, first = np.unique(owner[lev_bad], return_index=True)
    status[bad_snd] = 4
    bad_line = np.full(len(heads), -1)
    bad_line[bad_snd] = rows[lev_bad][first]
    for k in np.flatnonzero(status):
        problems.append(_status_problem(path, h, heads, gap, k, status[k], bad_line))
    keep = (status == 0) & _header_filter(h, filt)
    keep_rows = keep[owner]
    lev = {k: v[keep_rows] for k, v in lev.items()}
    hsel = {k: v[keep] for k, v in h.items()}
    counts = np.bincount(owner[keep_rows], minlength=len(heads))[keep]
    block = _expand(hsel, counts, lev, lay)
    block["n_soundings"] = int(keep.sum())
    return block, problems


def _parse_headers(mat: np.ndarray, tail: np.ndarray, lay: _Layout) -> dict[str, np.ndarray]:
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
    mat: np.ndarray, tail: np.ndarray, lay: _Layout
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ok = ~tail & fx.blank_cols(mat, lay.level_blank)
    ok &= (mat[:, lay.level_width :] == 32).all(axis=1)
    vals, valid, _ = fx.parse_ints(mat, lay.level_ints)
    out: dict[str, np.ndarray] = dict(vals)
    ok &= np.logical_and.reduce(list(valid.values()))
    for name, c in lay.level_flags:
        code = mat[:, c - 1]
        ok &= np.isin(code, list(_FLAG_CODES))
        out[name] = code
    if lay.kind == "data":
        ok &= np.isin(out["lvltyp1"], (1, 2, 3)) & np.isin(out["lvltyp2"], (0, 1, 2))
    return out, ~ok


def _header_filter(h: dict[str, np.ndarray], filt: _Filters) -> np.ndarray:
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


def _expand(h: dict, counts: np.ndarray, lev: dict, lay: _Layout) -> dict[str, np.ndarray]:
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


def _assemble(blocks: list[dict], fmt: str) -> pd.DataFrame:
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


def _fill_coordinates(df: pd.DataFrame, station_list: object) -> pd.DataFrame:
    if station_list is None:
        return df
    sl = station_list if isinstance(station_list, pd.DataFrame) else read_station_list(
        station_list)  # type: ignore[arg-type]
    if not {"id", "lat", "lon"} <= set(sl.columns):
        raise ArgumentError(
            "station_list must have columns id, lat, lon; pass read_station_list(path)."
        )
    coords = sl.drop_duplicates("id").set_index("id")
    df["lat"] = df["station"].map(coords["lat"]).astype(float).to_numpy()
    df["lon"] = df["station"].map(coords["lon"]).astype(float).to_numpy()
    return df


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


def _report(problems: list[dict], path: Path, on_error: str) -> None:
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


# --------------------------------------------------------------------------------------------
# writer
def write_igra(df: pd.DataFrame, path: PathType) -> None:
    """Write soundings in the official IGRA v2 sounding-data format [2].

    Parameters
    ----------
    df : pandas.DataFrame
        Rows in the schema of :func:`read_igra` (one row per level). Required columns:
        ``station``, ``time``, ``lat``, ``lon``, ``pressure``; optional (blank/missing when
        absent or NaN): ``release_time``, ``gph``, ``temperature``, ``rh``, ``dpdp``, ``wdir``,
        ``wspd`` (or ``u`` and ``v``), ``etime``, ``lvltyp1``, ``lvltyp2`` (inferred from the
        pressure), ``pflag``, ``zflag``, ``tflag``, ``qc_removed`` (written as -8888),
        ``p_src``, ``np_src``. Soundings are the ``sounding`` groups when that column exists,
        else groups of (station, time, release_time, lat, lon), in order of appearance.
    path : str or path-like
        Output file, gzip-compressed when it ends with ``.gz``.

    Notes
    -----
    Values are rounded to the format's precision (0.1 K, 0.1 %, 0.1 m/s, 1 Pa, 1 m, 1e-4
    degrees, 1 minute). A ``time`` that is not a whole hour is written as hour 99 with the
    release time, which is how :func:`read_igra` reads it back.

    Raises
    ------
    ArgumentError
        Missing columns, NaN coordinates or station ids longer than 11 characters.
    FormatError
        A value that does not fit its columns.
    """
    _check_write_input(df)
    gid = _sounding_ids(df)
    order = np.argsort(gid, kind="stable")
    d = df.iloc[order].reset_index(drop=True)
    gid = gid[order]
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    counts = np.diff(np.r_[starts, len(gid)])
    head = _format_headers(d.iloc[starts], counts)
    levels = _format_levels(d)
    out = np.empty(len(head) + len(levels), dtype=object)
    hpos = starts + np.arange(len(starts))
    mask = np.zeros(len(out), dtype=bool)
    mask[hpos] = True
    out[mask] = head
    out[~mask] = levels
    text = ("\n".join(out.tolist()) + "\n").encode("ascii")  # one join, no loop over rows
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.GzipFile(path, "wb", mtime=0) as fh:
            fh.write(text)
    else:
        path.write_bytes(text)


def _check_write_input(df: pd.DataFrame) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ArgumentError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    missing = {"station", "time", "lat", "lon", "pressure"} - set(df.columns)
    if missing:
        raise ArgumentError(
            f"df lacks columns {sorted(missing)}; write_igra needs the schema of read_igra."
        )
    if not (np.isfinite(df["lat"]).all() and np.isfinite(df["lon"]).all()):
        raise ArgumentError("df has NaN lat/lon; fill them (e.g. from read_station_list).")
    long_ids = df["station"].astype(str).str.len() > 11
    if long_ids.any():
        raise ArgumentError(
            f"station={df['station'][long_ids].iloc[0]!r} is longer than 11 characters, the "
            "width of the IGRA ID field; shorten it."
        )


def _sounding_ids(df: pd.DataFrame) -> np.ndarray:
    if "sounding" in df:
        return pd.factorize(df["sounding"])[0]
    keys = [c for c in ("station", "time", "release_time", "lat", "lon") if c in df]
    return df.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()


def _col(df: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name in df:
        return df[name].to_numpy(dtype=float, na_value=np.nan)
    return np.full(len(df), default)


def _chars(df: pd.DataFrame, name: str, width: int) -> np.ndarray:
    if name not in df:
        return np.full(len(df), " " * width)
    s = df[name].fillna("").astype(str).str.slice(0, width).str.ljust(width)
    return s.to_numpy(dtype=f"U{width}")


def _format_headers(h: pd.DataFrame, counts: np.ndarray) -> np.ndarray:
    t = h["time"].to_numpy(dtype="datetime64[ns]")
    rel = (h["release_time"].to_numpy(dtype="datetime64[ns]") if "release_time" in h
           else np.full(len(h), np.datetime64("NaT", "ns")))
    whole = ~np.isnat(t) & (t == t.astype("datetime64[h]"))
    ref = np.where(whole, t, rel)  # date on the header: of the nominal time, else of the release
    if np.isnat(ref).any():
        raise ArgumentError("df has soundings with no time and no release_time; set 'time'.")
    day = ref.astype("datetime64[D]")
    ymd = pd.DatetimeIndex(day)
    hour = np.where(whole, (t - t.astype("datetime64[D]")).astype("timedelta64[h]")
                    .astype(np.int64), 99)
    nat = np.isnat(rel)
    rel_min = np.where(nat, 0, (rel - rel.astype("datetime64[D]")).astype("timedelta64[m]")
                       .astype(np.int64))
    reltime = np.where(nat, 9999, (rel_min // 60) * 100 + rel_min % 60)
    f = fx.format_int
    parts = [
        np.full(len(h), "#"), _chars(h, "station", 11), np.full(len(h), " "),
        f(ymd.year, 4, "year"), np.full(len(h), " "), f(ymd.month, 2, "month", True),
        np.full(len(h), " "), f(ymd.day, 2, "day", True), np.full(len(h), " "),
        f(hour, 2, "hour", True), np.full(len(h), " "),
        f(reltime, 4, "reltime", True), np.full(len(h), " "),
        f(counts, 4, "numlev"), np.full(len(h), " "), _chars(h, "p_src", 8),
        np.full(len(h), " "), _chars(h, "np_src", 8), np.full(len(h), " "),
        f(np.round(_col(h, "lat") * 1e4), 7, "lat"), np.full(len(h), " "),
        f(np.round(_col(h, "lon") * 1e4), 8, "lon"),
    ]
    return _join(parts)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    out = np.asarray(parts[0], dtype=str)
    for p in parts[1:]:
        out = np.char.add(out, np.asarray(p, dtype=str))
    return out


def _coded(values: np.ndarray, removed: np.ndarray, width: int, name: str) -> np.ndarray:
    """Integer field with -9999 for NaN and -8888 where removed by QC."""
    code = np.where(removed, -8888, np.where(np.isfinite(values), np.round(values), -9999))
    return fx.format_int(code.astype(np.int64), width, name)


def _format_levels(d: pd.DataFrame) -> np.ndarray:
    qc = _col(d, "qc_removed", 0).astype(np.int64)
    rm = {k: (qc & b) > 0 for k, b in QC_BITS.items()}
    p = _col(d, "pressure")
    wdir, wspd = _col(d, "wdir"), _col(d, "wspd")
    if "u" in d and "v" in d:  # fill direction/speed from components where absent
        wd2, ws2 = wind_direction_speed(_col(d, "u"), _col(d, "v"))
        wdir = np.where(np.isnan(wdir), wd2, wdir)
        wspd = np.where(np.isnan(wspd), ws2, wspd)
    std = np.isin(p, np.asarray(STANDARD_LEVELS_HPA) * 100.0)
    typ1 = _col(d, "lvltyp1", np.nan)
    typ1 = np.where(np.isfinite(typ1), typ1, np.where(std, 1, np.where(np.isfinite(p), 2, 3)))
    typ2 = np.nan_to_num(_col(d, "lvltyp2", 0), nan=0)
    et = _col(d, "etime")
    et_code = np.where(np.isfinite(et), (np.round(et) // 60) * 100 + np.round(et) % 60, np.nan)
    sp = np.full(len(d), " ")
    f = fx.format_int
    parts = [
        f(typ1, 1, "lvltyp1"), f(typ2, 1, "lvltyp2"), sp, _coded(et_code, rm["etime"], 5, "etime"),
        sp, _coded(p, rm["pressure"], 6, "pressure"), _flag(d, "pflag"),
        _coded(_col(d, "gph"), rm["gph"], 5, "gph"), _flag(d, "zflag"),
        _coded((_col(d, "temperature") - 273.15) * 10, rm["temperature"], 5, "temperature"),
        _flag(d, "tflag"), _coded(_col(d, "rh") * 10, rm["rh"], 5, "rh"), sp,
        _coded(_col(d, "dpdp") * 10, rm["dpdp"], 5, "dpdp"), sp,
        _coded(wdir, rm["wdir"], 5, "wdir"), sp, _coded(wspd * 10, rm["wspd"], 5, "wspd"),
    ]
    return _join(parts)


def _flag(d: pd.DataFrame, name: str) -> np.ndarray:
    if name not in d:
        return np.full(len(d), " ")
    s = d[name].fillna("").astype(str)
    bad = ~s.isin(["", " ", "A", "B"])
    if bad.any():
        raise ArgumentError(f"{name}={s[bad].iloc[0]!r} is not an IGRA flag; use '', 'A' or 'B'.")
    return s.replace("", " ").to_numpy(dtype="U1")
