# %% [markdown]
# # Training a prior with `xdiffsr.train`
#
# A diffusion prior is trained once, on many states of a climate, and then conditioned on any
# observations at sampling time. In this tutorial you will
#
# 1. prepare a training set as an `xarray.Dataset` (flat variables on `(time, lat, lon)`);
# 2. train a **tiny** EDM prior for a few dozen steps on the CPU with `xdiffsr.train`;
# 3. look at the files it writes (safetensors weights with JSON metadata, a log, the config);
# 4. reload the model with `xdiffsr.load_model(path)` and sample from it.
#
# **This is a smoke-scale run.** It trains a 76k-parameter network on 16 x 32 fields made from
# the two held-out OSSE states for about a minute of CPU, which teaches it almost nothing: the
# samples at the end are noise-like fields, not weather. The point is the workflow; the files and
# the calls are those of a real run. The shipped default model was trained with the same code on
# 5,599 states (4 years, 6-hourly) of the Held-Suarez nature run, a 2.5M-parameter network, 3,000
# steps of batch 64 on one H100 GPU (about 6 minutes): see the [model card](../model-card.md) and
# the [training guide](../training.md) for real runs (WeatherBench 2 / ERA5 zarr stores,
# several GPUs, resuming). Everything is written to a temporary folder.

# %%
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from safetensors import safe_open

import xdiffsr
from xdiffsr.evaluation.demo import load_heldout
from xdiffsr.osse import coarsen
from xdiffsr.train import TrainConfig, train

start = time.perf_counter()
tmp = Path(tempfile.mkdtemp(prefix="xdiffsr-train-"))

# %% [markdown]
# ## A training set
#
# Two variables (t850, z500) of the two packaged OSSE states, averaged conservatively to the
# 16 x 32 grid (the tiny U-Net needs sizes divisible by 4). Two states are far too few, so we
# add their **zonal rotations**: the Held-Suarez climate has zonally symmetric forcing and flat
# orography, so a state shifted in longitude is an equally valid state of that climate. Sixteen
# shifts give 32 states; the last four (rotations of the second state) are the validation split.
# Real training sets need no such trick, and with real orography it would be wrong.

# %%
states = coarsen(load_heldout()[["t850", "z500"]])  # (2, 16, 32)
rotated = [states.roll(lon=shift, roll_coords=False) for shift in range(0, 32, 2)]
data = xr.concat(rotated, dim="time")
data["time"] = pd.date_range("2000-01-01", periods=data.sizes["time"], freq="6h")
train_end = str(data.time.values[-5])[:19]
data

# %% [markdown]
# ## Configuration and training
#
# `TrainConfig` is a frozen dataclass holding everything that defines a run (and is written as
# `config.json`). Here: the `tiny` U-Net preset, batch 8, a learning rate with a short warm-up,
# 60 steps, a short EMA half-life (the model file holds the EMA weights), validation every 20
# steps. `device="cpu"` and `progress=False` keep the output quiet.

# %%
config = TrainConfig(
    variables=("t850", "z500"), train_end=train_end, val_samples=4,
    unet_preset="tiny", batch_size=8, lr=2e-3, warmup_steps=10, steps=60,
    ema_halflife_samples=100, val_every=20, log_every=10, ckpt_every=60, seed=0,
    name="tiny-prior",
)
t0 = time.perf_counter()
path = train(config, out_dir=tmp / "run", dataset=data, device="cpu", progress=False)
print(f"trained in {time.perf_counter() - t0:.1f} s -> {path.name}")
sorted(p.name for p in (tmp / "run").iterdir())

# %% [markdown]
# The loss curve from `log.jsonl`. The EDM loss of an untrained network is about 1 (the mean
# square of the normalised data); the default model reached 0.16 after 3,000 GPU steps.

# %%
log = pd.DataFrame([json.loads(line) for line in (tmp / "run" / "log.jsonl").read_text()
                    .splitlines()])
fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
ax.plot(log.step, log["loss"], "o-", label="training loss (mean since last line)")
val = log.dropna(subset=["val_loss"])
ax.plot(val.step, val.val_loss, "s--", label="validation loss")
ax.plot(val.step, val.val_loss_ema, "^:", label="validation loss, EMA weights")
ax.set_xlabel("optimiser step")
ax.set_ylabel("EDM loss (normalised units²)")
ax.set_title("a smoke-scale run: 60 steps on the CPU")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The model file
#
# One safetensors file: tensors only (never a pickle, so reading it cannot run code) with JSON
# metadata in its header: the architecture, the grid, the variables and units, the normalisation
# and the training record.

# %%
with safe_open(path, "pt") as f:
    header = f.metadata()
print(sorted(header))  # the JSON description is under "xdiffsr"
description = json.loads(header["xdiffsr"])
print(sorted(description))
print(json.dumps(description["metadata"]["training"], indent=1)[:600])

# %% [markdown]
# ## Reload and sample
#
# `xdiffsr.load_model(path)` reads it (and any registered name, like `"default"`); the result
# goes wherever a prior goes. Unguided samples (`guidance="none"`) show what the prior learned;
# a guided run would condition them on observations as in the other tutorials.

# %%
tiny = xdiffsr.load_model(path)
print(tiny)
samples = xr.Dataset(coords={"time": [np.datetime64("2004-01-01")]}).diffsr.super_resolve(
    [], model=tiny, guidance="none", members=3, steps=12, seed=0)
fig, axes = plt.subplots(1, 4, figsize=(13, 2.6), layout="constrained", sharey=True)
panels = [("a training state", data.t850.isel(time=0))] + [
    (f"sample {m}", samples.t850.isel(time=0, member=m)) for m in range(3)]
lo, hi = float(data.t850.min()), float(data.t850.max())
for ax, (title, da) in zip(axes, panels):
    im = ax.pcolormesh(da.lon, da.lat, da, vmin=lo, vmax=hi, cmap="RdYlBu_r", shading="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("longitude (°E)")
axes[0].set_ylabel("latitude (°N)")
fig.colorbar(im, ax=axes, label="t850 (K)")
plt.show()

# %%
print(f"total {time.perf_counter() - start:.0f} s (information only; it varies with the load)")

# %% [markdown]
# ## What this shows
#
# The samples share the training data's mean and range (the normalisation alone guarantees
# that) but not its structure: 60 steps on 28 states is nowhere near a trained prior. A useful
# prior needs years of states, a network of millions of parameters and thousands of steps on a
# GPU; `python -m xdiffsr.train --config run.json --out runs/era5` on a machine with GPUs, resumed
# in stretches if need be, is the way (`docs/training.md`).
