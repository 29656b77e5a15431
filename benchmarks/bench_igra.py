"""Throughput of the vectorised IGRA v2 reader against a naive line-by-line parser.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_igra.py [path/to/AUM00011035-data.txt.gz] [--repeat 5]

Both parsers read the same file in the same run (gzip decompression included); the table gives
the best of ``--repeat`` runs and levels per second. The baseline is written here on purpose: it
loops over lines in Python with string slicing and ``int()``, as most ad-hoc IGRA scripts do.
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from xdiffsr.io.igra import read_igra, write_igra

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "igra" / \
    "AUM00011035-data.txt.gz"


def _val(line: str, a: int, b: int, scale: float = 1.0, off: float = 0.0) -> float:
    v = int(line[a:b])
    return np.nan if v in (-9999, -8888) else v * scale + off


def naive_read(path: Path) -> pd.DataFrame:
    """Line-by-line baseline: header fields and level fields by slicing, one row per level."""
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                station = line[1:12]
                t = pd.Timestamp(int(line[13:17]), int(line[18:20]), int(line[21:23]),
                                 int(line[24:26]))
                lat, lon = int(line[55:62]) / 1e4, int(line[63:71]) / 1e4
                continue
            wdir, wspd = _val(line, 40, 45), _val(line, 46, 51, 0.1)
            rows.append((station, t, lat, lon, _val(line, 9, 15), _val(line, 16, 21),
                         _val(line, 22, 27, 0.1, 273.15), _val(line, 28, 33, 0.1),
                         _val(line, 34, 39, 0.1), wdir, wspd,
                         -wspd * np.sin(np.radians(wdir)), -wspd * np.cos(np.radians(wdir))))
    cols = ["station", "time", "lat", "lon", "pressure", "gph", "temperature", "rh", "dpdp",
            "wdir", "wspd", "u", "v"]
    return pd.DataFrame(rows, columns=cols)


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not args.path.is_file():
        raise SystemExit(f"{args.path} not found; pass the path of an IGRA data file.")
    t_vec, df = best_of(lambda: read_igra(args.path), args.repeat)
    t_naive, ref = best_of(lambda: naive_read(args.path), args.repeat)
    for c in ("pressure", "gph", "temperature", "rh", "dpdp", "wdir", "wspd", "u", "v"):
        np.testing.assert_allclose(df[c].to_numpy(), ref[c].to_numpy(), rtol=1e-12, err_msg=c)
    out = Path("/tmp") / "bench_igra_roundtrip-data.txt.gz"
    t_write, _ = best_of(lambda: write_igra(df, out), args.repeat)
    n = len(df)
    print(f"file: {args.path.name}: {df['sounding'].nunique()} soundings, {n} levels "
          f"(best of {args.repeat})")
    print(f"{'parser':<34}{'time [ms]':>12}{'levels/s':>14}{'speed-up':>10}")
    for name, t in (("naive line-by-line (this file)", t_naive),
                    ("xdiffsr.io.igra.read_igra", t_vec),
                    ("xdiffsr.io.igra.write_igra (gz)", t_write)):
        print(f"{name:<34}{t * 1e3:>12.1f}{n / t:>14,.0f}{t_naive / t:>9.1f}x")


if __name__ == "__main__":
    main()
