"""Command line: ``xdiffsr demo``, ``xdiffsr evaluate`` and ``xdiffsr sequential``.

Also ``python -m xdiffsr ...``.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xdiffsr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="super-resolve a held-out state offline and score it")
    demo.add_argument("--model", default="default", help="registry name or model file")
    demo.add_argument("--out", default="xdiffsr-demo", help="output folder")
    demo.add_argument("--members", type=int, default=4)
    demo.add_argument("--steps", type=int, default=12)
    demo.add_argument("--guidance", default="mmps", choices=["sda", "mmps", "none"])
    demo.add_argument("--cg-iters", type=int, default=2)
    demo.add_argument("--device", default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-figure", action="store_true")
    _add_evaluate(sub)
    _add_sequential(sub)
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        return _run_evaluate(args)
    if args.command == "sequential":
        return _run_sequential(args)
    if args.command == "demo":
        from xdiffsr.evaluation.demo import run_demo

        run_demo(
            model=args.model,
            out=args.out,
            members=args.members,
            steps=args.steps,
            guidance=args.guidance,
            cg_iters=args.cg_iters,
            device=args.device,
            seed=args.seed,
            figure=not args.no_figure,
        )
    return 0


def _add_evaluate(sub) -> None:
    from xdiffsr.evaluation.suite import BASELINES, CONFIGURATIONS
    from xdiffsr.osse import COARSE_GRID

    ev = sub.add_parser(
        "evaluate",
        help="score LR/IGRA/emulator configurations and baselines against an OSSE truth",
        description="Run the OSSE evaluation suite (docs/evaluation.md) and write results.csv, "
        "results.md and figures.",
    )
    ev.add_argument(
        "--truth",
        default=None,
        help="zarr store or netCDF file of truth states (default: packaged held-out)",
    )
    ev.add_argument(
        "--train",
        default=None,
        help="zarr/netCDF training states for climatology and optimal interpolation",
    )
    ev.add_argument(
        "--stations",
        default=None,
        help="CSV (id, lat, lon) or IGRA station list (default: packaged 2023 list)",
    )
    ev.add_argument(
        "--stations-year",
        type=int,
        default=None,
        help="keep the stations active in this year (needs an IGRA station list)",
    )
    ev.add_argument("--out", default="xdiffsr-evaluate", help="output folder")
    ev.add_argument("--model", default="default", help="registry name or model file")
    ev.add_argument(
        "--configurations",
        nargs="+",
        default=list(CONFIGURATIONS),
        choices=CONFIGURATIONS,
        metavar="CONFIG",
    )
    ev.add_argument(
        "--baselines", nargs="*", default=list(BASELINES), choices=BASELINES, metavar="BASELINE"
    )
    ev.add_argument("--weights", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    ev.add_argument("--times", type=int, default=None, help="number of target times")
    ev.add_argument("--members", type=int, default=4)
    ev.add_argument("--steps", type=int, default=12)
    ev.add_argument("--guidance", default="mmps", choices=["sda", "mmps", "none"])
    ev.add_argument("--cg-iters", type=int, default=2)
    ev.add_argument("--lead", default="12h", help="emulator lead time (multiple of 6h)")
    ev.add_argument("--coarse-grid", nargs=2, type=int, default=list(COARSE_GRID),
                    metavar=("NLAT", "NLON"))
    ev.add_argument("--oi-rank", type=int, default=32)
    ev.add_argument("--device", default=None)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-figures", action="store_true")


def _add_sequential(sub) -> None:
    from xdiffsr.evaluation.sequential import SEQUENTIAL_BASELINES, SEQUENTIAL_CONFIGURATIONS
    from xdiffsr.osse import COARSE_GRID

    sq = sub.add_parser(
        "sequential",
        help="the paper's 7-day sequential (reinitialised) experiment, scored at every cycle",
        description="Run the emulator from the coarsened truth, reconstruct every cycle (free "
        "forecast, with radiosondes, reinitialised) and write sequential.csv, sequential.md and "
        "figures of the scores against lead time (docs/evaluation.md).",
    )
    sq.add_argument("--truth", required=True, help="zarr store or netCDF file of truth states")
    sq.add_argument("--stations", default=None, help="CSV (id, lat, lon) or IGRA station list")
    sq.add_argument("--stations-year", type=int, default=None)
    sq.add_argument("--out", default="xdiffsr-sequential", help="output folder")
    sq.add_argument("--model", default="default", help="registry name or model file")
    sq.add_argument("--start", default=None, help="initial time (default: first possible)")
    sq.add_argument("--days", type=float, default=7.0)
    sq.add_argument("--cycle", default="12h", help="time between reconstructions (x 6h)")
    sq.add_argument(
        "--configurations",
        nargs="+",
        default=list(SEQUENTIAL_CONFIGURATIONS[:3]),
        choices=SEQUENTIAL_CONFIGURATIONS,
        metavar="CONFIG",
    )
    sq.add_argument(
        "--baselines",
        nargs="*",
        default=list(SEQUENTIAL_BASELINES),
        choices=SEQUENTIAL_BASELINES,
        metavar="BASELINE",
    )
    sq.add_argument("--weight", type=float, default=1.0, help="weight of the emulator forecast")
    sq.add_argument("--members", type=int, default=4)
    sq.add_argument("--steps", type=int, default=12)
    sq.add_argument("--guidance", default="mmps", choices=["sda", "mmps", "none"])
    sq.add_argument("--cg-iters", type=int, default=2)
    sq.add_argument("--coarse-grid", nargs=2, type=int, default=list(COARSE_GRID),
                    metavar=("NLAT", "NLON"))
    sq.add_argument("--emulator-truncation", type=int, default=21)
    sq.add_argument("--emulator-layers", type=int, default=20)
    sq.add_argument("--emulator-dt-minutes", type=float, default=30.0)
    sq.add_argument("--device", default=None)
    sq.add_argument("--seed", type=int, default=0)
    sq.add_argument("--no-figures", action="store_true")


def _run_sequential(args) -> int:
    from xdiffsr.evaluation.sequential import evaluate_sequential
    from xdiffsr.osse import Emulator

    table = evaluate_sequential(
        _open(args.truth),
        model=args.model,
        stations=_stations(args.stations, args.stations_year),
        start=args.start,
        days=args.days,
        cycle=args.cycle,
        configurations=args.configurations,
        baselines=args.baselines,
        weight=args.weight,
        members=args.members,
        steps=args.steps,
        guidance=args.guidance,
        cg_iters=args.cg_iters,
        emulator=Emulator(
            truncation=args.emulator_truncation,
            layers=args.emulator_layers,
            dt_minutes=args.emulator_dt_minutes,
        ),
        coarse_grid=tuple(args.coarse_grid),
        seed=args.seed,
        device=args.device,
        out=args.out,
        figures=not args.no_figures,
        verbose=True,
    )
    rmse = table[table["metric"] == "rmse"]
    var = "t850" if "t850" in set(rmse["variable"]) else rmse["variable"].iloc[0]
    piv = rmse[rmse["variable"] == var].pivot_table(
        index="configuration", columns="lead_hours", values="value", sort=False
    )
    print(f"RMSE of {var} by lead (hours):")
    print(piv.to_string(float_format="{:.3g}".format))
    print(f"wrote {args.out}/sequential.csv, sequential.md and figures")
    return 0


def _open(path: str):
    import xarray as xr

    if path.rstrip("/").endswith(".zarr"):
        return xr.open_zarr(path)
    return xr.open_dataset(path)


def _stations(path: str | None, year: int | None):
    import pandas as pd

    from xdiffsr.errors import ArgumentError
    from xdiffsr.evaluation.datasets import load_stations

    if path is None:
        if year not in (None, 2023):
            raise ArgumentError(
                f"--stations-year {year}: the packaged list holds the stations of 2023 only; "
                "pass --stations igra2-station-list.txt to select another year"
            )
        return load_stations()
    if path.endswith(".csv"):
        st = pd.read_csv(path)
        if year is not None:
            raise ArgumentError("--stations-year needs an IGRA station list, not a CSV")
        return st
    from xdiffsr.io.igra import read_station_list
    from xdiffsr.osse.stations import active_stations

    st = read_station_list(path)
    return active_stations(st, year) if year is not None else st


def _run_evaluate(args) -> int:
    from xdiffsr.evaluation.suite import evaluate

    table = evaluate(
        _open(args.truth) if args.truth else None,
        model=args.model,
        train=_open(args.train) if args.train else None,
        stations=_stations(args.stations, args.stations_year),
        configurations=args.configurations,
        weights=args.weights,
        baselines=args.baselines,
        times=args.times,
        members=args.members,
        steps=args.steps,
        guidance=args.guidance,
        cg_iters=args.cg_iters,
        lead=args.lead,
        coarse_grid=tuple(args.coarse_grid),
        oi_rank=args.oi_rank,
        seed=args.seed,
        device=args.device,
        out=args.out,
        figures=not args.no_figures,
        verbose=True,
    )
    rmse = table[table["metric"] == "rmse"]
    label = rmse["configuration"] + rmse["weight"].map(lambda w: "" if w != w else f" w={w:g}")
    print(
        rmse.assign(run=label)
        .pivot_table(index="run", columns="variable", values="value", sort=False)
        .to_string(float_format="{:.3g}".format)
    )
    print(f"wrote {args.out}/results.csv, results.md and figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
