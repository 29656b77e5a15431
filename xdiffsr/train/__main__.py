"""Command line: ``python -m xdiffsr.train`` (also under ``torchrun``).

Examples
--------
::

    python -m xdiffsr.train --data era5.zarr --variables temperature@850 geopotential@500 \\
        --train-end 2015-12-31 --val-end 2016-12-31 --steps 200000 --out runs/era5
    torchrun --nproc_per_node 4 -m xdiffsr.train --config run.json --out runs/era5
    python -m xdiffsr.train --config run.json --out runs/era5 --max-steps-this-run 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from .config import TrainConfig
from .loop import train

# Options given on the command line override the --config file.
_SIMPLE = {
    "data": str, "train_start": str, "train_end": str, "val_start": str, "val_end": str,
    "val_samples": int, "unet_preset": str, "batch_size": int, "lr": float,
    "weight_decay": float, "warmup_steps": int, "lr_decay": str, "steps": int,
    "ema_halflife_samples": float, "grad_clip": float, "P_mean": float, "P_std": float,
    "sigma_data": float, "val_every": int, "log_every": int, "ckpt_every": int, "seed": int,
    "max_memory_gb": float, "name": str,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xdiffsr.train",
                                description="Train an EDM diffusion prior on xarray/zarr data.")
    p.add_argument("--config", help="JSON file of TrainConfig fields")
    p.add_argument("--out", required=True, help="output folder (checkpoints, log, model)")
    p.add_argument("--variables", nargs="+",
                   help="channels: flat names (t850) or name@level_hPa (temperature@850)")
    p.add_argument("--names", nargs="+", help="channel names (one per variable)")
    for name, typ in _SIMPLE.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ)
    p.add_argument("--unet", help="JSON object of UNetConfig overrides, e.g. "
                                  "'{\"model_channels\": 32}'")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default=None)
    p.add_argument("--device", help="torch device (default cuda:LOCAL_RANK or cpu)")
    p.add_argument("--max-steps-this-run", type=int, help="stop after this many steps")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge ``--config`` (if any) with the options given on the command line."""
    base = TrainConfig.from_json(args.config).to_dict() if args.config else {}
    over = {k: getattr(args, k) for k in (*_SIMPLE, "variables", "names")
            if getattr(args, k) is not None}
    if args.unet is not None:
        over["unet"] = json.loads(args.unet)
    if args.bf16 is not None:
        over["bf16"] = {"auto": None, "on": True, "off": False}[args.bf16]
    merged = {**base, **over}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict({k: v for k, v in merged.items() if k in known})


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from_args(args)
    path = train(cfg, out_dir=args.out, resume=not args.no_resume, device=args.device,
                 max_steps_this_run=args.max_steps_this_run, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
