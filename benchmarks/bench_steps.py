"""Fewer sampler steps at equal quality? RMSE and CRPS against an OSSE truth by number of steps.

Every row super-resolves the same targets from the same simulated observations (IGRA+LR: the
908 packaged stations plus the truth coarsened to 16 x 32) with the same seed; only the sampler
settings change. The baseline row is the paper's 18-step stochastic Heun sampler (35 network
evaluations) measured in the same run; the table gives the scores relative to it and the seconds
per member.

    python benchmarks/bench_steps.py                                   # packaged held-out states
    python benchmarks/bench_steps.py --truth nature.zarr --start 2001-01-07 --times 4 \\
        --steps 18 12 8 6 --members 4

Variants: ``--steps`` (noise levels of the Karras schedule; evaluations = 2 steps - 1) and
``--churn`` (``S_churn`` of Karras et al. 2022; 0 = deterministic Heun apart from the initial
noise). Prints a markdown table (append it to RESULTS.md with the
machine and date).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import xarray as xr

from xdiffsr.evaluation.suite import evaluate
from xdiffsr.reconstruct import SamplerSettings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--truth", default=None, help="zarr store of truth states (default: packaged)")
    p.add_argument("--start", default=None, help="first truth time to use")
    p.add_argument("--times", type=int, default=None, help="number of target times")
    p.add_argument("--steps", nargs="+", type=int, default=[18, 12, 8, 6])
    p.add_argument("--churn", nargs="+", type=float, default=[0.0])
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--cg-iters", type=int, default=2)
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--device", default=None)
    args = p.parse_args()

    truth = None
    if args.truth:
        truth = xr.open_zarr(args.truth, consolidated=False)
        if args.start:
            truth = truth.sel(time=slice(args.start, None))
    runs = list(itertools.product(args.steps, args.churn))
    baseline = (18, 0.0)
    if baseline not in runs:
        runs.insert(0, baseline)
    rows = []
    for steps, churn in runs:
        t0 = time.perf_counter()
        sampler = SamplerSettings.from_options(
            members=args.members, steps=steps, cg_iters=args.cg_iters, S_churn=churn
        )
        table = evaluate(
            truth,
            configurations=("IGRA+LR",),
            weights=(args.weight,),
            baselines=(),
            times=args.times,
            members=sampler.members,
            steps=sampler.steps,
            cg_iters=sampler.cg_iters,
            S_churn=sampler.S_churn,
            device=args.device,
            figures=False,
        )
        sec = time.perf_counter() - t0
        n_targets = len(table.attrs["targets"])
        piv = table.pivot_table(index="variable", columns="metric", values="value")
        rows.append(
            {
                "steps": steps,
                "churn": churn,
                "evals": 2 * steps - 1,
                "s/member": sec / (n_targets * args.members),
                "piv": piv,
            }
        )
        print(f"steps={steps} churn={churn}: {sec:.1f} s", flush=True)
    ref = next(r["piv"] for r in rows if (r["steps"], r["churn"]) == baseline)
    print(
        "\n| steps | S_churn | evaluations | s/member | RMSE / 18-step (mean of 13 vars) "
        "| CRPS / 18-step | RMSE t850 (K) | RMSE z500 (m2/s2) | CRPS t850 | spread/skill t850 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        piv = r["piv"]
        rr = float(np.mean(piv["rmse"] / ref["rmse"]))
        cr = float(np.mean(piv["crps"] / ref["crps"]))
        print(
            f"| {r['steps']} | {r['churn']:g} | {r['evals']} | "
            f"{r['s/member']:.2f} | {rr:.3f} | {cr:.3f} | {piv.loc['t850', 'rmse']:.3g} | "
            f"{piv.loc['z500', 'rmse']:.3g} | {piv.loc['t850', 'crps']:.3g} | "
            f"{piv.loc['t850', 'spread_skill']:.3g} |"
        )


if __name__ == "__main__":
    main()
