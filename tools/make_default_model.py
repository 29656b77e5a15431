"""Make the default model: Held-Suarez nature run -> EDM training -> model file + held-out states.

Meant for a GPU machine in one sitting of a few minutes (GPU time comes in short stretches):

    python tools/make_default_model.py --out /tmp/default --years 4 --train-minutes 6

Writes ``OUT/xdiffsr-default.safetensors`` (EMA weights, metadata), ``OUT/osse-heldout.nc`` (two
held-out states of the validation period) and ``OUT/summary.json`` (timings, steps, losses).
Rerunning with the same ``--out`` resumes both the nature run and the training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_UNET = {
    "model_channels": 32,
    "channel_mult": [1, 2, 2, 2],
    "num_blocks": 2,
    "attn_levels": [3],
    "dropout": 0.0,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--years", type=float, default=4.0)
    p.add_argument("--spinup-days", type=float, default=300.0)
    p.add_argument("--val-days", type=float, default=60.0)
    p.add_argument("--train-minutes", type=float, default=6.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--truncation", type=int, default=42)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--dt-minutes", type=float, default=20.0)
    p.add_argument("--unet", default=None, help="JSON overriding the default U-Net settings")
    p.add_argument("--stretch", type=int, default=500, help="steps between time checks")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}

    from xdiffsr.osse import check_mass_conservation, held_suarez_check, nature_run

    t0 = time.perf_counter()
    ds = nature_run(
        args.out / "nature.zarr",
        years=args.years,
        spinup_days=args.spinup_days,
        truncation=args.truncation,
        layers=args.layers,
        dt_minutes=args.dt_minutes,
        progress=False,
    )
    summary["nature_run_s"] = round(time.perf_counter() - t0, 1)
    summary["nature_times"] = int(ds.sizes["time"])
    print(f"nature run: {summary['nature_run_s']} s, {ds.sizes['time']} states", flush=True)
    try:
        summary["held_suarez"] = held_suarez_check(ds.isel(time=slice(-400, None))).to_dict()
        summary["mass"] = str(check_mass_conservation(ds.isel(time=slice(-40, None))))
    except Exception as err:  # diagnostics only
        summary["diagnostics_error"] = repr(err)

    times = pd.DatetimeIndex(ds.time.values)
    val_start = times[-1] - pd.Timedelta(days=args.val_days)
    train_end = val_start - pd.Timedelta(hours=6)
    from xdiffsr.train import TrainConfig, Trainer

    cfg = TrainConfig(
        variables=tuple(str(v) for v in ds.data_vars),
        train_end=str(train_end),
        val_start=str(val_start),
        unet_preset="paper",
        unet=json.loads(args.unet) if args.unet else DEFAULT_UNET,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=500,
        steps=1_000_000,
        ema_halflife_samples=50_000,
        val_every=1000,
        log_every=200,
        ckpt_every=args.stretch,
        name="xdiffsr-default",
        max_memory_gb=8.0,
    )
    train_dir = args.out / "train"
    t1 = time.perf_counter()
    budget = args.train_minutes * 60
    trainer = Trainer(cfg, out_dir=train_dir, dataset=ds, progress=False)  # data loaded once
    summary["train_setup_s"] = round(time.perf_counter() - t1, 1)
    model_path = None
    while time.perf_counter() - t1 < budget:
        model_path = trainer.run(args.stretch)
    summary["train_steps"] = int(trainer.step)
    summary["train_s"] = round(time.perf_counter() - t1, 1)
    logs = (
        [
            json.loads(line)
            for line in (train_dir / "log.jsonl").read_text().splitlines()
            if line.strip()
        ]
        if (train_dir / "log.jsonl").exists()
        else []
    )
    summary["train_log_tail"] = logs[-5:]
    final = args.out / "xdiffsr-default.safetensors"
    final.write_bytes(Path(model_path).read_bytes())
    held = ds.sel(time=[times[-4], times[-2]]).load().astype(np.float32)
    enc = {v: {"zlib": True, "complevel": 4} for v in held.data_vars}
    held.to_netcdf(args.out / "osse-heldout.nc", encoding=enc)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
