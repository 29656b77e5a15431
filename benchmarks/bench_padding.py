"""Circular longitude padding (issue 15): one guided evaluation of the default network (a forward
pass and two vector-Jacobian products, as MMPS with 2 CG iterations) with the padding of
``xdiffsr.core.layers.wrap_longitude`` against the ``torch.cat`` wrap it replaced and against no
wrap at all (zero padding in both dims: wrong on the seam, the lower bound of any padding).

    OMP_NUM_THREADS=1 nice python benchmarks/bench_padding.py --batch 4 --repeats 9

Variants are interleaved (round robin) and the minimum and median over ``--repeats`` are printed,
so that load from other jobs on a shared machine affects them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import xdiffsr
from xdiffsr.core import layers


def _cat(x: torch.Tensor, p: int) -> torch.Tensor:  # the padding before issue 15
    return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)


def _no_wrap(self, x: torch.Tensor) -> torch.Tensor:  # zeros in both dims (not a lat-lon conv)
    if self.down:
        x = F.avg_pool2d(x, 2)
    if self.up:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
    if self.weight is None:
        return x
    return F.conv2d(x, self.weight, self.bias, padding=self.kernel // 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--model", default="default")
    args = p.parse_args()
    prior = xdiffsr.load_model(args.model)
    den = prior.denoiser("cpu")
    x = torch.randn(args.batch, *prior.state_shape)
    s = torch.full((args.batch,), 2.0)
    v = torch.randn_like(x)

    def evaluation():
        xi = x.clone().requires_grad_(True)
        out = den(xi, s)
        for _ in range(2):
            torch.autograd.grad(out, xi, v, retain_graph=True)

    wrap, forward = layers.wrap_longitude, layers.LatLonConv2d.forward
    variants = {
        "wrap_longitude (now)": (wrap, forward),
        "torch.cat (before)": (_cat, forward),
        "no wrap (lower bound)": (wrap, _no_wrap),
    }
    times = {k: [] for k in variants}
    for r in range(args.repeats + 1):
        for name, (pad, fwd) in variants.items():
            layers.wrap_longitude, layers.LatLonConv2d.forward = pad, fwd
            t0 = time.perf_counter()
            evaluation()
            if r:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
    layers.wrap_longitude, layers.LatLonConv2d.forward = wrap, forward
    base = min(times["torch.cat (before)"])
    print(f"\n| padding | min s | median s | min vs torch.cat |  (batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s))")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {min(t):.3f} | {statistics.median(t):.3f} | {min(t) / base:.2f}x |")


if __name__ == "__main__":
    main()
