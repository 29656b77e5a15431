"""Network passes per member against quality (issue 15): counted passes, CPU seconds, peak memory
and RMSE / fair CRPS / spread-skill on held-out OSSE states, per sampler configuration.

Each configuration runs in its own subprocess (so ``ru_maxrss`` is its own peak) on the same
targets, observations (IGRA+LR: the packaged stations' simulated soundings plus the truth
coarsened to 16 x 32) and seed, through ``super_resolve``. Network passes are counted by wrapping
the prior denoiser in :class:`xdiffsr.core.likelihood.PassCounter` (forward passes and backward
passes, i.e. vector-Jacobian products, per member), not estimated. The first configuration is
the baseline of the ratio columns (today's default: MMPS, 2 CG iterations, 18 steps).

    nice python benchmarks/bench_passes.py                        # packaged held-out states
    nice python benchmarks/bench_passes.py --members 8 --configs default mmps1 ...

A configuration is ``name:key=value,key=value`` (sampler options) or one of :data:`CONFIGS`.
``reference`` is the default on the code path before issue 15 (one more backward pass per
evaluation), timed on ``--reference-members`` members of the first state only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

import xdiffsr

#: Named configurations (sampler options on top of the defaults with 18 steps, MMPS 2 CG).
CONFIGS = {
    "default": {"steps": 18, "guidance": "mmps", "cg_iters": 2},
    "reference": {"steps": 18, "guidance": "mmps", "cg_iters": 2, "_reuse_vjps": False},
    "mmps1": {"steps": 18, "guidance": "mmps", "cg_iters": 1},
    "nocorr": {"steps": 18, "guidance": "mmps", "cg_iters": 2, "corrector_guidance": False},
    "mmps1-nocorr": {"steps": 18, "cg_iters": 1, "corrector_guidance": False},
    "mmps1-12": {"steps": 12, "cg_iters": 1},
    "mmps1-12-nocorr": {"steps": 12, "cg_iters": 1, "corrector_guidance": False},
    "mmps2-12": {"steps": 12, "cg_iters": 2},
    "sda": {"steps": 18, "guidance": "sda"},
    "none": {"steps": 18, "guidance": "none"},
    "jf": {"steps": 18, "guidance": "jf"},
    "jf-17": {"steps": 17, "guidance": "jf"},
    "jf-16": {"steps": 16, "guidance": "jf"},
    "jf-12": {"steps": 12, "guidance": "jf"},
    "jf-cg50": {"steps": 18, "guidance": "jf", "_jf_iters": 50},
    # the library's defaults and their CPU speed options (issue 28)
    "lib": {},
    "lib-bf16": {"precision": "bf16"},
    "lib-compile": {"compile": True},
    "lib-bf16-compile": {"precision": "bf16", "compile": True},
    "lib-fp32": {"precision": "fp32"},
    "lib-before": {"precision": "fp32", "channels_last": False},  # the defaults before issue 28
    "mmps18-fp32": {"steps": 18, "guidance": "mmps", "cg_iters": 2, "precision": "fp32",
                    "channels_last": False},  # issue 28's baseline
    "lib-cl": {"precision": "fp32", "channels_last": True},
    "lib-bf16-cl": {"precision": "bf16", "channels_last": True},
}


def _parse(spec: str) -> tuple[str, dict]:
    if spec in CONFIGS:
        return spec, dict(CONFIGS[spec])
    name, _, rest = spec.partition(":")
    opts = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        opts[k] = json.loads(v.lower() if v in ("True", "False") else v)
    return name, opts


def heldout_states(store: str | None, states: int, start: str, end: str):
    """``states`` target states at 00 or 12 UTC spread evenly over [start, end] of a nature-run
    store (radiosondes are simulated at those hours), or the packaged held-out states."""
    import pandas as pd
    import xarray as xr

    from xdiffsr.evaluation.demo import load_heldout

    if store is None:
        return load_heldout().isel(time=slice(0, states))
    ds = xr.open_zarr(store, consolidated=False)
    t = pd.DatetimeIndex(ds.time.values)
    pool = t[(t >= start) & (t <= end) & t.hour.isin([0, 12])]
    pick = np.unique(np.linspace(0, len(pool) - 1, states).round().astype(int))
    return ds.sel(time=pool[pick]).load()


def run_one(spec: str, members: int, states: int, seed: int, threads: int, batch: int,
            truth_store: str | None = None, start: str = "", end: str = "",
            obs: str = "IGRA+LR") -> dict:
    """One configuration in this process: members, counts, seconds, peak memory, scores."""
    import torch

    import xdiffsr.reconstruct.sample as sample
    from xdiffsr.core.likelihood import MMPSGuidance, PassCounter
    from xdiffsr.evaluation.demo import load_stations, observe
    from xdiffsr.evaluation.metrics import crps_ensemble, rmse, spread_skill_ratio

    torch.set_num_threads(threads)
    name, opts = _parse(spec)
    reuse = opts.pop("_reuse_vjps", True)
    if "_jf_iters" in opts:  # CG iterations of Jacobian-free guidance (a module constant)
        sample.JF_CG_ITERS = int(opts.pop("_jf_iters"))
    if "_mmps_hi" in opts:  # MMPS for noise levels in [lo, hi], jf elsewhere (comma-free spec)
        opts["mmps_sigmas"] = (float(opts.pop("_mmps_lo", 0.0)), float(opts.pop("_mmps_hi")))
    prior = xdiffsr.load_model("default")
    truth = heldout_states(truth_store, states, start, end)
    truth = truth[[v for v in prior.variables if v in truth.data_vars]]
    coarse, sondes = observe(truth, load_stations(), seed=seed)
    counters = []
    wrap = sample.with_network_options

    def counted(den, **kw):
        counters.append(PassCounter(wrap(den, **kw)))
        return counters[-1]

    sample.with_network_options = counted
    if not reuse:
        init = MMPSGuidance.__init__

        def reference(self, *a, **kw):
            init(self, *a, **kw)
            self._reuse_vjps = False

        MMPSGuidance.__init__ = reference
    setup = time.perf_counter()
    if opts.get("guidance", "jf") == "jf" or "_mmps_hi" in spec:
        prior.covariance("cpu")  # one-off per prior (stored with the packaged model): apart
    sources = {"IGRA+LR": [sondes, coarse], "LR": [coarse], "IGRA": [sondes]}[obs]
    if opts.get("compile"):  # compiled once per process: a warm-up run of the first state
        first = truth.isel(time=[0])
        first.drop_vars(list(first.data_vars)).diffsr.super_resolve(
            [src.isel(time=[0]) if hasattr(src, "isel") else src for src in sources],
            model=prior, members=min(members, batch), seed=seed, device="cpu",
            batch_size=batch, **opts)
        counters.clear()
    setup = time.perf_counter() - setup
    t0, c0 = time.perf_counter(), time.process_time()
    ens = truth.drop_vars(list(truth.data_vars)).diffsr.super_resolve(
        sources, model=prior, members=members, seed=seed, device="cpu", batch_size=batch,
        **opts,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = members * truth.sizes["time"]
    fwd = sum(c.forward_rows for c in counters) / n
    bwd = sum(c.backward_rows for c in counters) / n
    dims = ("time", "lat", "lon")
    scores = {}
    for v in prior.variables:
        scores[v] = [
            float(rmse(ens[v], truth[v], dims=dims)),
            float(crps_ensemble(ens[v], truth[v], dims=dims)),
            float(spread_skill_ratio(ens[v], truth[v], dims=dims)),
        ]
    return {
        "name": name,
        "obs": obs,
        "times": [str(t)[:13] for t in truth.time.values],
        "options": opts | ({} if reuse else {"reference_path": True}),
        "forward": fwd,
        "backward": bwd,
        "wall_per_member": wall / n,
        "cpu_per_member": cpu / n,
        "setup_s": setup,  # the covariance and, compiled, the warm-up run (compilation)
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "scores": scores,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+",
                   default=["default", "reference", "mmps1", "nocorr", "mmps1-nocorr",
                            "mmps1-12", "mmps1-12-nocorr"])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--states", type=int, default=2)
    p.add_argument("--reference-members", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4, help="members per batch (speed only)")
    p.add_argument("--truth", default=None,
                   help="nature-run zarr store of held-out states (default: the packaged ones)")
    p.add_argument("--start", default="2000-01-06", help="first held-out time (with --truth)")
    p.add_argument("--end", default="2000-03-10", help="last held-out time (with --truth)")
    p.add_argument("--obs", nargs="+", default=["IGRA+LR"], choices=["IGRA+LR", "LR", "IGRA"])
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.members, args.states, args.seed, args.threads,
                                 args.batch_size, args.truth, args.start, args.end,
                                 args.obs[0])))
        return
    for obs in args.obs:
        rows = _run_configs(args, obs)
        print(f"\nobservations: {obs}; targets {', '.join(rows[0]['times'])}")
        _table(rows)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(rows) + "\n")


def _run_configs(args: argparse.Namespace, obs: str) -> list[dict]:
    rows = []
    for spec in args.configs:
        timing_only = spec == "reference"
        members = args.reference_members if timing_only else args.members
        states = 1 if timing_only else args.states
        cmd = [sys.executable, __file__, "--one", spec, "--members", str(members),
               "--states", str(states), "--seed", str(args.seed), "--threads", str(args.threads),
               "--batch-size", str(args.batch_size), "--obs", obs, "--start", args.start,
               "--end", args.end] + (["--truth", args.truth] if args.truth else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["timing_only"] = timing_only
        rows.append(row)
        print(f"{obs} {spec}: {row['forward'] + row['backward']:.0f} passes/member, "
              f"{row['cpu_per_member']:.1f} CPU s/member", flush=True)
    return rows


def _table(rows: list[dict]) -> None:
    base = rows[0]
    ref = np.array(list(base["scores"].values()))
    print("\n| configuration | fwd + bwd passes / member | passes vs first | CPU s / member "
          "| wall s / member | one-off s | peak MiB | RMSE / first (mean of 13) | CRPS / first "
          "| spread/skill (mean of 13) | RMSE t850 (K) | CRPS t850 (K) | spread/skill t850 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = np.array(list(r["scores"].values()))
        passes = r["forward"] + r["backward"]
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        head = (f"| {r['name']} ({opts}) | {r['forward']:.0f} + {r['backward']:.0f} | "
                f"{passes / (base['forward'] + base['backward']):.2f} | "
                f"{r['cpu_per_member']:.2f} | {r['wall_per_member']:.2f} | "
                f"{r.get('setup_s', 0):.1f} | {r['peak_mib']:.0f} |")
        if r["timing_only"]:
            print(head + " timing only | | | | | |")
            continue
        t = r["scores"]["t850"]
        print(head + f" {np.mean(s[:, 0] / ref[:, 0]):.3f} | {np.mean(s[:, 1] / ref[:, 1]):.3f} | "
              f"{np.mean(s[:, 2]):.2f} | {t[0]:.3g} | {t[1]:.3g} | {t[2]:.2f} |")


if __name__ == "__main__":
    main()
