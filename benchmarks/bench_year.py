"""States per second of ``reconstruct_to_zarr`` with 1 and 2 dask workers, and a year estimate.

The packaged default model (13 variables on 64 x 128) reconstructs a few 6-hourly times from
synthetic observations (200 points of t850/u500/z500 per time and a 16 x 32 coarse z500 field),
on a ``distributed.LocalCluster`` of 1, 2, ... worker processes (one thread each), streaming into
a local zarr store. Each cluster first runs one chunk per worker (process start, imports and the
one model load per worker), then the timed run writes a fresh store. A full year (1,460 states,
16 members, 18 steps) is extrapolated from the best rate, scaled by members x network
evaluations (``2 steps - 1``); ``--probe`` also times one state at the year's settings directly.

    python benchmarks/bench_year.py                       # CPU: 1 and 2 workers
    python benchmarks/bench_year.py --device cuda --workers 1   # one worker per GPU

Prints a markdown table (append it to benchmarks/RESULTS.md with the machine and date).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

import xdiffsr
from xdiffsr.reconstruct import SamplerSettings, tasks

YEAR_STATES = 1460


def observations(model, times: pd.DatetimeIndex) -> list:
    g = np.random.default_rng(0)
    n = 200
    var = np.resize(["t850", "u500", "z500"], n * len(times))
    centre = {v: model.center[model.variables.index(v)] for v in ("t850", "u500", "z500")}
    scale = {v: model.scale[model.variables.index(v)] for v in ("t850", "u500", "z500")}
    pts = pd.DataFrame(
        {
            "time": np.repeat(times.values, n),
            "lat": g.uniform(-80, 80, n * len(times)),
            "lon": g.uniform(0, 360, n * len(times)),
            "variable": var,
            "value": [centre[v] + scale[v] * g.normal() for v in var],
            "units": [model.units[v] for v in var],
        }
    )
    lat = -90 + (np.arange(16) + 0.5) * 180 / 16
    lon = (np.arange(32) + 0.5) * 360 / 32
    z = centre["z500"] + scale["z500"] * g.normal(size=(len(times), 16, 32))
    coarse = xr.Dataset(
        {"z500": (("time", "lat", "lon"), z, {"units": model.units["z500"]})},
        coords={
            "time": times,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    return [pts, coarse]


def run_cluster(n_workers: int, args, times, model, tmp: Path) -> float:
    import distributed

    settings = SamplerSettings.from_options(
        members=args.members, steps=args.steps, guidance=args.guidance, cg_iters=args.cg_iters
    )
    kw = dict(
        model="default",
        chunks={"time": args.chunk},
        settings=settings,
        device=args.device,
        progress=False,
    )
    with (
        distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        warm = pd.date_range("1999-01-01", periods=args.chunk * n_workers, freq="6h")
        xdiffsr.reconstruct_to_zarr(
            xr.Dataset(coords={"time": warm}),
            observations(model, warm),
            str(tmp / f"warm{n_workers}.zarr"),
            client=client,
            **kw,
        )
        t0 = time.perf_counter()
        xdiffsr.reconstruct_to_zarr(
            xr.Dataset(coords={"time": times}),
            observations(model, times),
            str(tmp / f"run{n_workers}.zarr"),
            client=client,
            **kw,
        )
        wall = time.perf_counter() - t0
        loads = sum(s["loads"] for s in client.run(tasks.cache_stats).values())
    print(f"  {n_workers} worker(s): {wall:.1f} s, model loads {loads}", flush=True)
    return len(times) / wall


def probe(args) -> float:
    """Seconds for one state at the year's settings, in this process."""
    model = xdiffsr.load_model("default", device=args.device)
    t = pd.date_range("2001-01-01", periods=1, freq="6h")
    t0 = time.perf_counter()
    settings = SamplerSettings.from_options(
        members=args.year_members,
        steps=args.year_steps,
        guidance=args.guidance,
        cg_iters=args.cg_iters,
    )
    xr.Dataset(coords={"time": t}).diffsr.super_resolve(
        observations(model, t), model=model, settings=settings, device=args.device
    )
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--times", type=int, default=12)
    p.add_argument("--chunk", type=int, default=2)
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--guidance", default="mmps")
    p.add_argument("--cg-iters", type=int, default=2)
    p.add_argument("--year-members", type=int, default=16)
    p.add_argument("--year-steps", type=int, default=18)
    p.add_argument("--probe", action="store_true", help="time one state at the year settings")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = xdiffsr.load_model("default")
    times = pd.date_range("2001-01-01", periods=args.times, freq="6h")
    tmp = Path(tempfile.mkdtemp(prefix="xdiffsr-bench-"))
    try:
        rates = {n: run_cluster(n, args, times, model, tmp) for n in args.workers}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rates[args.workers[0]]
    print(
        f"\n{args.times} times, chunks of {args.chunk}, {args.members} members, {args.steps} "
        f"steps, guidance {args.guidance} (cg_iters {args.cg_iters}), device {args.device}\n"
    )
    print("| workers | states/s | speed-up |\n|---:|---:|---:|")
    for n, r in rates.items():
        print(f"| {n} | {r:.3f} | {r / base:.2f}x |")
    best_n = max(rates, key=rates.get)
    scale = (args.year_members / args.members) * (2 * args.year_steps - 1) / (2 * args.steps - 1)
    year_h = YEAR_STATES * scale / rates[best_n] / 3600
    print(
        f"\nYear estimate ({YEAR_STATES} states, {args.year_members} members, {args.year_steps} "
        f"steps) from {best_n} worker(s), scaled linearly by members x evaluations "
        f"({scale:.1f}x per state): {year_h:.1f} h"
    )
    if args.probe:
        s = probe(args)
        print(
            f"Probe: one state at the year settings in {s:.1f} s in one process -> "
            f"{YEAR_STATES * s / 3600 / best_n:.1f} h with {best_n} such worker(s)"
        )


if __name__ == "__main__":
    main()
