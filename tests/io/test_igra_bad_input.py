"""IGRA files that are damaged or odd: typed errors naming the file (corrupted or truncated gzip,
bad zip, non-ASCII bytes), and odd level records skipped alone with a warning, the sounding
kept."""

from __future__ import annotations

import gzip
import io
import itertools
import warnings
import zipfile

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from xdiffsr.errors import FormatError
from xdiffsr.io.igra import IgraFormatWarning, read_igra, read_station_list

DATA = SHARED_DATA / "igra"
VIENNA = DATA / "AUM00011035-data.txt.gz"
UTQ = DATA / "USM00070026-data.txt"
LIST = DATA / "igra2-station-list-v2.2.txt"
needs_data = pytest.mark.skipif(
    not VIENNA.is_file(), reason=f"IGRA sample files not found at {DATA} (../shared/data/igra)"
)
HEAD = "#USM00070026 2010 06 01 00 2303 {n:4d} ncdc6301 ncdc6301  712889 -1567833"
L1 = "21     0 100980B   12     0B 1000     0    20    51 "
L2 = "10    12 100000    90B   -7B  936     9 -9999 -9999 "


def _soundings(n: int) -> list[list[str]]:
    """The first ``n`` soundings of the real Vienna file, each a list of lines (header first)."""
    lines = gzip.decompress(VIENNA.read_bytes()).decode("ascii").splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("#")][: n + 1]
    return [lines[a:b] for a, b in itertools.pairwise(heads)]


def _write(path, soundings) -> None:
    path.write_text("\n".join(line for s in soundings for line in s) + "\n")


# ------------------------------------------------------------------------------------------
# odd level records: skipped alone, sounding kept
@needs_data
def test_odd_level_records_skip_the_record_not_the_sounding(tmp_path):
    snd = _soundings(4)
    n_levels = sum(len(s) - 1 for s in snd)
    snd[1][5] = "4" + snd[1][5][1:]  # unknown LVLTYP1 (only 1, 2, 3 exist)
    snd[2][3] = "23" + snd[2][3][2:]  # unknown LVLTYP2 (only 0, 1, 2 exist)
    snd[3][7] = "20" + " " * 49  # every value blank
    p = tmp_path / "AUM00011035-data.txt"
    _write(p, snd)
    with pytest.warns(IgraFormatWarning, match="3 level record") as rec:
        df = read_igra(p)
    msg = " ".join(str(w.message) for w in rec)
    line1 = len(snd[0]) + 6  # 1-based file line of snd[1][5]
    assert f"AUM00011035 {snd[1][0][13:26]} line {line1}: unknown level type" in msg
    assert "every value blank or missing" in msg and "soundings were kept" in msg
    assert df["sounding"].nunique() == 4 and df.attrs["igra_problems"] == []
    assert len(df) == n_levels - 3
    assert df.attrs["igra_skipped_records"][0]["line"] == line1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_igra(p, on_error="ignore")
    with pytest.raises(FormatError, match=rf"line {line1}: unknown level type"):
        read_igra(p, on_error="raise")


@needs_data
def test_odd_record_keeps_every_other_level_of_its_sounding(tmp_path):
    snd = _soundings(2)
    _write(tmp_path / "a-data.txt", snd)
    good = read_igra(tmp_path / "a-data.txt")
    snd[1][2] = "9" + snd[1][2][1:]
    _write(tmp_path / "b-data.txt", snd)
    with pytest.warns(IgraFormatWarning, match="unknown level type"):
        odd = read_igra(tmp_path / "b-data.txt")
    expect = good.drop(index=len(snd[0]) - 1 + 1).reset_index(drop=True)
    np.testing.assert_array_equal(odd["pressure"].to_numpy(), expect["pressure"].to_numpy())


def test_shifted_record_still_drops_its_sounding(tmp_path):
    p = tmp_path / "x-data.txt"
    p.write_text("\n".join([HEAD.format(n=2), L1, " " + L2[:-1]]) + "\n")
    with pytest.warns(IgraFormatWarning, match="malformed level record at line 3"):
        df = read_igra(p)
    assert len(df) == 0


# ------------------------------------------------------------------------------------------
# damaged files: FormatError naming the file
def _gz(tmp_path, data: bytes):
    p = tmp_path / "USM00070026-data.txt.gz"
    p.write_bytes(data)
    return p


def test_not_gzip(tmp_path):
    p = _gz(tmp_path, b"this is not gzip\n")
    with pytest.raises(FormatError, match=r"USM00070026-data\.txt\.gz.*gzip.*download it again"):
        read_igra(p)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(("\n".join([HEAD.format(n=2), L1, L2] * 200) + "\n").encode())
    p = _gz(tmp_path, data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"data\.txt\.gz.*truncated or corrupted"):
        read_igra(p)


def test_corrupted_gzip_stream(tmp_path):
    data = bytearray(gzip.compress(("\n".join([HEAD.format(n=2), L1, L2] * 200) + "\n").encode()))
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    p = _gz(tmp_path, bytes(data))
    with pytest.raises(FormatError, match=r"data\.txt\.gz.*(gzip|truncated or corrupted)"):
        read_igra(p)


def test_bad_zip(tmp_path):
    p = tmp_path / "USM00070026-data.txt.zip"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match=r"data\.txt\.zip.*zip archive"):
        read_igra(p)


def test_zip_with_corrupted_member(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("USM00070026-data.txt", "\n".join([HEAD.format(n=2), L1, L2] * 200))
    data = bytearray(buf.getvalue())
    data[60:70] = b"\x00" * 10
    p = tmp_path / "USM00070026-data.txt.zip"
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"data\.txt\.zip"):
        read_igra(p)


def test_non_ascii_bytes_are_malformed_records(tmp_path):
    p = tmp_path / "x-data.txt"
    h2 = HEAD.replace("06 01 00", "06 01 12")
    lines = [HEAD.format(n=2), L1, L2.replace("936", "9é6"), h2.format(n=2), L1, L2]
    p.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    with pytest.warns(IgraFormatWarning, match="malformed level record at line 3"):
        df = read_igra(p)
    assert df["time"].nunique() == 1 and len(df) == 2
    q = tmp_path / "y-data.txt"
    q.write_bytes(("\n".join([HEAD.format(n=2).replace("USM", "USÄ"), L1, L2]) + "\n").encode())
    with pytest.raises(FormatError, match="malformed header"):
        read_igra(q, on_error="raise")


@needs_data
def test_non_ascii_station_list(tmp_path):
    lines = LIST.read_bytes().splitlines()[:5]
    lines[2] = lines[2][:45] + "\xc3\xa9".encode("latin-1") + lines[2][47:]
    p = tmp_path / "list.txt"
    p.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(FormatError, match="line 3 is not a station record"):
        read_station_list(p)
