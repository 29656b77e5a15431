"""Where the CPU time of the default settings goes (issue 28): one guided reconstruction of a
held-out state under ``torch.profiler``, self CPU time grouped by the layer kind that runs it.

The packaged default model, IGRA+LR observations of a held-out nature-run state (as in
``bench_passes.py``), the library's default sampler settings (``precision="auto"``: bf16 where
the CPU runs it natively) against ``precision="fp32"``, side by side in one process.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_cpu_profile.py \\
        --truth nature-seed1.zarr --time 2000-05-25T00 --members 4

Prints, per precision, the wall seconds per member and a table of self CPU seconds per member
by layer kind (convolutions, attention, normalisation, activations, element-wise arithmetic,
the guidance's linear algebra, copies and casts) with their share, then the 12 costliest ops.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import torch

import xdiffsr

#: op name fragments -> layer kind (first match wins; aten op names, lower case)
KINDS = [
    ("convolution", ("conv", "mkldnn_convolution")),
    ("attention (matmul, softmax)", ("bmm", "softmax", "baddbmm", "scaled_dot_product",
                                     "_flash_attention")),
    ("normalisation (group norm)", ("group_norm",)),
    ("activation (SiLU)", ("silu",)),
    ("sparse observation operators", ("sparse",)),
    ("linear (embeddings, dense)", ("addmm", "linear", "matmul", "mm")),
    ("resampling (up/down)", ("upsample", "avg_pool", "interpolate")),
    ("copies, casts, padding", ("copy_", "aten::to", "_to_copy", "cat", "pad", "contiguous",
                                "clone", "empty", "zero_", "fill_", "stack", "roll")),
    ("element-wise arithmetic", ("add", "mul", "sub", "div", "sqrt", "exp", "neg", "pow",
                                 "where", "sum", "mean", "rsqrt", "clamp", "abs")),
]


def kind_of(name: str) -> str:
    n = name.lower()
    for kind, frags in KINDS:
        if (n == "aten::to" and "aten::to" in frags) or any(
                f in n.removeprefix("aten::") for f in frags if f != "aten::to"):
            return kind
    return "other"


def run(prior, truth, obs, members: int, precision: str) -> tuple[float, dict, list]:
    from torch.profiler import ProfilerActivity, profile

    target = truth.drop_vars(list(truth.data_vars))
    kw = dict(model=prior, members=members, device="cpu", precision=precision)
    if precision == "fp32":  # the defaults before issue 28: fp32, NCHW
        kw["channels_last"] = False
    with warnings.catch_warnings():  # a 4-step warm-up diverges: its warnings are noise
        warnings.simplefilter("ignore")
        target.diffsr.super_resolve(obs, **{**kw, "members": 1, "steps": 4})  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        target.diffsr.super_resolve(obs, **kw)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    kinds: dict[str, float] = defaultdict(float)
    for e in events:
        kinds[kind_of(e.key)] += e.self_cpu_time_total / 1e6 / members
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return wall / members, dict(kinds), [(e.key, e.self_cpu_time_total / 1e6 / members,
                                          e.count) for e in top]


def main() -> None:
    import xarray as xr

    from xdiffsr.evaluation.demo import load_heldout, load_stations, observe

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--truth", default=None, help="nature-run zarr (default: packaged states)")
    p.add_argument("--time", default="2000-05-25T00")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precisions", nargs="+", default=["auto", "fp32"],
                   help="auto: the defaults (bf16 and channels-last here); fp32: NCHW fp32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    prior = xdiffsr.load_model("default")
    prior.covariance("cpu")
    if a.truth:
        truth = xr.open_zarr(a.truth, consolidated=False).sel(time=[a.time]).load()
    else:
        truth = load_heldout().isel(time=[0])
    truth = truth[list(prior.variables)]
    coarse, sondes = observe(truth, load_stations(), seed=0)
    rows = {}
    for prec in a.precisions:
        rows[prec] = run(prior, truth, [sondes, coarse], a.members, prec)
    resolved = xdiffsr.SamplerSettings().for_device("cpu").precision
    print(f"\n{a.members} members, 1 state, {a.threads} thread(s); 'auto' is {resolved} here\n")
    print("| layer kind | " + " | ".join(f"{p} CPU s/member (share)" for p in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    kinds = sorted({k for r in rows.values() for k in r[1]},
                   key=lambda k: -rows[a.precisions[0]][1].get(k, 0))
    for k in kinds:
        cells = []
        for _, (_, ks, _) in rows.items():
            tot = sum(ks.values())
            cells.append(f"{ks.get(k, 0):.2f} ({100 * ks.get(k, 0) / tot:.0f} %)")
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("| **total (self CPU)** | " + " | ".join(
        f"{sum(r[1].values()):.2f}" for r in rows.values()) + " |")
    print("| wall s / member | " + " | ".join(f"{r[0]:.2f}" for r in rows.values()) + " |")
    for prec, (_, _, top) in rows.items():
        print(f"\ncostliest ops, {prec}:\n\n| op | self CPU s/member | calls |\n|---|---:|---:|")
        for name, sec, count in top:
            print(f"| `{name}` | {sec:.3f} | {count} |")


if __name__ == "__main__":
    main()
