"""Year runs with batches filled across times: seconds per member, time by time against filled.

The packaged default model (13 variables on 64 x 128) reconstructs ``--times`` 6-hourly times
from synthetic observations (200 points of t850/u500/z500 and a 16 x 32 coarse z500 field per
time, those of ``bench_year.py``) through :func:`xdiffsr.reconstruct.sample.run_times`, the
function every year-run task calls, with the default sampler settings. Each ensemble size runs
twice in this process on the same inputs: time by time (``batch_size=members``, the baseline:
what runs did before batches were filled across times) and with ``--rows`` rows per batch
(``auto``: the automatic batch, :data:`xdiffsr.core.memory.HOST_BATCH` on the CPU, fitted to
memory on CUDA) and ``batch_times=True``, which fills a batch with the members of several
times. Members must agree
(same noise; float rounding of other batch shapes aside): the largest difference is printed.

    python benchmarks/bench_time_batches.py --times 8 --members 1 2 --threads 1
    python benchmarks/bench_time_batches.py --device cuda --times 32 --members 2 4 8

Prints a markdown table at the end (append it to benchmarks/RESULTS.md with machine and date).
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import pandas as pd
import torch
import xarray as xr

import xdiffsr
from xdiffsr.reconstruct import Reconstruction
from xdiffsr.reconstruct.settings import SamplerSettings

try:
    from bench_year import observations
except ImportError:  # run as a module from the repository root
    from benchmarks.bench_year import observations


def run(model, obs, times, device, rows, **options) -> tuple[np.ndarray, float, list[float]]:
    # batch_times=True: the opt-in (issue 26); with rows=members a batch is still one time
    settings = SamplerSettings.from_options(batch_size=rows, batch_times=True, **options)
    rec = Reconstruction(xr.Dataset(coords={"time": times}), obs, model=model, settings=settings)
    calls: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic observations: far from the prior
        x = rec.sample(device=device, progress=calls.append)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return x, time.perf_counter() - t0, calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--times", type=int, default=8)
    p.add_argument("--members", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rows", nargs="+", default=["auto"],
                   help="rows per filled batch (one run each), or auto")
    p.add_argument("--steps", type=int, default=None, help="default: the sampler's default")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = xdiffsr.load_model("default", device=device)
    times = pd.date_range("2001-01-01", periods=args.times, freq="6h")
    obs = observations(model, times)
    extra = {} if args.steps is None else {"steps": args.steps}
    # one untimed time first: covariance, operators' first build, allocator
    run(model, obs, times[:1], device, None, members=1, **extra)
    rows = []
    for m in args.members:
        ref, t_ref, _ = run(model, obs, times, device, m, members=m, **extra)
        print(f"  members {m}: {t_ref:.1f} s time by time", flush=True)
        scale = np.abs(ref).max(axis=(0, 1, 3, 4), keepdims=True)
        for r in args.rows:
            filled = None if r == "auto" else int(r)
            x, t_fill, calls = run(model, obs, times, device, filled, members=m, **extra)
            diff = float((np.abs(x - ref) / scale).max())
            n = args.times * m
            # rows of the largest batch: the callback counts times' steps per step
            rows.append((m, t_ref / n, r, round(max(calls) * m), t_fill / n, diff))
            print(f"  members {m}, rows {r}: {t_fill:.1f} s filled", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n{args.times} times, {device}, {torch.get_num_threads()} thread(s), default "
          f"sampler settings{'' if args.steps is None else f' with {args.steps} steps'}, "
          f"peak RSS {peak:.2f} GB\n")
    print("| members | s/member time by time | rows asked | rows per batch | s/member filled "
          "| speed-up | max rel. difference |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for m, a, r, got, b, d in rows:
        print(f"| {m} | {a:.2f} | {r} | {got} | {b:.2f} | {a / b:.2f}x | {d:.1e} |")


if __name__ == "__main__":
    main()
