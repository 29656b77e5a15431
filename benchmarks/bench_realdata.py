"""A spectral Gaussian prior fitted on a handful of real fields against interpolation (issue 27).

Two cases on real ERA5 samples from ``../shared/data/era5/`` (never copied into the repository):

``ens3``
    The 3-degree 10-member ensemble (t/z at 850 and 500 hPa, 4 times). For each time, the truth
    is member 0; the prior is fitted on every member of the *other* three times only (never on
    the scored time's siblings); the observations are the truth coarsened conservatively by each
    factor, with or without simulated soundings at the IGRA stations active in 2017.
``surface1``
    The 1-degree surface sample (t2m, u10, v10, msl; 24 times): the prior is fitted on the first
    16 times (read lazily), each of the last 8 is coarsened by each factor and reconstructed.

Scores: latitude-weighted RMSE of the 16-member ensemble mean against the truth, the same for
bilinear and bicubic interpolation of the coarse field, and the adjusted spread/skill
``sqrt((M + 1) / M) * spread / RMSE`` (1 for a calibrated ensemble).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_realdata.py ens3 --factors 4 2
    OMP_NUM_THREADS=1 python benchmarks/bench_realdata.py surface1 --factors 4 8
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import xdiffsr
from xdiffsr.io.igra import read_station_list
from xdiffsr.osse.stations import active_stations, simulate_soundings
from xdiffsr.regrid import Regridder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Error variance of the coarse observations per variable (physical units squared): the
#: coarsened truth is exact; a small error keeps the conditioning finite.
COARSE_VAR = {"t": 0.05**2, "z": 5.0**2, "t2m": 0.05**2, "u10": 0.05**2, "v10": 0.05**2,
              "msl": 5.0**2}


def coarse_grid(fine: xr.Dataset, factor: int, lat: str, lon: str) -> xr.Dataset:
    """Global cell-centre grid about ``factor`` times coarser than ``fine``: longitude cells of
    ``factor`` fine cells from the first fine cell's west edge; latitude rows covering 90S-90N
    exactly (``ceil(180 / (factor dlat))`` rows: 7.83 degrees for 8x on 1 degree)."""
    dlat = abs(float(fine[lat][1] - fine[lat][0])) * factor
    dlon = float(fine[lon][1] - fine[lon][0]) * factor
    nlat = int(np.ceil(180.0 / dlat - 1e-9))
    clat = 90.0 - 180.0 / nlat * (np.arange(nlat) + 0.5)
    lon0 = float(fine[lon][0]) - dlon / factor / 2
    clon = lon0 + dlon * (np.arange(round(360.0 / dlon)) + 0.5)
    return xr.Dataset(coords={
        "lat": ("lat", clat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", clon, {"standard_name": "longitude", "units": "degrees_east"})})


def scores(ens: xr.Dataset, truth: xr.Dataset, coarse: xr.Dataset, cg: xr.Dataset,
           lat: str) -> list[dict]:
    """Per variable: RMSE of the ensemble mean, of bilinear and bicubic, spread/skill."""
    coslat = np.cos(np.deg2rad(truth[lat].values))[:, None]
    interp = {m: Regridder(cg, truth, method=m) for m in ("bilinear", "bicubic")}
    rows = []
    for v in truth.data_vars:
        tr = truth[v].values
        e = ens[v].isel(time=0).transpose("member", ...).values
        M = e.shape[0]
        ok = np.isfinite(tr) & np.isfinite(e).all(0)
        base = {m: r(coarse[v].isel(time=0)).values for m, r in interp.items()}
        for b in base.values():
            ok &= np.isfinite(b)

        w = np.broadcast_to(coslat, tr.shape)

        def rmse(a, ok=ok, tr=tr, w=w):
            return float(np.sqrt((w * (a - tr) ** 2)[ok].sum() / w[ok].sum()))

        err = rmse(e.mean(0))
        spread = float(np.sqrt((w * e.var(0, ddof=1))[ok].sum() / w[ok].sum()))
        rows.append({"variable": v, "ensemble mean": err, "bilinear": rmse(base["bilinear"]),
                     "bicubic": rmse(base["bicubic"]),
                     "spread/skill": np.sqrt((M + 1) / M) * spread / err})
    return rows


def _observe(truth: xr.Dataset, cg: xr.Dataset, t0, units: dict) -> xr.Dataset:
    coarse = Regridder(truth, cg, method="conservative")(truth).expand_dims(time=[t0])
    for v in coarse.data_vars:
        coarse[v].attrs["units"] = units[v]
    return coarse


def _run(prior, obs, t0, members: int, steps: int, guidance: str) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.Dataset(coords={"time": [t0]}).diffsr.super_resolve(
            obs=obs, model=prior, members=members, steps=steps, guidance=guidance, seed=0)


def ens3(args) -> pd.DataFrame:
    era5 = xr.open_dataset(DATA / "era5" / "era5_ens10_3deg_z_t_2017-01.nc")
    flat = xr.Dataset({f"{v}{int(p)}": era5[v].sel(isobaricInhPa=p, drop=True)
                       for v in ("t", "z") for p in era5.isobaricInhPa.values})
    flat = flat.drop_vars(["valid_time", "step"], errors="ignore")
    units = {v: flat[v].attrs.get("units", "K" if v[0] == "t" else "m2 s-2") for v in flat}
    stations = active_stations(read_station_list(DATA / "igra" / "igra2-station-list-v2.2.txt"),
                               2017)
    rows = []
    for t0 in flat.time.values:
        truth = flat.sel(time=t0, number=0, drop=True)
        prior = xdiffsr.GaussianPrior.fit(flat.sel(time=flat.time != t0), covariance="spectral",
                                          dim=("time", "number"), mean=args.mean)
        truth_t = truth.expand_dims(time=[t0]).rename(latitude="lat", longitude="lon")
        sondes = simulate_soundings(truth_t, stations, seed=0)
        for f in args.factors:
            cg = coarse_grid(truth, f, "latitude", "longitude")
            coarse = _observe(truth, cg, t0, units)
            grid_obs = xdiffsr.GridObservations(
                coarse, sigma_y={v: COARSE_VAR[v[0]] for v in coarse.data_vars})
            for with_sondes in (False, True):
                obs = [grid_obs, sondes] if with_sondes else [grid_obs]
                tic = time.perf_counter()
                ens = _run(prior, obs, t0, args.members, args.steps, args.guidance)
                sec = time.perf_counter() - tic
                for r in scores(ens, truth, coarse, cg, "latitude"):
                    rows.append({"time": str(pd.Timestamp(t0))[:13], "factor": f,
                                 "sondes": "yes" if with_sondes else "no", **r, "s": sec})
                    print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def surface1(args) -> pd.DataFrame:
    ds = xr.open_zarr(DATA / "era5" / "era5_global_1deg_2026-03.zarr", consolidated=False)
    ds = ds[["t2m", "u10", "v10", "msl"]]
    hours = pd.Timestamp("1940-01-01") + pd.to_timedelta(ds.time_index.values, unit="h")
    ds = ds.assign_coords(time_index=hours).rename(time_index="time")
    units = {v: ds[v].attrs.get("units", "") for v in ds.data_vars}
    tic = time.perf_counter()
    prior = xdiffsr.GaussianPrior.fit(ds.isel(time=slice(0, 16)), covariance="spectral",
                                      mean=args.mean)  # lazy (dask) input
    print(f"fit on 16 times: {time.perf_counter() - tic:.1f} s")
    rows = []
    for t0 in ds.time.values[16:]:
        truth = ds.sel(time=t0, drop=True).load()
        for f in args.factors:
            cg = coarse_grid(truth, f, "latitude", "longitude")
            coarse = _observe(truth, cg, t0, units)
            obs = [xdiffsr.GridObservations(
                coarse, sigma_y={v: COARSE_VAR[v] for v in coarse.data_vars})]
            tic = time.perf_counter()
            ens = _run(prior, obs, t0, args.members, args.steps, args.guidance)
            sec = time.perf_counter() - tic
            for r in scores(ens, truth, coarse, cg, "latitude"):
                rows.append({"time": str(pd.Timestamp(t0))[:13], "factor": f, **r, "s": sec})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """A markdown table, numbers to 3 significant digits."""
    def cell(x):
        return f"{x:.3g}" if isinstance(x, float) else str(x)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(False)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=["ens3", "surface1"])
    p.add_argument("--factors", type=int, nargs="+", default=None)
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--mean", default="zonal", choices=["zonal", "time"])
    p.add_argument("--guidance", default="mmps", choices=["mmps", "jf"])
    p.add_argument("--out", type=Path, default=None, help="CSV of every row")
    args = p.parse_args()
    if not (DATA / "era5").is_dir():
        raise SystemExit(f"{DATA / 'era5'} not found: the real-data samples are needed")
    args.factors = args.factors or ([4, 2] if args.case == "ens3" else [4, 8])
    df = (ens3 if args.case == "ens3" else surface1)(args)
    if args.out:
        df.to_csv(args.out, index=False)
    df["vs bicubic"] = df["ensemble mean"] / df["bicubic"]
    keys = [k for k in ("time", "factor", "sondes", "variable") if k in df]
    cols = [*keys, "ensemble mean", "bilinear", "bicubic", "vs bicubic", "spread/skill"]
    print(markdown(df[cols]))
    print(f"\nbelow bicubic: {int((df['vs bicubic'] < 1).sum())} of {len(df)} rows; "
          f"spread/skill in [0.8, 1.25]: {int(df['spread/skill'].between(0.8, 1.25).sum())}")


if __name__ == "__main__":
    main()
