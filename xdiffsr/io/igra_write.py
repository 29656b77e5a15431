"""Writer of the IGRA v2 sounding-data format (:func:`write_igra`) and its formatting helpers.

Soundings in the schema of :func:`xdiffsr.io.igra.read_igra` are formatted column by column
(vectorised, one join per file) and written plain or gzip-compressed; :func:`write_igra` is
re-exported by :mod:`xdiffsr.io.igra`.

References
----------
.. [2] NOAA NCEI, "IGRA v2.2 Format Description: Sounding Data", igra2-data-format.txt (2023).
"""

from __future__ import annotations

import gzip
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from xdiffsr.errors import ArgumentError
from xdiffsr.io import igra_fixed as fx
from xdiffsr.io.igra_parse import QC_BITS, STANDARD_LEVELS_HPA, wind_direction_speed

__all__ = ["write_igra"]

PathType = str | PathLike


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
