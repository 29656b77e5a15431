"""Train a latent (SLAMS) model in two stages from a nature-run zarr store.

Stage 1 trains the lat/lon autoencoder, stage 2 the EDM prior on its latents
(:func:`xdiffsr.train.latent.train_latent_model`); each stage stops at its step limit or after
its minutes. Prints the per-variable autoencoder reconstruction RMSE on the held-out times (the
times after the training range), and writes the model and a JSON log next to it.

Example::

    python tools/make_latent_model.py nature.zarr --train 2000-01-01 2000-12-31 \\
        --minutes 30 90 --out xdiffsr-latent.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from xdiffsr.train import TrainConfig, open_data
from xdiffsr.train.autoencoder import AutoencoderTrainConfig
from xdiffsr.train.latent import train_latent_model

DEFAULT_VARIABLES = ("t850", "t500", "t250")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store", help="nature-run zarr store (flat t850, t500, ... or level layout)")
    p.add_argument("--train", nargs=2, metavar=("START", "END"), required=True,
                   help="inclusive time range of the training split (ISO dates)")
    p.add_argument("--val", nargs=2, metavar=("START", "END"), default=None,
                   help="inclusive time range of the validation split (default: after --train)")
    p.add_argument("--minutes", nargs=2, type=float, metavar=("AE", "PRIOR"), default=(30, 90),
                   help="wall-clock minutes of stage 1 and stage 2")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--variables", nargs="+", default=list(DEFAULT_VARIABLES))
    p.add_argument("--ae-steps", type=int, default=1_000_000)
    p.add_argument("--prior-steps", type=int, default=1_000_000)
    p.add_argument("--latent-channels", type=int, default=8)
    p.add_argument("--factor", type=int, default=2)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--variational", action="store_true", help="a VAE (KL term)")
    p.add_argument("--tiny", action="store_true", help="tiny U-Net (smoke tests)")
    p.add_argument("--unet", default=None, metavar="JSON",
                   help='U-Net fields overriding the preset, e.g. \'{"model_channels": 32}\'')
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps of the prior")
    p.add_argument("--ae-batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate of the prior")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    out = Path(a.out)
    ds = open_data(a.store)
    ae = AutoencoderTrainConfig(
        latent_channels=a.latent_channels, factor=a.factor, channels=a.channels,
        variational=a.variational, steps=a.ae_steps, max_minutes=a.minutes[0],
        batch_size=a.ae_batch_size, seed=a.seed,
    )
    unet = {"channel_mult": [1, 2], "attn_levels": []} if a.tiny else {}
    unet.update(json.loads(a.unet) if a.unet else {})
    val = {"val_start": a.val[0], "val_end": a.val[1]} if a.val else {}
    prior = TrainConfig(
        variables=tuple(a.variables), train_start=a.train[0], train_end=a.train[1],
        **val, unet_preset="tiny" if a.tiny else "paper", unet=unet, batch_size=a.batch_size,
        lr=a.lr,
        steps=a.prior_steps, warmup_steps=a.warmup or min(1000, max(1, a.prior_steps // 10)),
        val_every=500, log_every=100, ckpt_every=1000, val_samples=16, seed=a.seed,
        name=out.stem,
    )
    model, log = train_latent_model(
        ds, a.variables, autoencoder=ae, prior=prior, out_dir=out.parent / f"{out.stem}-run",
        device=a.device, prior_minutes=a.minutes[1], progress=False,
    )
    model.save(out)
    out.with_suffix(".json").write_text(json.dumps(log, indent=1, default=float))
    rmse = log["autoencoder"]["heldout_rmse"]
    print(f"autoencoder held-out RMSE ({log['autoencoder']['heldout_split']} split):")
    for v, r in rmse.items():
        scale = np.asarray(log["normalisation"]["scale"])[list(rmse).index(v)]
        print(f"  {v:>6s}: {r:.4g} ({r / scale:.1%} of its std)")
    print(f"prior: {log['prior']['steps']} steps; wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
