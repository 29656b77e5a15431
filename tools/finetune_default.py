"""Fine-tune the default prior on the CPU (or a GPU): resumable, stoppable at any minute.

The recipe of issue #24: start from the released ``xdiffsr-default`` weights and their
normalisation; zero latitude padding (``--padding pole`` pads across the poles, u and v
sign-flipped, but takes away the network's latitude: docs/training.md); the loss
cos-latitude weighted; half of the noise levels log-uniform in [0.3, 10], where the released
denoiser leaks noise, half from EDM's log-normal, which keeps the low levels; bf16 autocast where
the processor has it; a checkpoint every ``--ckpt-minutes``. Training state lives in ``--out``
(never in the installed package); the model file it writes there (EMA weights) replaces
``xdiffsr/data/xdiffsr-default.safetensors`` only when it wins on held-out states.

    # a nature run the released model never saw (seed 1; its own spin-up)
    python -c "from xdiffsr.osse import nature_run; nature_run('nature-seed1.zarr', days=200,
        spinup_days=200, seed=1)"
    python tools/finetune_default.py --data nature-seed1.zarr --out ft --train-end 2000-04-20T18 \
        --minutes 70 --threads 1          # stop any time (SIGTERM/Ctrl-C); rerun to continue

Rerunning with the same arguments resumes from the newest checkpoint in ``--out``.

Version 3's recipe (docs/model-card.md): the seed-1 run extended (``days=800``), the validation
and evaluation periods left out (``--exclude``), and the Held-Suarez symmetries as augmentation
(``--augment lat_mirror --augment lon_roll``; never for real data):

    python tools/finetune_default.py --data nature-seed1.zarr --out ft --equal-rows \
        --train-end 2002-03-10T18 --exclude 2000-05-11..2000-07-24T18 \
        --val-start 2000-05-11 --val-end 2000-05-20T18 --augment lat_mirror --augment lon_roll
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from xdiffsr.train import TrainConfig, Trainer

VARIABLES = ("t850", "t500", "t250", "u850", "u500", "u250", "v850", "v500", "v250", "z850",
             "z500", "z250", "sp")


def config(args: argparse.Namespace) -> TrainConfig:
    unet = {"lat_padding": args.padding}
    if args.lat_embedding:  # only when asked: runs without it resume with the same config
        unet["lat_embedding"] = True
    return TrainConfig(
        data=str(args.data), variables=VARIABLES, train_start=args.train_start,
        train_end=args.train_end, train_exclude=tuple(tuple(p.split("..")) for p in args.exclude),
        augment=tuple(args.augment),
        val_start=args.val_start, val_end=args.val_end, val_samples=32,
        init_from=args.init_from, unet=unet,
        sigma_mix=args.sigma_mix, sigma_mix_range=(0.3, 10.0),
        area_weighted=not args.equal_rows,
        batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay, warmup_steps=100,
        steps=args.steps,
        ema_halflife_samples=args.ema_halflife, ema_rampup_ratio=0.1, grad_clip=1.0,
        val_every=args.val_every, log_every=25, ckpt_every=100_000,
        ckpt_minutes=args.ckpt_minutes, keep_checkpoints=2, seed=args.seed,
        threads=args.threads, name="xdiffsr-default",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="nature-run zarr store")
    p.add_argument("--out", type=Path, required=True, help="folder of checkpoints and log")
    p.add_argument("--init-from", default="default", help="model file or registered name")
    p.add_argument("--train-start", default=None, help="first training time (inclusive)")
    p.add_argument("--train-end", required=True, help="last training time (inclusive)")
    p.add_argument("--exclude", action="append", default=[], metavar="START..END",
                   help="a period left out of training (validation, evaluation); repeatable")
    p.add_argument("--augment", action="append", default=[], choices=("lon_roll", "lat_mirror"),
                   help="symmetry of the Held-Suarez climate applied to the batches; repeatable")
    p.add_argument("--val-start", default=None)
    p.add_argument("--val-end", default=None)
    p.add_argument("--minutes", type=float, default=None, help="stop after this long")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--padding", default="zeros", choices=("zeros", "pole"))
    p.add_argument("--lat-embedding", action="store_true",
                   help="add a learned latitude embedding (zero at the start), which gives the "
                        "network the latitude that --padding pole takes away")
    p.add_argument("--equal-rows", action="store_true",
                   help="weight every latitude row equally in the loss (default: cos-latitude "
                        "weights, which leave the polar rows almost untrained)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-decay", default="constant", choices=("constant", "cosine"),
                   help="cosine: the learning rate falls to 0 at --steps (a run of known length)")
    p.add_argument("--sigma-mix", type=float, default=0.5)
    p.add_argument("--ema-halflife", type=float, default=4000.0, help="in samples")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--ckpt-minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=24)
    args = p.parse_args()
    trainer = Trainer(config(args), out_dir=args.out, progress=False)
    print(f"step {trainer.step}, bf16 {trainer.bf16}, {trainer.unet_config.lat_padding} padding, "
          f"wind channels {trainer.unet_config.vector_channels}", flush=True)
    if args.minutes is not None:  # stop by the clock: SIGTERM ourselves, the run checkpoints
        import os
        import signal
        import threading

        timer = threading.Timer(60 * args.minutes, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
    t0 = time.perf_counter()
    path = trainer.run()
    print(f"stopped at step {trainer.step} after {time.perf_counter() - t0:.0f} s: {path}")


if __name__ == "__main__":
    main()
