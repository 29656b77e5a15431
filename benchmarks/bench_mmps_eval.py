"""One MMPS evaluation with and without its last backward pass (issue 15): the guided denoiser of
the default model on the packaged held-out state observed as IGRA+LR, the new path (``J^T M^T u``
from CG's products) against the reference path (one more vector-Jacobian product), interleaved.

    OMP_NUM_THREADS=1 nice python benchmarks/bench_mmps_eval.py --batch 4 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import xdiffsr
from xdiffsr.evaluation.demo import load_heldout, load_stations, observe
from xdiffsr.reconstruct import Reconstruction
from xdiffsr.reconstruct.settings import SamplerSettings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cg-iters", type=int, default=2)
    args = p.parse_args()
    prior = xdiffsr.load_model("default")
    truth = load_heldout().isel(time=[0])
    truth = truth[[v for v in prior.variables if v in truth.data_vars]]
    coarse, sondes = observe(truth, load_stations())
    settings = SamplerSettings.from_options(cg_iters=args.cg_iters, cg_tol=0.0)
    rec = Reconstruction(truth.drop_vars(list(truth.data_vars)), [sondes, coarse], model=prior,
                         settings=settings)
    den, _ = rec.denoiser(rec.times[0], "cpu")
    x = torch.randn(args.batch, *prior.state_shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((args.batch,), 2.0)
    times = {True: [], False: []}
    for r in range(args.repeats + 1):
        for reuse in (True, False):
            den._reuse_vjps = reuse
            t0 = time.perf_counter()
            den(x * 2.0, sigma)
            if r:
                times[reuse].append(time.perf_counter() - t0)
    base = min(times[False])
    print(f"\n| MMPS path (cg_iters={args.cg_iters}, batch {args.batch}) | backward passes "
          "| min s | median s | min vs reference |")
    print("|---|---:|---:|---:|---:|")
    for reuse, name in ((False, "reference (before)"), (True, "CG products reused (now)")):
        t = times[reuse]
        n = args.cg_iters + (0 if reuse else 1)
        print(f"| {name} | {n} | {min(t):.3f} | {statistics.median(t):.3f} | "
              f"{min(t) / base:.2f}x |")


if __name__ == "__main__":
    main()
