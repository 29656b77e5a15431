"""The rows next to the poles: members' zonal variance against the truth's, and how much of it
lies above the band limit of T42 fields (issue 24).

Reads the guided members that ``bench_prior.py`` writes (``NAME-guided.nc``) and the truth
they reconstruct, and prints per variable and row (counted from each pole, both pooled): the
zonal standard deviation of members and truth, and the share of their zonal (eddy) variance at
wavenumbers above ``ceil(N cos(lat)) + 1`` (:mod:`xdiffsr.core.zonal`).

    PYTHONPATH=. python benchmarks/bench_polar_rows.py --guided ev/v3-guided.nc \
        --truth nature-seed1.zarr --variables z500 z250 t850 u500
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.core.zonal import kept_wavenumbers


def row_table(members: xr.DataArray, truth: xr.DataArray, truncation: int,
              rows: int = 4) -> pd.DataFrame:
    """Per row from the poles: zonal std (members, truth) and eddy variance above the limit."""
    lat = members["lat"].values
    order = np.argsort(lat)
    kept = kept_wavenumbers(lat, truncation)
    out = []
    for r in range(rows):
        idx = [order[r], order[-1 - r]]
        m = members.isel(lat=idx).values
        t = truth.isel(lat=idx).values
        pm = np.abs(np.fft.rfft(m, axis=-1)) ** 2
        pt = np.abs(np.fft.rfft(t, axis=-1)) ** 2
        k = int(kept[idx[0]])
        out.append({
            "row": r, "kept_m": k,
            "zonal_std_members": float(m.std(-1).mean()),
            "zonal_std_truth": float(t.std(-1).mean()),
            "above_share_members": float(pm[..., k + 1:].sum() / pm[..., 1:].sum()),
            "above_share_truth": float(pt[..., k + 1:].sum() / pt[..., 1:].sum()),
        })
    return pd.DataFrame(out).set_index("row")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--guided", required=True, help="NAME-guided.nc of bench_prior.py")
    p.add_argument("--truth", required=True, help="nature-run zarr store")
    p.add_argument("--variables", nargs="+", default=["z500", "z250", "t850", "u500"])
    p.add_argument("--truncation", type=int, default=42)
    args = p.parse_args()
    guided = xr.open_dataset(args.guided)
    truth = xr.open_zarr(args.truth).sel(time=guided["time"])
    pd.set_option("display.width", 160)
    for v in args.variables:
        print(f"\n{v}:")
        print(row_table(guided[v], truth[v].load(), args.truncation).to_string(
            float_format=lambda x: f"{x:.3g}"))


if __name__ == "__main__":
    main()
