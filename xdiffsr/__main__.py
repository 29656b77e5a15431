"""Command line: ``xdiffsr demo``, ``evaluate``, ``sequential``, ``super-resolve`` and ``train``.

Also ``python -m xdiffsr ...``. ``xdiffsr --version`` prints the version; ``--help`` on any
subcommand lists its options with their defaults.

Exit status: 0 on success; 2 for a usage error (an unknown option, a bad value, a missing input
file, an unknown model, ``--device cuda`` without CUDA) and for any invalid input that xdiffsr
reports while running (an :class:`~xdiffsr.errors.XDiffSRError`); 1 when reading or writing data
fails while running (an ``OSError``, or a data file that cannot be decoded); 130 when
interrupted. Each error is one line on stderr, ``xdiffsr: error: ...``; ``--debug`` shows the
Python traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from xdiffsr import __version__
from xdiffsr._cli import run_cli

_EPILOG = (
    "exit status: 0 success; 2 usage error or invalid input (one line on stderr); 1 data could "
    "not be read or written; --debug shows the traceback."
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        name = self.prog.split()[0]
        sub = self.prog[len(name) :].strip()
        where = f" (see {self.prog} --help)" if sub else f" (see {name} --help)"
        self.exit(2, f"{name}: error: {sub + ': ' if sub else ''}{message}{where}\n")


def main(argv: list[str] | None = None) -> int:
    """The ``xdiffsr`` command; returns the exit status (see the module docstring)."""
    return run_cli(_main, sys.argv[1:] if argv is None else list(argv))


def _main(argv: list[str]) -> int:
    parser = _Parser(prog="xdiffsr", description=__doc__.split("\n\n")[0], epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser(
        "demo", help="super-resolve a held-out state offline and score it", epilog=_EPILOG
    )
    demo.add_argument("--model", default="default", type=_model, help="registry name or model file")
    demo.add_argument("--out", default="xdiffsr-demo", type=_out_dir, help="output folder")
    from xdiffsr.evaluation.demo import run_demo

    _add_sampler(demo, run_demo)
    demo.add_argument("--device", default=None, type=_device, help="torch device (default: auto)")
    demo.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    demo.add_argument("--no-figure", action="store_true", help="skip the figure")
    _add_debug(demo)
    _add_evaluate(sub)
    _add_sequential(sub)
    _add_super_resolve(sub)
    sub.add_parser("train", help="train a diffusion prior (python -m xdiffsr.train; see "
                   "xdiffsr train --help)", add_help=False)
    words = [a for a in argv if a != "--debug"]
    if words[:1] == ["train"]:  # delegate every option to python -m xdiffsr.train
        from xdiffsr.train.__main__ import main as train_main

        argv = list(argv)
        argv.remove("train")
        return train_main(argv, prog="xdiffsr train", label="xdiffsr")
    args = parser.parse_args(argv)
    if args.command in ("evaluate", "sequential", "super-resolve"):
        run = {"evaluate": _run_evaluate, "sequential": _run_sequential,
               "super-resolve": _run_super_resolve}
        return run[args.command](args)
    from xdiffsr.evaluation.demo import run_demo

    run_demo(
        model=args.model,
        out=args.out,
        members=args.members,
        steps=args.steps,
        guidance=args.guidance,
        cg_iters=args.cg_iters,
        mmps_sigmas=args.mmps_sigmas,
        device=args.device,
        seed=args.seed,
        figure=not args.no_figure,
    )
    return 0


def _add_stations_out_model(p: argparse.ArgumentParser, out: str) -> None:
    """The options ``evaluate`` and ``sequential`` share: stations, output folder, model."""
    p.add_argument("--stations", default=None, type=_existing,
                   help="CSV (id, lat, lon) or IGRA station list (default: packaged 2023 list)")
    p.add_argument("--stations-year", type=int, default=None,
                   help="keep the stations active in this year (needs an IGRA station list)")
    p.add_argument("--out", default=out, type=_out_dir, help="output folder")
    p.add_argument("--model", default="default", type=_model, help="registry name or model file")


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show Python tracebacks")


#: the sampler options of the experiment commands (demo, evaluate, sequential)
_SAMPLER = ("members", "steps", "guidance", "cg_iters", "mmps_sigmas")
#: the sampler options of super-resolve
_SUPER_RESOLVE = (*_SAMPLER, "lambda_g", "batch_size", "seed")


def _add_sampler(p: argparse.ArgumentParser, driver=None, names=_SAMPLER) -> None:
    """The sampler options ``names``, generated from :class:`xdiffsr.SamplerSettings`, with the
    defaults of the experiment ``driver`` (a function) where it has its own."""
    from xdiffsr.reconstruct.arguments import add_sampler_arguments, driver_defaults

    defaults = driver_defaults(driver, names) if driver is not None else None
    add_sampler_arguments(p, names, defaults=defaults)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {low}")
        return value

    parse.__name__ = "integer"
    return parse


def _number(low: float = 0.0, strict: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value > low if strict else value >= low) or value != value or value == 1e999:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a finite number {'>' if strict else '>='} {low:g}"
            )
        return value

    parse.__name__ = "number"
    return parse


def _fraction(text: str) -> float:
    value = _number(0.0, strict=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction in (0, 1)")
    return value


def _is_url(text: str) -> bool:
    return "://" in text


def _existing(text: str) -> str:
    """A local file or folder that exists (URLs are passed on as they are)."""
    if not _is_url(text) and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or directory: {text!r}")
    return text


def _out_dir(text: str) -> str:
    if not _is_url(text) and os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give an output folder")
    return text


def _model(text: str) -> str:
    """A registered model name or alias, or an existing model file."""
    from xdiffsr.models.registry import ALIASES, SUFFIX, registry

    if os.path.isfile(text) or _is_url(text):
        return text
    names = {k.removesuffix(SUFFIX) for k in registry()}
    if ALIASES.get(text, text).removesuffix(SUFFIX) in names:
        return text
    if "/" in text or os.sep in text or text.endswith(SUFFIX):
        raise argparse.ArgumentTypeError(f"no such model file: {text!r}")
    known = sorted(names | set(ALIASES))
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; give one of {known} or the path of a {SUFFIX} file"
    )


def _device(text: str) -> str:
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a torch device (cpu, cuda, cuda:1)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text!r}: CUDA is not available on this machine; use --device cpu"
        )
    return text


def _timedelta(text: str) -> str:
    import pandas as pd

    try:
        value = pd.Timedelta(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 12h)") from None
    if value <= pd.Timedelta(0) or value % pd.Timedelta("6h"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive multiple of 6h")
    return text


def _timestamp(text: str) -> str:
    import pandas as pd

    try:
        pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time (e.g. 2021-01-01T00)") from None
    return text


def _add_calibrate(p) -> None:
    p.add_argument(
        "--calibrate", type=_int_at_least(1), default=None, metavar="N",
        help="learn the error models first on N validation times that are not scored "
        "(per-variable Desroziers factors of radiosondes and coarse field; the emulator's "
        "forecast error by lead); default: the fixed default errors",
    )


def _add_evaluate(sub) -> None:
    from xdiffsr.evaluation.suite import BASELINES, CONFIGURATIONS, evaluate
    from xdiffsr.osse import COARSE_GRID

    ev = sub.add_parser(
        "evaluate",
        help="score LR/IGRA/emulator configurations and baselines against an OSSE truth",
        description="Run the OSSE evaluation suite (docs/evaluation.md) and write results.csv, "
        "results.md and figures.",
        epilog=_EPILOG,
    )
    ev.add_argument("--truth", default=None, type=_existing,
                    help="zarr store or netCDF file of truth states (default: packaged held-out)")
    ev.add_argument("--train", default=None, type=_existing,
                    help="zarr/netCDF training states for climatology and optimal interpolation")
    _add_stations_out_model(ev, "xdiffsr-evaluate")
    ev.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS),
                    choices=CONFIGURATIONS, metavar="CONFIG",
                    help=f"configurations to run, of {list(CONFIGURATIONS)}")
    ev.add_argument(
        "--baselines", nargs="*", default=list(BASELINES), choices=BASELINES,
        metavar="BASELINE", help=f"baselines to score, of {list(BASELINES)}",
    )
    ev.add_argument("--weights", nargs="+", type=_number(), default=[0.5, 1.0, 2.0],
                    help="weights of the emulator forecast")
    ev.add_argument("--times", type=_int_at_least(1), default=None,
                    help="number of target times (default: all)")
    _add_sampler(ev, evaluate)
    ev.add_argument("--lead", default="12h", type=_timedelta,
                    help="emulator lead time (multiple of 6h)")
    ev.add_argument("--coarse-grid", nargs=2, type=_int_at_least(1), default=list(COARSE_GRID),
                    metavar=("NLAT", "NLON"), help="coarse grid of the LR observations")
    ev.add_argument("--oi-rank", type=_int_at_least(1), default=32,
                    help="rank of the optimal-interpolation covariance")
    ev.add_argument("--device", default=None, type=_device, help="torch device (default: auto)")
    ev.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    ev.add_argument("--no-figures", action="store_true", help="skip the figures")
    ev.add_argument("--withhold", type=_fraction, default=None, metavar="FRACTION",
                    help="held-out validation: withhold this fraction of the soundings and score "
                    "the ensembles at them")
    _add_calibrate(ev)
    ev.add_argument("--withhold-by", default="station", choices=["random", "station", "region"],
                    help="how soundings are withheld")
    ev.add_argument("--prior-report", action="store_true", help="also write prior-report.md")
    _add_debug(ev)


def _add_sequential(sub) -> None:
    from xdiffsr.evaluation.sequential import (
        SEQUENTIAL_BASELINES,
        SEQUENTIAL_CONFIGURATIONS,
        evaluate_sequential,
    )
    from xdiffsr.osse import COARSE_GRID

    sq = sub.add_parser(
        "sequential",
        help="the paper's 7-day sequential (reinitialised) experiment, scored at every cycle",
        description="Run the emulator from the coarsened truth, reconstruct every cycle (free "
        "forecast, with radiosondes, reinitialised) and write sequential.csv, sequential.md and "
        "figures of the scores against lead time (docs/evaluation.md).",
        epilog=_EPILOG,
    )
    sq.add_argument("--truth", required=True, type=_existing,
                    help="zarr store or netCDF file of truth states")
    _add_stations_out_model(sq, "xdiffsr-sequential")
    sq.add_argument("--start", default=None, type=_timestamp,
                    help="initial time (default: first possible)")
    sq.add_argument("--days", type=_number(strict=True), default=7.0, help="length in days")
    sq.add_argument("--cycle", default="12h", type=_timedelta,
                    help="time between reconstructions (x 6h)")
    sq.add_argument("--configurations", nargs="+", default=list(SEQUENTIAL_CONFIGURATIONS[:3]),
                    choices=SEQUENTIAL_CONFIGURATIONS, metavar="CONFIG",
                    help=f"configurations to run, of {list(SEQUENTIAL_CONFIGURATIONS)}")
    sq.add_argument("--baselines", nargs="*", default=list(SEQUENTIAL_BASELINES),
                    choices=SEQUENTIAL_BASELINES, metavar="BASELINE",
                    help=f"baselines to score, of {list(SEQUENTIAL_BASELINES)}")
    sq.add_argument("--weight", type=_number(), default=1.0,
                    help="weight of the emulator forecast")
    _add_sampler(sq, evaluate_sequential)
    sq.add_argument("--coarse-grid", nargs=2, type=_int_at_least(1), default=list(COARSE_GRID),
                    metavar=("NLAT", "NLON"), help="coarse grid of the LR observations")
    sq.add_argument("--emulator-truncation", type=_int_at_least(1), default=21,
                    help="spectral truncation of the emulator")
    sq.add_argument("--emulator-layers", type=_int_at_least(1), default=20,
                    help="vertical layers of the emulator")
    sq.add_argument("--emulator-dt-minutes", type=_number(strict=True), default=30.0,
                    help="emulator time step (minutes)")
    sq.add_argument("--device", default=None, type=_device, help="torch device (default: auto)")
    sq.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed")
    sq.add_argument("--no-figures", action="store_true", help="skip the figures")
    _add_calibrate(sq)
    _add_debug(sq)


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
        mmps_sigmas=args.mmps_sigmas,
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
        calibrate=args.calibrate,
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
        with warnings.catch_warnings():  # stores without consolidated metadata (nature runs)
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolid")
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
        mmps_sigmas=args.mmps_sigmas,
        lead=args.lead,
        coarse_grid=tuple(args.coarse_grid),
        oi_rank=args.oi_rank,
        seed=args.seed,
        device=args.device,
        out=args.out,
        figures=not args.no_figures,
        verbose=True,
        withhold=args.withhold,
        withhold_by=args.withhold_by,
        calibrate=args.calibrate,
    )
    rmse = table[table["metric"] == "rmse"]
    label = rmse["configuration"] + rmse["weight"].map(lambda w: "" if w != w else f" w={w:g}")
    print(rmse.assign(run=label).pivot_table(index="run", columns="variable", values="value",
                                             sort=False).to_string(float_format="{:.3g}".format))
    print(f"wrote {args.out}/results.csv, results.md and figures")
    if args.prior_report:  # the model's prior-quality report (xdiffsr.evaluation.prior_report)
        from xdiffsr.evaluation.prior_report import write_prior_report as report
        print("wrote", report(args.model, _open(args.truth) if args.truth else None, args.out,
                              times=args.times, members=args.members, seed=args.seed))
    return 0


def _out_file(text: str) -> str:
    if not text.rstrip("/").endswith((".nc", ".nc4", ".zarr")):
        raise argparse.ArgumentTypeError(f"{text!r}: give a .nc or .zarr output path")
    return text


def _add_super_resolve(sub) -> None:
    sr = sub.add_parser(
        "super-resolve", help="reconstruct high-resolution ensembles from your observation files",
        description="Reconstruct posterior ensembles at the target times from observation "
        "files: gridded netCDF/zarr fields, CSV/parquet point tables (tidy or earth2studio "
        "schema) and IGRA sounding files.", epilog=_EPILOG)
    sr.add_argument("obs", nargs="+", type=_existing, metavar="OBS",
                    help="observation files (.nc/.zarr grids, .csv/.parquet points, IGRA)")
    sr.add_argument("--out", required=True, type=_out_file, help="output .nc or .zarr")
    sr.add_argument("--weights", nargs="+", type=_number(), default=None,
                    help="one weight per observation file (none given: 1 each)")
    when = sr.add_mutually_exclusive_group(required=True)
    when.add_argument("--times", nargs="+", type=_timestamp, help="target times")
    when.add_argument("--times-file", type=_existing,
                      help="text file of target times, one a line (or a CSV with a time column)")
    sr.add_argument("--grid", default=None, type=_existing,
                    help="netCDF/zarr file whose lat/lon is the output grid (none: the model's)")
    sr.add_argument("--model", default="default", type=_model, help="registry name or model file")
    _add_sampler(sr, names=_SUPER_RESOLVE)
    sr.add_argument("--device", default=None, type=_device, help="torch device (default: auto)")
    sr.add_argument("--assume-units", action="store_true",
                    help="take observations without units to be in the model's units")
    sr.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _add_debug(sr)


def _read_obs(path: str, variables: list[str]):
    """One observation file as a super_resolve source (by suffix; IGRA otherwise)."""
    import pandas as pd

    from xdiffsr.io.igra import read_igra
    from xdiffsr.observations import from_earth2studio, is_earth2studio_frame

    low = path.lower().rstrip("/")
    if low.endswith((".nc", ".nc4", ".zarr", ".grib", ".grb")):
        return _open(path)
    if low.endswith((".csv", ".parquet", ".pq")):
        df = pd.read_csv(path) if low.endswith(".csv") else pd.read_parquet(path)
        if "time" in df:
            df["time"] = pd.to_datetime(df["time"])
        return from_earth2studio(df, variables) if is_earth2studio_frame(df) else df
    return read_igra(path)


def _target_times(args) -> list:
    import pandas as pd

    from xdiffsr.errors import ArgumentError

    if args.times is not None:
        return list(pd.to_datetime(args.times))
    path = args.times_file
    with open(path) as f:
        header = [c.strip() for c in f.readline().split(",")]
    try:  # a CSV with a time column, or one time per line
        col = pd.read_csv(path)["time"] if "time" in header else pd.read_csv(
            path, header=None, comment="#").iloc[:, 0]
        times = list(pd.to_datetime(col.astype(str).str.strip()))
    except (ValueError, TypeError) as err:
        raise ArgumentError(f"--times-file {path}: not a list of times ({err})") from None
    if not times:
        raise ArgumentError(f"--times-file {path} holds no times")
    return times


def _run_super_resolve(args) -> int:
    import shutil

    import xarray as xr

    from xdiffsr.errors import ArgumentError
    from xdiffsr.grid import find_latlon
    from xdiffsr.models.registry import load_model
    from xdiffsr.reconstruct.api import super_resolve
    from xdiffsr.reconstruct.arguments import sampler_options
    from xdiffsr.reconstruct.settings import SamplerSettings

    if os.path.exists(args.out) and not args.overwrite:
        raise ArgumentError(f"--out {args.out} exists; pass --overwrite or another path")
    if args.weights is not None and len(args.weights) != len(args.obs):
        raise ArgumentError(
            f"--weights gives {len(args.weights)} values for {len(args.obs)} observation files"
        )
    settings = SamplerSettings.from_options(**sampler_options(args, _SUPER_RESOLVE))
    times = _target_times(args)
    model = load_model(args.model, device="cpu", progress=True)
    obs = [_read_obs(p, list(model.variables)) for p in args.obs]
    target = xr.Dataset(coords={"time": times})
    if args.grid is not None:
        lat, lon = find_latlon(_open(args.grid), "--grid")
        target = target.assign_coords({lat.name: lat.variable, lon.name: lon.variable})
    out = super_resolve(target, obs, args.weights, model=model, device=args.device,
                        progress=True, settings=settings, assume_units=args.assume_units)
    if args.out.rstrip("/").endswith(".zarr"):
        shutil.rmtree(args.out, ignore_errors=True)
        out.to_zarr(args.out, mode="w")
    else:
        out.to_netcdf(args.out)
    print(f"wrote {args.out}: {', '.join(map(str, out.data_vars))} "
          f"({out.sizes.get('time', 1)} times x {out.sizes.get('member', 1)} members)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
