"""Integrated Global Radiosonde Archive (IGRA) v2 readers and writer.

Reads the station list, the sounding data files (``*-data.txt``) and the derived-parameter files
(``*-drvd.txt``), plain, ``.gz`` or ``.zip``, one file, a list or a directory, into one tidy
:class:`pandas.DataFrame` with one row per level, in SI units. Parsing is vectorised over the whole
file (see :mod:`xdiffsr.io.igra_fixed`); every field is validated, so a truncated or damaged
sounding is reported (station, date, line number) and dropped instead of being read with shifted
columns.

This module holds the public readers and file handling; the record layouts and vectorised parsing
are in :mod:`xdiffsr.io.igra_parse` and the writer in :mod:`xdiffsr.io.igra_write`, whose public
names are re-exported here. The vertical operator (soundings to model variables such as
``t850``) lives in :mod:`xdiffsr.observations.vertical`.

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

import re
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from xdiffsr.errors import ArgumentError, FormatError
from xdiffsr.io import igra_fixed as fx
from xdiffsr.io.igra_parse import (
    LAYOUTS,
    QC_BITS,
    STANDARD_LEVELS_HPA,
    Filters,
    IgraFormatWarning,
    assemble,
    in_bbox,
    parse_file,
    report_problems,
    report_skipped,
    wind_components,
    wind_direction_speed,
)
from xdiffsr.io.igra_write import write_igra

__all__ = [
    "QC_BITS",
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
_NAME_RE = re.compile(r"^[A-Z0-9]{11}-(data|drvd)\.txt(\.gz|\.zip)?$", re.IGNORECASE)


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
        A well-formed level record of an unknown level type, or whose values are all blank or
        missing, is skipped alone: its sounding is kept, with one warning per file naming
        station, date and line (``"warn"``; ``"raise"`` raises, ``"ignore"`` is silent); such
        records are listed in ``df.attrs["igra_skipped_records"]``.
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
    filt = Filters.make(start, end, bbox, stations)
    files, kind = _collect_files(path, kind, filt.stations)
    blocks, problems, skipped, kinds = [], [], [], set()
    offset = 0
    for f in files:
        block, probs, fkind = _read_one(f, kind, filt, on_error)
        kinds.add(fkind)
        problems += probs
        if block is not None:
            block["sounding"] = block["sounding"] + offset
            offset += int(block["n_soundings"])
            skipped += block["skipped"]
            blocks.append(block)
    if len(kinds) > 1:
        raise ArgumentError(
            f"path={path!r} mixes data and derived files; pass kind='data' or kind='derived'."
        )
    fmt = kinds.pop() if kinds else (kind or "data")
    df = assemble(blocks, fmt)
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
    df.attrs["igra_skipped_records"] = skipped
    return df


def read_igra_derived(path: PathType | Sequence[PathType], **kwargs: object) -> pd.DataFrame:
    """Read IGRA v2 derived-parameter files (``*-drvd.txt``); :func:`read_igra` with
    ``kind="derived"``. See :func:`read_igra` for parameters and columns.

    References
    ----------
    .. [1] NOAA NCEI, "IGRA v2.2 Format Description: Derived Parameters".
    """
    return read_igra(path, kind="derived", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# files
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
    path: Path, kind: str | None, filt: Filters, on_error: str
) -> tuple[dict | None, list[dict], str]:
    data = fx.read_bytes(path)
    fkind = _detect(data, path)
    if kind is not None and fkind != kind:
        raise FormatError(
            f"path={str(path)!r} is in the IGRA {fkind} format, not {kind}; pass kind={fkind!r}."
        )
    lay = LAYOUTS[fkind]
    lines = fx.to_lines(data, lay.width)
    block, problems = parse_file(lines, lay, filt, path)
    report_problems(problems, path, on_error)
    report_skipped(block["skipped"], path, on_error)
    return block, problems, fkind


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
