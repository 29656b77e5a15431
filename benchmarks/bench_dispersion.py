"""Where does the OSSE ensemble's spread live? Coarse scales (set by the likelihood) or grid
scales (set by the prior)?

On the packaged held-out state (2003-12-30 00Z) observed by its exact 16 x 32 conservative average
(LR), with the default model and default settings, this prints per variable:

* at the scale of the observations (members coarsened to 16 x 32): ensemble spread, error of the
  ensemble mean against the coarsened truth, and the observation error ``sigma_y`` assumed;
* on the model grid: the adjusted spread ``sqrt((m + 1) / m) * spread`` and the RMSE of the
  ensemble mean, and their ratio (spread/skill);
* grid-scale roughness: the standard deviation of the second difference along longitude
  ``x[i+1] - 2 x[i] + x[i-1]`` of the members and of the truth (a prior that adds grid-scale noise
  has members rougher than the truth).

A calibrated likelihood gives coarse spread ~ sigma_y and coarse error ~ coarse spread; an
over-dispersive posterior whose excess spread is rough comes from the prior, not the likelihood.

    python benchmarks/bench_dispersion.py --members 4 --factor 0.05
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import xdiffsr
from xdiffsr.evaluation.calibration import scale_errors
from xdiffsr.evaluation.datasets import load_heldout
from xdiffsr.observations.sources import as_source
from xdiffsr.osse import coarsen

VARIABLES = ("t850", "t500", "u500", "z500", "z850", "sp")


def roughness(a: np.ndarray) -> float:
    """Std of the second difference along the last (longitude) axis, periodic."""
    return float(np.std(np.roll(a, 1, -1) - 2 * a + np.roll(a, -1, -1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--factor", type=float, default=1.0,
                   help="multiply the coarse field's default error variances by this")
    p.add_argument("--sigma-min", type=float, default=None)
    args = p.parse_args()
    prior = xdiffsr.load_model("default")
    truth = load_heldout().isel(time=[0])[list(prior.variables)]
    lr = scale_errors(as_source(coarsen(truth), prior), args.factor, prior)
    extra = {} if args.sigma_min is None else {"sigma_min": args.sigma_min}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = truth.drop_vars(list(prior.variables)).diffsr.super_resolve(
            [lr], model=prior, members=args.members, seed=1, **extra
        )
    seconds = time.perf_counter() - t0
    m = args.members
    c, ct = coarsen(ens[list(prior.variables)].isel(time=0)), coarsen(truth.isel(time=0))
    print(f"LR only, error variances x{args.factor:g}, {m} members, default settings "
          f"{extra or ''}: {seconds:.0f} s")
    print("| variable | sigma_y | coarse spread | coarse error | spread (adj.) | RMSE | "
          "spread/skill | roughness members | roughness truth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in VARIABLES:
        cs = float(np.sqrt(c[v].var("member", ddof=1).mean()))
        ce = float(np.sqrt(((c[v].mean("member") - ct[v]) ** 2).mean()))
        fs = float(np.sqrt(ens[v].var("member", ddof=1).mean()) * np.sqrt((m + 1) / m))
        fe = float(np.sqrt(((ens[v].mean("member") - truth[v]) ** 2).mean()))
        sig = float(np.sqrt(lr.variance_for(v, 1)[0]))
        print(f"| {v} | {sig:.3g} | {cs:.3g} | {ce:.3g} | {fs:.3g} | {fe:.3g} | {fs / fe:.2f} | "
              f"{roughness(ens[v].values):.3g} | {roughness(truth[v].values):.3g} |")


if __name__ == "__main__":
    main()
