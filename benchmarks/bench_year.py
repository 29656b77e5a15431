"""States per second of ``reconstruct_to_zarr`` with 1 and 2 dask workers, and a year estimate.

The packaged default model (13 variables on 64 x 128) reconstructs a few 6-hourly times from
synthetic observations (200 points of t850/u500/z500 per time and a 16 x 32 coarse z500 field),
on a ``distributed.LocalCluster`` of 1, 2, ... worker processes (one thread each), streaming into
a local zarr store. Each cluster first runs one chunk per worker (process start, imports and the
one model load per worker), then the timed run writes a fresh store. A full year (1,460 states,
16 members, 18 steps) is extrapolated from the best rate, scaled by members x network
evaluations (``2 steps - 1``); ``--probe`` also times one state at the year's settings directly.

    python benchmarks/bench_year.py                       # CPU: 1 and 2 workers
    python benchmarks/bench_year.py --single --workers 2 --batch-times off on   # issue 28
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


def _settings(args, batch_times: bool) -> SamplerSettings:
    options = {"members": args.members, "steps": args.steps, "batch_times": batch_times}
    if args.guidance is not None:  # default: the library's guidance
        options.update(guidance=args.guidance, cg_iters=args.cg_iters)
    return SamplerSettings.from_options(**options)


def run_single(args, times, model, tmp: Path, batch_times: bool) -> float:
    """States per second of reconstruct_to_zarr in this process (dask's synchronous
    scheduler, no cluster), after one warm-up chunk."""
    import dask

    kw = dict(model="default", chunks={"time": args.chunk}, device=args.device, progress=False,
              settings=_settings(args, batch_times))
    with dask.config.set(scheduler="synchronous"):
        warm = pd.date_range("1999-01-01", periods=args.chunk, freq="6h")
        xdiffsr.reconstruct_to_zarr(xr.Dataset(coords={"time": warm}), observations(model, warm),
                                    str(tmp / f"warm-single-{batch_times}.zarr"), **kw)
        t0 = time.perf_counter()
        xdiffsr.reconstruct_to_zarr(xr.Dataset(coords={"time": times}),
                                    observations(model, times),
                                    str(tmp / f"run-single-{batch_times}.zarr"), **kw)
        wall = time.perf_counter() - t0
    print(f"  single process, batch_times={batch_times}: {wall:.1f} s", flush=True)
    return len(times) / wall


def run_cluster(n_workers: int, args, times, model, tmp: Path, batch_times: bool = False) -> float:
    import distributed

    settings = _settings(args, batch_times)
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
            str(tmp / f"warm{n_workers}-{batch_times}.zarr"),
            client=client,
            **kw,
        )
        t0 = time.perf_counter()
        xdiffsr.reconstruct_to_zarr(
            xr.Dataset(coords={"time": times}),
            observations(model, times),
            str(tmp / f"run{n_workers}-{batch_times}.zarr"),
            client=client,
            **kw,
        )
        wall = time.perf_counter() - t0
        loads = sum(s["loads"] for s in client.run(tasks.cache_stats).values())
    print(f"  {n_workers} worker(s), batch_times={batch_times}: {wall:.1f} s, model loads "
          f"{loads}", flush=True)
    return len(times) / wall


def probe(args) -> float:
    """Seconds for one state at the year's settings, in this process."""
    model = xdiffsr.load_model("default", device=args.device)
    t = pd.date_range("2001-01-01", periods=1, freq="6h")
    t0 = time.perf_counter()
    settings = _settings(args, False).replace(members=args.year_members, steps=args.year_steps)
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
    p.add_argument("--guidance", default=None, help="default: the library's (jf)")
    p.add_argument("--cg-iters", type=int, default=2)
    p.add_argument("--batch-times", nargs="+", default=["off"], choices=["off", "on"],
                   help="filled batches across times off, on, or both")
    p.add_argument("--single", action="store_true",
                   help="also time a single process (no cluster) as the baseline")
    p.add_argument("--year-members", type=int, default=16)
    p.add_argument("--year-steps", type=int, default=18)
    p.add_argument("--probe", action="store_true", help="time one state at the year settings")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = xdiffsr.load_model("default")
    times = pd.date_range("2001-01-01", periods=args.times, freq="6h")
    tmp = Path(tempfile.mkdtemp(prefix="xdiffsr-bench-"))
    rates: dict[tuple[str, str], float] = {}
    try:
        for bt in args.batch_times:
            if args.single:
                rates[("1 process", bt)] = run_single(args, times, model, tmp, bt == "on")
            for n in args.workers:
                rates[(f"{n} worker(s)", bt)] = run_cluster(n, args, times, model, tmp,
                                                            bt == "on")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = next(iter(rates.values()))
    settings = _settings(args, False)
    print(
        f"\n{args.times} times, chunks of {args.chunk}, {args.members} members, {args.steps} "
        f"steps, guidance {settings.guidance}, precision "
        f"{settings.for_device(args.device).precision}, device {args.device}\n"
    )
    print("| run | batch_times | states/h | speed-up | core-s / member |\n|---|---|---:|---:|---:|")
    for (run, bt), r in rates.items():
        cores = 1 if run == "1 process" else int(run.split()[0])
        print(f"| {run} | {bt} | {3600 * r:.0f} | {r / base:.2f}x | "
              f"{cores / r / args.members:.2f} |")
    best = max(rates, key=rates.get)
    scale = (args.year_members / args.members) * (2 * args.year_steps - 1) / (2 * args.steps - 1)
    year_h = YEAR_STATES * scale / rates[best] / 3600
    print(
        f"\nYear estimate ({YEAR_STATES} states, {args.year_members} members, {args.year_steps} "
        f"steps) from {best[0]} (batch_times {best[1]}), scaled linearly by members x "
        f"evaluations ({scale:.1f}x per state): {year_h:.1f} h"
    )
    if args.probe:
        s = probe(args)
        print(f"Probe: one state at the year settings in {s:.1f} s in one process")


if __name__ == "__main__":
    main()
