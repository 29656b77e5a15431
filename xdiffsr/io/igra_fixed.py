"""Vectorised fixed-width text parsing used by the IGRA v2 readers.

A whole file is turned into a ``(n_lines, width)`` byte matrix with one numpy gather (no Python loop
over lines); every integer field is then decoded column-wise and validated, so that a shifted or
damaged record is detected instead of silently read with shifted columns.

References
----------
.. [1] Durre, I., Yin, X., Vose, R. S., Applequist, S., Arnfield, J. (2018). Enhancing the Data
   Coverage in the Integrated Global Radiosonde Archive. J. Atmos. Oceanic Technol. 35, 1753-1770.
.. [2] NOAA NCEI, "IGRA v2.2 Format Description: Sounding Data" (igra2-data-format.txt, 2023).
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdiffsr.errors import FormatError

_SPACE, _MINUS, _ZERO, _NINE = 32, 45, 48, 57


@dataclass(frozen=True)
class Lines:
    """Lines of a text file as a padded byte matrix.

    Attributes
    ----------
    mat : numpy.ndarray of uint8, shape (n_lines, width)
        Bytes of each line, padded with spaces (``\\r`` removed).
    length : numpy.ndarray of int64, shape (n_lines,)
        Length of each line without its end-of-line characters.
    tail : numpy.ndarray of bool, shape (n_lines,)
        True where the line has non-blank characters beyond ``width``.
    """

    mat: np.ndarray
    length: np.ndarray
    tail: np.ndarray


def read_bytes(path: Path) -> bytes:
    """Return the raw bytes of a plain, ``.gz`` or ``.zip`` (first member) text file."""
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        if name.endswith(".zip"):
            return _read_zip(path)
        return path.read_bytes()
    except (gzip.BadGzipFile, zipfile.BadZipFile, zlib.error, EOFError) as err:
        kind = "zip archive" if name.endswith(".zip") else "gzip file"
        raise FormatError(
            f"path={str(path)!r} is not a readable {kind} ({type(err).__name__}: {err}): it is "
            "truncated or corrupted; download it again."
        ) from err
    except OSError as err:
        raise FormatError(
            f"path={str(path)!r} cannot be read ({err}); pass a readable file."
        ) from err


def _read_zip(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.namelist() if not m.endswith("/")]
        if not members:
            raise FormatError(f"path={str(path)!r}: the zip archive is empty; pass an IGRA "
                              "file.")
        return zf.read(members[0])


def to_lines(data: bytes, width: int) -> Lines:
    """Split ``data`` into lines and pack them into a space-padded byte matrix.

    Splitting and packing run in C (``bytes.split``, a fixed-width ``S`` array); no Python code
    runs per line except for the rare lines longer than ``width`` or holding NUL bytes.

    Parameters
    ----------
    data : bytes
        File content (``\\n`` or ``\\r\\n`` line ends). Trailing blank lines are dropped.
    width : int
        Number of columns kept; longer lines are flagged in ``Lines.tail`` when the extra
        characters are not blank.

    Returns
    -------
    Lines
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    lines = data.split(b"\n")
    while lines and not lines[-1].strip():  # trailing blank lines only
        lines.pop()
    n = len(lines)
    length = np.fromiter(map(len, lines), dtype=np.int64, count=n)
    packed = np.array(lines, dtype=f"S{width}") if n else np.zeros(0, dtype=f"S{width}")
    mat = packed.view(np.uint8).reshape(n, width).copy()
    tail = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(length > width):  # rare: overlong lines
        tail[i] = bool(lines[i][width:].strip())
    if b"\x00" in data:  # NUL bytes would be confused with the padding: flag those lines
        tail |= np.array([b"\x00" in line for line in lines], dtype=bool)
    mat[mat == 0] = _SPACE
    high = mat > 126  # non-ASCII bytes (and DEL): the record is malformed, its text unreadable
    if high.any():
        tail |= high.any(axis=1)
        mat[high] = ord("?")
    return Lines(mat, length, tail)


def parse_ints(
    mat: np.ndarray, fields: tuple[tuple[str, int, int], ...]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Decode right-aligned integer fields, all at once.

    Parameters
    ----------
    mat : numpy.ndarray of uint8, shape (n, width)
    fields : tuple of (name, start, stop)
        1-based inclusive column ranges, as printed in the IGRA format descriptions.

    Returns
    -------
    value, valid, blank : dict of numpy.ndarray, each shape (n,)
        Decoded values (int64, 0 where not valid); True where the field matches
        ``^ *-?[0-9]+$`` (right-aligned, so a shifted field is invalid); True where the field is
        entirely blank.
    """
    wmax = max(b - a + 1 for _, a, b in fields)
    pad = mat.shape[1]  # index of an extra all-blank column used for left padding
    idx = np.full((wmax, len(fields)), pad, dtype=np.int64)
    for k, (_, a, b) in enumerate(fields):
        idx[wmax - (b - a + 1) :, k] = np.arange(a - 1, b)
    cols = np.concatenate([mat.T, np.full((1, len(mat)), _SPACE, dtype=np.uint8)])
    chars = cols[idx]  # (wmax, n_fields, n): fields right-aligned, rows contiguous
    shape = chars.shape[1:]
    val = np.zeros(shape, dtype=np.int32)  # fields have at most 7 characters
    allowed = np.ones(shape, dtype=bool)
    broken = np.zeros(shape, dtype=bool)
    negative = np.zeros(shape, dtype=bool)
    blank = np.ones(shape, dtype=bool)
    prev_used = np.zeros(shape, dtype=bool)
    for c in chars:  # loop over at most 7 character positions, not over rows
        dig = c - np.uint8(_ZERO)
        is_dig = dig < 10
        is_space = c == _SPACE
        is_minus = c == _MINUS
        allowed &= is_dig | is_space | is_minus
        broken |= prev_used & ~is_dig  # after a sign or digit only digits may follow
        prev_used = ~is_space
        negative |= is_minus
        blank &= is_space
        val *= 10
        val += dig * is_dig
    valid = allowed & ~broken & is_dig  # the last character must be a digit
    val = np.where(valid, np.where(negative, -val, val), 0).astype(np.int64)
    names = [f[0] for f in fields]
    return ({n: val[k] for k, n in enumerate(names)},
            {n: valid[k] for k, n in enumerate(names)},
            {n: blank[k] for k, n in enumerate(names)})


def parse_int(mat: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one integer field in 1-based columns ``start``..``stop``; see :func:`parse_ints`."""
    val, valid, blank = parse_ints(mat, (("f", start, stop),))
    return val["f"], valid["f"], blank["f"]


def parse_chars(mat: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Return the stripped text of 1-based columns ``start``..``stop`` as a numpy ``str`` array."""
    sub = np.ascontiguousarray(mat[:, start - 1 : stop])
    raw = sub.view(f"S{sub.shape[1]}").ravel()
    return np.char.strip(raw.astype(f"U{sub.shape[1]}"))


def blank_cols(mat: np.ndarray, cols: tuple[int, ...]) -> np.ndarray:
    """True where every 1-based column in ``cols`` is a space; shape (n,)."""
    if not cols:
        return np.ones(len(mat), dtype=bool)
    return (mat[:, [c - 1 for c in cols]] == _SPACE).all(axis=1)


def format_int(values: np.ndarray, width: int, name: str, zero_pad: bool = False) -> np.ndarray:
    """Right-align integers in fields of ``width`` characters; shape (n,) of ``U{width}``.

    ``zero_pad`` pads non-negative values with zeros (dates and times: ``06``, ``0930``).

    Raises
    ------
    FormatError
        If a value does not fit, which would shift the following columns.
    """
    values = np.asarray(values, dtype=np.int64)
    lo, hi = -(10 ** (width - 1) - 1), 10**width - 1
    bad = (values < lo) | (values > hi)
    if bad.any():
        raise FormatError(
            f"{name}={values[bad][0]} does not fit in {width} columns of the IGRA format "
            f"(allowed {lo}..{hi}); clip or rescale that column before writing."
        )
    text = values.astype(str)
    return np.char.zfill(text, width) if zero_pad else np.char.rjust(text, width)
