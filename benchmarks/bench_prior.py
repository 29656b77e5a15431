"""Prior quality on held-out nature-run states: the issue-24 goal table, models side by side.

For each model, on the same held-out states (a nature run the models never saw) and seeds:
the prior-quality report (:func:`xdiffsr.evaluation.prior_report.prior_report`: denoiser
roughness by noise level, unguided members' spectra and edge rows, climate) and the guided
IGRA+LR members at the default settings (simulated radiosondes at the 908 IGRA stations + the
truth averaged onto 16 x 32, weight 1), whose zonal power at wavenumbers 20-42, edge-row ratios,
adjusted spread/skill and RMSE over bicubic interpolation make the goal table.

    PYTHONPATH=. python benchmarks/bench_prior.py --truth nature-seed1.zarr \
        --start 2000-05-15 --every 126h --times 12 --members 8 --threads 1 \
        --models released=default --out prior-eval

Writes ``OUT/<name>-report.md``, ``OUT/<name>-guided.csv``, ``OUT/<name>-denoiser.csv`` and
prints the goal table (range over variables per model).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
import xarray as xr

import xdiffsr
from xdiffsr.evaluation.prior_report import igra_lr_members, prior_report


def goal_rows(report) -> dict[str, str]:
    g = report.guided

    def rng(col):
        return f"{g[col].min():.2f}-{g[col].max():.2f}"

    return {"power k20-42 members/truth": rng("power_k20-42_ratio"),
            "edge rows RMSE ratio": rng("rmse_edge_ratio"),
            "edge rows spread ratio": rng("spread_edge_ratio"),
            "spread/skill (adjusted)": rng("spread_skill"),
            "IGRA+LR RMSE / bicubic": rng("rmse_over_bicubic")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--truth", required=True, help="nature-run zarr store (held-out part)")
    p.add_argument("--start", required=True, help="first held-out time")
    p.add_argument("--every", default="126h", help="time between held-out states")
    p.add_argument("--times", type=int, default=12)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--unguided-members", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", nargs="+", default=["released=default"], help="NAME=FILE|NAME")
    p.add_argument("--option", action="append", default=[],
                   help="sampler option KEY=VALUE for every model (e.g. S_churn=10)")
    p.add_argument("--variables", default="report",
                   help="'report' (the report's 7 variables) or 'all' (every model variable)")
    p.add_argument("--out", type=Path, default=Path("prior-eval"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    opts = {k: float(v) for k, v in (o.split("=", 1) for o in args.option)}
    times = pd.date_range(args.start, periods=args.times, freq=args.every)
    with warnings.catch_warnings():  # nature-run stores have no consolidated metadata
        warnings.simplefilter("ignore", RuntimeWarning)
        truth = xr.open_zarr(args.truth).sel(time=times).load()
    table = {}
    for spec in args.models:
        name, _, path = spec.partition("=")
        model = xdiffsr.load_model(path or name)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ens, bicubic = igra_lr_members(model, truth, members=args.members, seed=1, **opts)
            names = {"variables": model.variables} if args.variables == "all" else {}
            rep = prior_report(model, truth, members=args.unguided_members, guided=ens,
                               bicubic=bicubic, seed=1, **names, **opts)
        ens[list(model.variables)].to_netcdf(args.out / f"{name}-guided.nc")
        seconds = time.perf_counter() - t0
        rep.settings.update(model=path or name, guided_members=args.members, seconds=seconds,
                            times=[str(t) for t in times])
        (args.out / f"{name}-report.md").write_text(rep.to_markdown())
        rep.guided.to_csv(args.out / f"{name}-guided.csv")
        rep.denoiser.to_csv(args.out / f"{name}-denoiser.csv")
        table[name] = goal_rows(rep)
        print(f"{name}: {seconds:.0f} s\n{rep.to_markdown()}", flush=True)
    print(pd.DataFrame(table).to_markdown())


if __name__ == "__main__":
    main()
