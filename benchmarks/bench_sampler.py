"""Time guided posterior sampling: seconds per member, peak memory and achieved TFLOP/s.

One "run" is the stochastic Heun sampler of Algorithm 1 (18 noise levels, 35 network evaluations,
each with the backward pass of the likelihood gradient) on a random-weight SongUNet, guided by
~2,000 point observations and a 16 x 32 coarse field of every channel (the paper's guidance).
The first row is the baseline of the same run.

The speed options go through the product's own code: the network options of
``super_resolve`` (``precision``, ``channels_last``, ``compile``, ``checkpoint``) through
:func:`xdiffsr.core.runtime.with_network_options`, and the member batches (``batch_size``,
``max_memory``: per-member generators, batch fitted to the memory budget) through the
functions that :func:`xdiffsr.super_resolve` runs for each time.

    python benchmarks/bench_sampler.py                       # small config on CPU
    python benchmarks/bench_sampler.py --config paper --device cuda --batches 1 4 16 32 \
        --precisions fp32 bf16
    python benchmarks/bench_sampler.py --config paper --device cuda --batches 64 \
        --max-memory auto --checkpoint --precisions bf16 --channels-last --compile

``--batches`` gives the ensemble sizes (members per run); each run draws its members in batches
of ``--batch-size`` (default: all at once) fitted to ``--max-memory``. Prints a markdown table
(paste it into benchmarks/RESULTS.md with the device and date).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
import warnings

import numpy as np
import torch
import xarray as xr

from xdiffsr import DiffusionModel
from xdiffsr.core import (
    EDMPrecond,
    GaussianLikelihood,
    ScoreGuidance,
    SongUNet,
    SparseOperator,
    UNetConfig,
    with_network_options,
)
from xdiffsr.grid import Grid
from xdiffsr.reconstruct import Reconstruction
from xdiffsr.reconstruct.settings import SamplerSettings
from xdiffsr.regrid import point_weights, regrid_weights

CONFIGS = {
    "tiny": lambda: UNetConfig.tiny(13, (16, 32)),
    "small": lambda: UNetConfig(
        in_channels=13,
        out_channels=13,
        img_resolution=(32, 64),
        model_channels=32,
        channel_mult=(1, 2, 2, 4),
        num_blocks=2,
        attn_levels=(3,),
        dropout=0.0,
    ),
    "paper": lambda: UNetConfig.paper(),
}


def build_likelihoods(C: int, H: int, W: int, n_points: int, device) -> list[GaussianLikelihood]:
    import scipy.sparse as sp

    lat = -90 + (np.arange(H) + 0.5) * 180 / H
    lon = np.arange(W) * 360 / W
    rng = np.random.default_rng(0)
    plat, plon = rng.uniform(-85, 85, n_points), rng.uniform(0, 360, n_points)
    P = point_weights(lat, lon, plat, plon, method="bilinear").tocoo()
    chan = rng.integers(0, C, n_points)
    A_pts = sp.csr_matrix(
        (P.data, (P.row, P.col + chan[P.row] * H * W)), shape=(n_points, C * H * W)
    )
    clat = -90 + (np.arange(16) + 0.5) * 180 / 16
    clon = np.arange(32) * 360 / 32
    R = regrid_weights(lat, lon, clat, clon, method="conservative")
    A_c = sp.block_diag([R] * C).tocsr()
    liks = []
    for A, n in ((A_pts, n_points), (A_c, A_c.shape[0])):
        op = SparseOperator(A, (C, H, W)).to(device)
        y = torch.randn(n, generator=torch.Generator().manual_seed(1)) * 0.5
        liks.append(GaussianLikelihood(y, op, sigma_y=0.01, gamma=1.0).to(device))
    return liks


def forward_flops(precond, shape, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *shape, device=device)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        precond(x, torch.ones(1, device=device))
    return float(fc.get_total_flops())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_model(cfg: UNetConfig, device) -> DiffusionModel:
    """A random-weight SongUNet as a DiffusionModel on a regular global grid."""
    C, (H, W) = cfg.in_channels, cfg.img_resolution
    torch.manual_seed(0)
    precond = EDMPrecond(SongUNet.from_config(cfg)).to(device).eval()
    grid = Grid(-90 + (np.arange(H) + 0.5) * 180 / H, np.arange(W) * 360 / W)
    names = [f"v{c}" for c in range(C)]
    return DiffusionModel(precond, names, dict.fromkeys(names, "1"), grid, [0.0] * C, [1.0] * C)


def time_run(model, guided, device, settings: SamplerSettings) -> tuple[float, int, float]:
    """Seconds for all members, the batch used and the peak GiB (CUDA) of the timed run."""
    t = np.datetime64("2000-01-01T00")
    with warnings.catch_warnings():  # the benchmark's own guided denoiser, no sources
        warnings.simplefilter("ignore")
        rec, warm = (Reconstruction(xr.Dataset(coords={"time": [t]}), model=model, settings=s)
                     for s in (settings, settings.replace(steps=2)))
    batch = rec.batch_size(guided, device)  # fitted to max_memory on CUDA
    warm.draw(guided, t, device, batch)  # warm-up (and compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    x = rec.draw(guided, t, device, batch)
    sync(device)
    dt = time.perf_counter() - t0
    assert np.isfinite(x).all()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan
    return dt, batch, peak


def run(args) -> None:
    device = torch.device(args.device)
    cfg = CONFIGS[args.config]()
    if args.attn_head_channels:  # multi-head attention (a different network: heads of 64 fit
        # the flash kernels; the paper's single head reaches 1,024 channels)
        cfg = UNetConfig.from_dict({**cfg.to_dict(), "attn_head_channels": args.attn_head_channels})
    C, (H, W) = cfg.in_channels, cfg.img_resolution
    model = random_model(cfg, device)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    n_params = sum(p.numel() for p in model.precond.parameters())
    liks = build_likelihoods(C, H, W, args.points, device)
    flops_fwd = forward_flops(model.precond, (C, H, W), device)
    evals = 2 * args.steps - 1
    # a guided evaluation is a forward and a backward with respect to the input (~3 forwards)
    flops_member = 3 * flops_fwd * evals
    options = dict(channels_last=args.channels_last, compile=args.compile or False,
                   checkpoint=args.checkpoint)
    print(
        f"config={args.config} params={n_params / 1e6:.1f}M grid={H}x{W} channels={C} "
        f"device={torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'} "
        f"torch={torch.__version__} forward={flops_fwd / 1e9:.1f} GFLOP steps={args.steps} "
        f"evals={evals} obs={sum(lik.n_obs for lik in liks)} tf32={args.tf32} "
        f"batch_size={args.batch_size} max_memory={args.max_memory} "
        f"attn_head_channels={cfg.attn_head_channels} "
        + " ".join(f"{k}={v}" for k, v in options.items())
    )
    print("\n| precision | members | batch | s/member | speed-up vs first row | peak GiB "
          "| TFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    baseline = None
    for precision in args.precisions:
        base = SamplerSettings.from_options(
            steps=args.steps,
            seed=0,
            batch_size=args.batch_size,
            max_memory=args.max_memory,
            precision=precision,
            **options,
        )
        den = with_network_options(model.precond, **base.network_options())
        guided = ScoreGuidance(den, liks, lambda_g=base.lambda_g)
        for members in args.batches:
            settings = base.replace(members=members)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            try:
                dt, batch, peak = time_run(model, guided, device, settings)
            except torch.OutOfMemoryError:
                print(f"| {precision} | {members} | | OOM | | | |")
                continue
            per = dt / members
            baseline = baseline or per
            print(
                f"| {precision} | {members} | {batch} | {per:.3f} | {baseline / per:.2f}x | "
                f"{peak:.1f} | {flops_member / per / 1e12:.2f} |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4],
                   help="ensemble sizes (members per run)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="members per network batch (default: all members at once)")
    p.add_argument("--max-memory", default=None,
                   help="memory budget that fits the batch: bytes, '40GB' or 'auto' (CUDA)")
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix products (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", nargs="?", const=True, default=False,
                   help="torch.compile the network (optionally a mode, e.g. max-autotune)")
    p.add_argument("--attn-head-channels", type=int, default=None,
                   help="channels per attention head (default: one head, as in the paper)")
    p.add_argument("--checkpoint", action="store_true",
                   help="activation checkpointing in the guided backward")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run(args)


if __name__ == "__main__":
    main()
