"""Training throughput of the default network on this machine: fp32, bf16 autocast, compiled.

One optimiser step is forward + backward + AdamW on a batch of random standardised states of the
default model's shape (13 x 64 x 128), through the library's :class:`xdiffsr.train.Trainer`
arithmetic (EDM loss, gradient clipping); the configurations run side by side in one process,
after warm-up steps (the compiled one's warm-up includes its compilation, reported apart).

    PYTHONPATH=. python benchmarks/bench_train.py --threads 1 --steps 20 --batch-size 8

Prints a table of samples/s per configuration and the ratio to fp32. With ``--val-check STORE``
it instead fine-tunes the released model for ``--steps`` steps on a nature-run store twice, fp32
and bf16, with the same data order and noise, and prints both runs' validation losses (does bf16
training reach the same loss?):

    PYTHONPATH=. python benchmarks/bench_train.py --val-check nature-seed1.zarr --steps 100 \
        --train-end 2000-05-10T18 --val-end 2000-05-20T18
"""

from __future__ import annotations

import argparse
import time

import torch

from xdiffsr.core.precond import EDMLoss, EDMPrecond
from xdiffsr.core.runtime import bf16_supported
from xdiffsr.core.unet import SongUNet, UNetConfig

DEFAULT_UNET = dict(model_channels=32, channel_mult=(1, 2, 2, 2), num_blocks=2, attn_levels=(3,),
                    dropout=0.0)


def _step(ddp, precond, opt, loss_fn, x, gen, bf16: bool) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(ddp, x, generator=gen).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(precond.parameters(), 1.0)
    opt.step()


def measure(name: str, *, bf16: bool, compile: bool, steps: int, warmup: int, batch: int,
            padding: str) -> dict:
    torch.manual_seed(0)
    cfg = UNetConfig(in_channels=13, out_channels=13, img_resolution=(64, 128),
                     lat_padding=padding, **DEFAULT_UNET)
    precond = EDMPrecond(SongUNet.from_config(cfg), sigma_data=1.0).train()
    ddp = torch.compile(precond) if compile else precond
    opt = torch.optim.AdamW(precond.parameters(), lr=1e-4, weight_decay=0.0)
    loss_fn = EDMLoss(sigma_data=1.0, mix=0.5)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 13, 64, 128, generator=gen)
    t0 = time.perf_counter()
    for _ in range(warmup):
        _step(ddp, precond, opt, loss_fn, x, gen, bf16)
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(ddp, precond, opt, loss_fn, x, gen, bf16)
    dt = time.perf_counter() - t0
    return {"config": name, "samples_per_s": steps * batch / dt, "warmup_s": t_warm}


def val_check(args: argparse.Namespace) -> None:
    import json
    import tempfile

    from xdiffsr.train import TrainConfig, Trainer

    names = ("t850", "t500", "t250", "u850", "u500", "u250", "v850", "v500", "v250", "z850",
             "z500", "z250", "sp")
    losses = {}
    for bf16 in (False, True):
        cfg = TrainConfig(data=args.val_check, variables=names, train_end=args.train_end,
                          val_end=args.val_end, val_samples=32, init_from="default",
                          unet={"lat_padding": args.padding}, sigma_mix=0.5, area_weighted=True,
                          batch_size=args.batch_size, lr=1e-4, warmup_steps=20,
                          steps=args.steps, val_every=args.steps, log_every=args.steps,
                          ema_halflife_samples=4000.0, ema_rampup_ratio=0.1, bf16=bf16,
                          threads=args.threads, seed=5)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            Trainer(cfg, out_dir=out, progress=False).run()
            log = [json.loads(x) for x in open(f"{out}/log.jsonl")]
        losses["bf16" if bf16 else "fp32"] = (log[0], log[-1], time.perf_counter() - t0)
    print("\n| training | val loss step 0 | val loss (raw) | val loss (EMA) | steps | s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (first, last, sec) in losses.items():
        print(f"| {name} | {first['val_loss']:.4f} | {last['val_loss']:.4f} | "
              f"{last['val_loss_ema']:.4f} | {last['step']} | {sec:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--padding", default="pole", choices=("zeros", "pole"))
    p.add_argument("--configs", nargs="+", default=["fp32", "bf16", "bf16+compile"])
    p.add_argument("--val-check", default=None, metavar="STORE")
    p.add_argument("--train-end", default="2000-05-10T18")
    p.add_argument("--val-end", default="2000-05-20T18")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.val_check:
        return val_check(args)
    _, why = bf16_supported("cpu")
    print(f"threads {args.threads}, batch {args.batch_size}, {args.steps} steps, padding "
          f"{args.padding}; bf16: {why}")
    rows = []
    for name in args.configs:
        rows.append(measure(name, bf16="bf16" in name, compile="compile" in name,
                            steps=args.steps, warmup=args.warmup, batch=args.batch_size,
                            padding=args.padding))
        print(f"  {name}: {rows[-1]['samples_per_s']:.2f} samples/s", flush=True)
    base = rows[0]["samples_per_s"]
    print("\n| configuration | samples/s | vs first | warm-up s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['samples_per_s']:.2f} | {r['samples_per_s'] / base:.2f}x "
              f"| {r['warmup_s']:.1f} |")


if __name__ == "__main__":
    main()
