"""Pixel prior against latent (SLAMS) prior on held-out OSSE states (issue 16): network passes,
CPU seconds, peak memory and RMSE / fair CRPS / spread-skill per model and observing system.

The truth is a nature-run store (``--truth``); the targets are ``--times`` states at 00 or 12 UTC
(when radiosondes are simulated) spread evenly between ``--start`` and ``--end``. The
observations are simulated from the truth once, in this process, with ``--seed``, and are the
same for every model:

- ``IGRA``: soundings at the packaged IGRA stations
  (:func:`xdiffsr.osse.stations.simulate_soundings`);
- ``LR``: the truth coarsened conservatively to :data:`xdiffsr.osse.COARSE_GRID` (16 x 32);
- ``SAT``: radiances along satellite swaths (:func:`xdiffsr.osse.satellite.simulate_radiances`)
  assimilated as :class:`xdiffsr.ColumnObservations`.

Each (model, configuration) runs in its own subprocess (so ``ru_maxrss`` is its own peak)
through ``super_resolve`` with the library's sampler defaults (``--steps`` overrides the steps
only), ``--members`` members and a fixed seed. Network passes are counted by wrapping the prior
denoiser in :class:`xdiffsr.core.likelihood.PassCounter`, as ``bench_passes.py`` does: for a
latent model these are passes of the *latent* denoiser; the decoder's forward passes and
vector-Jacobian products inside the composed observation operator are not counted (they show in
the seconds). For every latent model the autoencoder's reconstruction floor (RMSE of
``decode(encode(truth))``) is reported on the same targets.

``--robustness`` adds sweeps on ``--robust-times`` targets, for every model: sparser networks
(IGRA at a random fraction of the stations: 1, 0.25, 0.06), noisier soundings (every sounding
error scaled by 1 and 3, in the simulation *and* in the error the assimilation uses) and coarser
low-resolution fields (IGRA+LR with LR at 16 x 32, 8 x 16, 4 x 8).

    nice python benchmarks/bench_latent.py                                  # 6 targets, 4 members
    nice python benchmarks/bench_latent.py --robustness --out bench_latent.csv
    nice python benchmarks/bench_latent.py --models pixel=default \\
        latent=run/xdiffsr-latent.safetensors --configs IGRA IGRA+SAT --members 8
    nice python benchmarks/bench_latent.py --smoke --robustness \\
        --models pixel=default latent=/tmp/tiny-latent.safetensors       # check the script

Markdown tables go to stdout; every number goes to ``--out`` as a long CSV (``model, config,
variable, metric, value``; per-run numbers have ``variable = "all"``).
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

#: The four observing systems of the main table.
CONFIGS = ("IGRA", "IGRA+LR", "IGRA+SAT", "IGRA+LR+SAT")
#: Variables with their own columns in the main table.
SHOWN = ("t850", "z500", "u500")
#: Robustness sweeps: station fractions, sounding-error scales, LR grids.
FRACTIONS = (1.0, 0.25, 0.06)
ERROR_SCALES = (1.0, 3.0)
LR_GRIDS = ((16, 32), (8, 16), (4, 8))
#: ``--smoke``: a subset of the above.
SMOKE_CONFIGS = ("IGRA", "IGRA+LR+SAT")
SMOKE_SWEEPS = {"fractions": (1.0, 0.06), "scales": (3.0,), "grids": ((4, 8),)}
DIMS = ("time", "lat", "lon")


# ------------------------------------------------------------------------- truth and observations


def target_times(truth: xr.Dataset, start: str, end: str, n: int) -> pd.DatetimeIndex:
    """``n`` times of ``truth`` at 00 or 12 UTC spread evenly over ``[start, end]``."""
    t = pd.DatetimeIndex(truth["time"].values)
    ok = t[(t >= pd.Timestamp(start)) & (t <= pd.Timestamp(end)) & t.hour.isin([0, 12])
           & (t.minute == 0)]
    if len(ok) < n:
        raise SystemExit(f"only {len(ok)} times at 00/12 UTC in {start}..{end}; need {n}")
    return ok[np.unique(np.round(np.linspace(0, len(ok) - 1, n)).astype(int))]


def sounding_errors(scale: float) -> dict[str, float] | None:
    """Every sounding quantity's default error std times ``scale`` (None: the defaults).

    Only the quantities a sounding can carry: ``soundings_to_observations`` refuses the
    single-level keys (``sp``, ``t2m``, ...) of the same ``DEFAULT_ERRORS`` table.
    """
    from xdiffsr.observations.vertical import DEFAULT_ERRORS, SUPPORTED_QUANTITIES

    if scale == 1:
        return None
    return {q: scale * DEFAULT_ERRORS[q] for q in SUPPORTED_QUANTITIES}


def soundings(truth: xr.Dataset, stations: pd.DataFrame, seed: int, *, scale: float = 1.0,
              fraction: float = 1.0) -> pd.DataFrame:
    """Simulated soundings as the tidy point frame the assimilation reads, with the ``error``
    column (the std the likelihood uses) scaled like the simulated noise.

    The subset (``fraction`` of the stations) is drawn from the full network's soundings, so a
    sparser network sees exactly the same values at the stations it keeps.
    """
    from xdiffsr.observations.vertical import soundings_to_observations
    from xdiffsr.osse.stations import simulate_soundings, subset_network

    errors = sounding_errors(scale)
    df = simulate_soundings(truth, stations, errors=errors, seed=seed)
    if fraction < 1:
        df = subset_network(df, fraction=fraction, seed=seed)
    # the same conversion super_resolve applies to a sounding frame, with the scaled errors
    return soundings_to_observations(df, list(truth.data_vars), errors=errors)


def simulate(truth: xr.Dataset, seed: int, sweeps: dict | None,
             column: xr.Dataset | None = None, correction=None) -> dict[str, list]:
    """Every observation set by key: the configurations and, with ``sweeps``, the robustness
    points (on the first ``sweeps['n']`` targets). ``column``: the truth whose temperature
    levels the satellite-like radiances integrate (default ``truth``: the model's three);
    ``correction``: a :func:`xdiffsr.osse.satellite.column_representativeness` table applied to
    them."""
    from xdiffsr.evaluation.datasets import load_stations
    from xdiffsr.osse import COARSE_GRID, coarsen
    from xdiffsr.osse.satellite import simulate_radiances

    stations = load_stations()
    igra = soundings(truth, stations, seed)
    lr = coarsen(truth, *COARSE_GRID)
    sat = simulate_radiances(truth if column is None else column, seed=seed)
    if correction is not None:
        from xdiffsr.osse.satellite import correct_radiances

        sat = correct_radiances(sat, correction)
    parts = {"IGRA": igra, "LR": lr, "SAT": sat}
    obs = {c: [parts[p] for p in c.split("+")] for c in CONFIGS}
    if sweeps:
        sub = truth.isel(time=slice(0, sweeps["n"]))
        t = sub["time"].values
        full = igra[igra["time"].isin(t)].reset_index(drop=True)
        for f in sweeps["fractions"]:
            obs[robust_key("fraction", f)] = [
                full if f == 1 else soundings(sub, stations, seed, fraction=f)]
        for s in sweeps["scales"]:
            obs[robust_key("scale", s)] = [full if s == 1 else soundings(sub, stations, seed,
                                                                         scale=s)]
        for g in sweeps["grids"]:
            obs[robust_key("grid", g)] = [full, coarsen(sub, *g)]
    return obs


def robust_key(kind: str, value) -> str:
    """Name of a robustness point (a row's ``config``)."""
    if kind == "fraction":
        return f"IGRA stations={value:g}"
    if kind == "scale":
        return f"IGRA errors x{value:g}"
    return f"IGRA+LR LR={value[0]}x{value[1]}"


def load_truth(path: str, times: pd.DatetimeIndex) -> tuple[xr.Dataset, xr.Dataset]:
    """The 13 variables of the nature run at ``times``, and its temperature levels (more than
    three in a :func:`xdiffsr.osse.branch_nature_run` store with extra levels), in memory."""
    from xdiffsr.osse._dycore import VARIABLES

    ds = xr.open_zarr(path, consolidated=False).sel(time=times)
    temps = [v for v in ds.data_vars if v.startswith("t") and v[1:].isdigit()]
    return ds[list(VARIABLES)].load(), ds[temps].load()


# -------------------------------------------------------------------------------- one run


def run_one(job: Path, threads: int) -> dict:
    """One (model, observation set) in this process: counted passes, seconds, peak memory and
    scores of the members."""
    import torch

    import xdiffsr
    import xdiffsr.reconstruct.sample as sample
    from xdiffsr.core.likelihood import PassCounter
    from xdiffsr.evaluation.metrics import crps_ensemble, rmse, spread_skill_ratio

    torch.set_num_threads(threads)
    spec = json.loads(job.read_text())
    with open(spec["obs_file"], "rb") as fh:
        data = pickle.load(fh)
    truth = data["truth"].isel(time=slice(0, spec["n_times"]))
    prior = xdiffsr.load_model(spec["model"])
    obs = [_for_model(o, prior.variables) for o in data["obs"][spec["config"]]]
    truth = truth[list(prior.variables)]
    counters = []
    wrap = sample.with_network_options

    def counted(den, **kw):
        counters.append(PassCounter(wrap(den, **kw)))
        return counters[-1]

    sample.with_network_options = counted
    options = dict(spec["options"])
    if "_jf_iters" in options:  # CG iterations of Jacobian-free guidance (a module constant)
        sample.JF_CG_ITERS = int(options.pop("_jf_iters"))
    t0, c0 = time.perf_counter(), time.process_time()
    ens = truth.drop_vars(list(truth.data_vars)).diffsr.super_resolve(
        obs, model=prior, device="cpu", **options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = spec["options"]["members"] * truth.sizes["time"]
    scores = {}
    for v in prior.variables:
        scores[v] = {
            "rmse": float(rmse(ens[v], truth[v], dims=DIMS)),
            "crps": float(crps_ensemble(ens[v], truth[v], dims=DIMS, fair=True)),
            "spread_skill": float(spread_skill_ratio(ens[v], truth[v], dims=DIMS,
                                                     finite_ensemble_correction=True)),
        }
    return {
        "forward": sum(c.forward_rows for c in counters) / n,
        "backward": sum(c.backward_rows for c in counters) / n,
        "cpu_per_member": cpu / n,
        "wall_per_member": wall / n,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "scores": scores,
    }


def _for_model(o, variables):
    """An observation set entry as ``super_resolve`` takes it for a model with ``variables``.

    Radiances travel as their DataFrame (the kernels of the weighting functions do not pickle)
    and become :class:`xdiffsr.ColumnObservations` here; point and gridded observations of
    variables the model lacks are dropped (a model with fewer variables, e.g. a ``--tiny`` one).
    """
    import xdiffsr

    if isinstance(o, pd.DataFrame) and "channel" in o:
        return xdiffsr.ColumnObservations(o)
    if isinstance(o, pd.DataFrame):
        return o[o["variable"].isin(list(variables))].reset_index(drop=True)
    return o[[v for v in o.data_vars if v in variables]]


def ae_floor(model, truth: xr.Dataset) -> dict[str, float]:
    """Latitude-weighted RMSE per variable of ``decode(encode(truth))`` against the truth.

    ``LatentDiffusionModel.encode`` takes physical states and returns normalised latents;
    ``to_state`` decodes and denormalises them (the public pair).
    """
    from xdiffsr.evaluation.metrics import rmse

    grid = truth.sel(lat=model.grid.lat, lon=model.grid.lon, method="nearest", tolerance=1e-6)
    x = grid[list(model.variables)].to_array("variable").transpose("time", "variable", *DIMS[1:])
    rec = model.to_state(model.encode(x.values))
    rec = x.copy(data=rec.astype(x.dtype)).to_dataset("variable")
    return {v: float(rmse(rec[v], grid[v], dims=DIMS)) for v in model.variables}


# -------------------------------------------------------------------------------- driver


def _spawn(job: dict, tmp: Path, threads: int) -> dict:
    path = tmp / f"job{len(list(tmp.glob('job*.json')))}.json"
    path.write_text(json.dumps(job))
    cmd = [sys.executable, __file__, "--one", str(path), "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"{job['model']} / {job['config']} failed (rc {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--truth", default="/work/osse/nature-seed1.zarr")
    p.add_argument("--start", default="2000-01-06")
    p.add_argument("--end", default="2000-03-10")
    p.add_argument("--times", type=int, default=6)
    p.add_argument("--models", nargs="+",
                   default=["pixel=default", "latent=/work/exp/latent/xdiffsr-latent.safetensors"],
                   help="name=spec pairs; spec goes to xdiffsr.load_model")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=None)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="default: the library's")
    p.add_argument("--guidance", default=None, help="default: the library's")
    p.add_argument("--batch-size", type=int, default=None, help="members per batch (speed only)")
    p.add_argument("--jf-cg-iters", type=int, default=None,
                   help="CG iterations of jf guidance (default: the library's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sat-column", action="store_true",
                   help="simulate the radiances from every temperature level of --truth (a "
                        "branch_nature_run store with extra levels), not only the model's three")
    p.add_argument("--sat-correct", action="store_true",
                   help="with --sat-column: subtract each channel's representativeness bias "
                        "(estimated on the store's other states) and add its std to the error")
    p.add_argument("--robustness", action="store_true")
    p.add_argument("--robust-times", type=int, default=4)
    p.add_argument("--smoke", action="store_true",
                   help="1 time, 2 members, 4 steps, a subset of configurations and sweeps")
    p.add_argument("--out", default="bench_latent.csv")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one), args.threads)))
        return
    sweeps = {"fractions": FRACTIONS, "scales": ERROR_SCALES, "grids": LR_GRIDS}
    if args.smoke:
        args.times, args.robust_times, args.members = 1, 1, 2
        args.steps = args.steps or 4
        args.configs = args.configs or list(SMOKE_CONFIGS)
        sweeps = dict(SMOKE_SWEEPS)
    configs = args.configs or list(CONFIGS)
    models = dict(m.split("=", 1) for m in args.models)
    options = {"members": args.members, "seed": args.seed}
    options |= {"steps": args.steps} if args.steps else {}
    options |= {"guidance": args.guidance} if args.guidance else {}
    options |= {"batch_size": args.batch_size} if args.batch_size else {}
    options |= {"_jf_iters": args.jf_cg_iters} if args.jf_cg_iters else {}

    import torch

    import xdiffsr

    torch.set_num_threads(args.threads)
    times = target_times(xr.open_zarr(args.truth, consolidated=False), args.start, args.end,
                         args.times)
    truth, column = load_truth(args.truth, times)
    if args.robustness:
        sweeps["n"] = min(args.robust_times, len(times))
        # the robustness targets: spread over the same window, the first ones of truth
        rt = target_times(truth, args.start, args.end, sweeps["n"])
        truth = xr.concat([truth.sel(time=rt), truth.drop_sel(time=rt)], "time")
        column = column.sel(time=truth["time"])
    print(f"targets: {[str(t)[:13] for t in times]}", flush=True)
    levels = sorted(int(v[1:]) for v in (column if args.sat_column else truth).data_vars
                    if v.startswith("t"))
    print(f"radiances integrate the truth's temperature at {levels} hPa", flush=True)
    correction = None
    if args.sat_correct:  # estimated on the store's other states (at most 40), not the targets
        from xdiffsr.osse.satellite import column_representativeness

        store = xr.open_zarr(args.truth, consolidated=False)
        others = [t for t in store["time"].values if t not in set(truth["time"].values)]
        others = others[:: max(1, len(others) // 40)]
        temps = [v for v in store.data_vars if v.startswith("t") and v[1:].isdigit()]
        correction = column_representativeness(store[temps].sel(time=others).load(),
                                               (850, 500, 250))
        print(f"radiance bias correction from {len(others)} other states:\n{correction}",
              flush=True)
    obs = simulate(truth, args.seed, sweeps if args.robustness else None,
                   column if args.sat_column else None, correction)

    floor, main_rows, robust_rows = {}, [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        obs_file = tmp / "obs.pkl"
        with open(obs_file, "wb") as fh:
            pickle.dump({"truth": truth, "obs": obs}, fh)
        for name, spec in models.items():
            model = xdiffsr.load_model(spec)
            if isinstance(model, xdiffsr.LatentDiffusionModel):
                floor[name] = ae_floor(model, truth.isel(time=slice(0, len(times))))
            del model
            jobs = [(c, len(times), main_rows) for c in configs]
            if args.robustness:
                jobs += [(k, sweeps["n"], robust_rows) for k in obs if k not in CONFIGS]
            done = {}
            for config, n, rows in jobs:
                key = json.dumps(obs[config], default=id)  # identical sets run once
                job = {"model": spec, "config": config, "n_times": n, "obs_file": str(obs_file),
                       "options": options}
                if key not in done:
                    done[key] = _spawn(job, tmp, args.threads)
                row = {"model": name, "config": config} | done[key]
                rows.append(row)
                print(f"{name} / {config}: {row['forward'] + row['backward']:.0f} passes/member, "
                      f"{row['cpu_per_member']:.1f} CPU s/member", flush=True)
    _tables(main_rows, floor, robust_rows, models)
    _csv(args.out, main_rows + robust_rows, floor)


def _ratio(row: dict, rows: list[dict], base: str) -> float:
    ref = next((r for r in rows if r["model"] == base and r["config"] == row["config"]), None)
    if ref is None:
        return float("nan")
    common = [v for v in row["scores"] if v in ref["scores"]]
    return float(np.mean([row["scores"][v]["rmse"] / ref["scores"][v]["rmse"] for v in common]))


def _tables(rows: list[dict], floor: dict, robust: list[dict], models: dict) -> None:
    base = "pixel" if "pixel" in models else next(iter(models))
    cols = " | ".join(f"{v} {m}" for v in SHOWN for m in ("RMSE", "CRPS", "spread/skill"))
    head = ("| model | config | fwd + bwd passes / member | CPU s / member | wall s / member "
            f"| peak MiB | RMSE / {base} (mean over variables) | {cols} |")
    for title, rs in (("Main", rows), ("Robustness", robust)):
        if not rs:
            continue
        print(f"\n{title}\n\n{head}\n|---|---|" + "---:|" * (5 + 3 * len(SHOWN)))
        for r in rs:
            s = r["scores"]
            vals = " | ".join(f"{s[v]['rmse']:.3g} | {s[v]['crps']:.3g} | "
                              f"{s[v]['spread_skill']:.2f}" if v in s else "- | - | -"
                              for v in SHOWN)
            print(f"| {r['model']} | {r['config']} | {r['forward']:.0f} + {r['backward']:.0f} | "
                  f"{r['cpu_per_member']:.2f} | {r['wall_per_member']:.2f} | "
                  f"{r['peak_mib']:.0f} | {_ratio(r, rs, base):.3f} | {vals} |")
    if floor:
        variables = list(dict.fromkeys(v for f in floor.values() for v in f))
        print("\nAutoencoder reconstruction floor (RMSE of decode(encode(truth)))\n")
        print("| model | " + " | ".join(variables) + " |")
        print("|---|" + "---:|" * len(variables))
        for name, f in floor.items():
            print(f"| {name} | " + " | ".join(f"{f[v]:.3g}" if v in f else "-"
                                             for v in variables) + " |")


def _csv(path: str, rows: list[dict], floor: dict) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "config", "variable", "metric", "value"])
        for r in rows:
            for k in ("forward", "backward", "cpu_per_member", "wall_per_member", "peak_mib"):
                w.writerow([r["model"], r["config"], "all", k, r[k]])
            for v, s in r["scores"].items():
                for k, x in s.items():
                    w.writerow([r["model"], r["config"], v, k, x])
        for name, f in floor.items():
            for v, x in f.items():
                w.writerow([name, "AE floor", v, "rmse", x])
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
