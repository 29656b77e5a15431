"""Time guided posterior sampling: seconds per member, peak memory and achieved TFLOP/s.

One "run" is the stochastic Heun sampler of Algorithm 1 (18 noise levels, 35 network evaluations,
each with the backward pass of the likelihood gradient) on a random-weight SongUNet, guided by
~2,000 point observations and a 16 x 32 coarse field of every channel (the paper's guidance).
The first row of each configuration (fp32, batch 1) is the baseline of the same run.

    python benchmarks/bench_sampler.py                       # small config on CPU
    python benchmarks/bench_sampler.py --config paper --device cuda --batches 1 4 16 32 \
        --precisions fp32 bf16

Prints a markdown table (paste it into benchmarks/RESULTS.md with the device and date).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time

import numpy as np
import torch

from xdiffsr.core import (
    EDMPrecond,
    GaussianLikelihood,
    ScoreGuidance,
    SongUNet,
    SparseOperator,
    UNetConfig,
    heun_sampler,
    karras_sigmas,
)
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


class Autocast(torch.nn.Module):
    """Run a denoiser under bf16 autocast (preconditioning and output stay fp32)."""

    def __init__(self, inner, device_type: str):
        super().__init__()
        self.inner, self.device_type = inner, device_type

    def forward(self, x, sigma):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.inner(x, sigma).float()


def forward_flops(precond, shape, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *shape, device=device)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        precond(x, torch.ones(1, device=device))
    return float(fc.get_total_flops())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(args) -> None:
    device = torch.device(args.device)
    cfg = CONFIGS[args.config]()
    C, (H, W) = cfg.in_channels, cfg.img_resolution
    torch.manual_seed(0)
    net = SongUNet.from_config(cfg)
    precond = EDMPrecond(net).to(device).eval()
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.channels_last:
        precond = precond.to(memory_format=torch.channels_last)
    if args.compile:
        precond.net = torch.compile(precond.net)
    n_params = sum(p.numel() for p in net.parameters())
    liks = build_likelihoods(C, H, W, args.points, device)
    flops_fwd = forward_flops(precond, (C, H, W), device)
    evals = 2 * args.steps - 1
    # a guided evaluation is a forward and a backward with respect to the input (~3 forwards)
    flops_member = 3 * flops_fwd * evals
    print(
        f"config={args.config} params={n_params / 1e6:.1f}M grid={H}x{W} channels={C} "
        f"device={torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'} "
        f"torch={torch.__version__} forward={flops_fwd / 1e9:.1f} GFLOP steps={args.steps} "
        f"evals={evals} obs={sum(lik.n_obs for lik in liks)}"
    )
    sigmas = karras_sigmas(args.steps)
    print("\n| precision | batch | s/member | speed-up vs fp32 b1 | peak GiB | TFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    baseline = None
    for precision in args.precisions:
        den = precond if precision == "fp32" else Autocast(precond, device.type)
        guided = ScoreGuidance(den, liks, lambda_g=1.0)
        for b in args.batches:
            gen = torch.Generator(device=device).manual_seed(0)
            latents = torch.randn(b, C, H, W, generator=gen, device=device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                heun_sampler(guided, latents, karras_sigmas(2), generator=gen)  # warm-up
                sync(device)
                t0 = time.perf_counter()
                x = heun_sampler(guided, latents, sigmas, generator=gen)
                sync(device)
                dt = time.perf_counter() - t0
            except torch.OutOfMemoryError:
                print(f"| {precision} | {b} | OOM | | | |")
                continue
            assert torch.isfinite(x).all()
            per = dt / b
            baseline = baseline or per
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else math.nan
            print(
                f"| {precision} | {b} | {per:.3f} | {baseline / per:.2f}x | {peak:.1f} | "
                f"{flops_member / per / 1e12:.1f} |",
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix products (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run(args)


if __name__ == "__main__":
    main()
