"""Two-stage training of a latent model on a tiny synthetic grid, and the make_latent_model tool."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xdiffsr
from xdiffsr.errors import ArgumentError
from xdiffsr.models.latent import LatentDiffusionModel
from xdiffsr.train import TrainConfig
from xdiffsr.train.autoencoder import (
    AutoencoderTrainConfig,
    reconstruction_rmse,
    train_autoencoder,
)
from xdiffsr.train.latent import train_latent_model

H, W, T = 8, 16, 24
LAT = -90 + 180 / H * (np.arange(H) + 0.5)
LON = 360 / W * np.arange(W)
TIMES = pd.date_range("2000-01-01", periods=T, freq="6h")
ROOT = Path(__file__).resolve().parents[2]


def synthetic(seed: int = 0) -> xr.Dataset:
    """t850, t500, t250 (K): random combinations of three smooth modes per level."""
    g = np.random.default_rng(seed)
    la, lo = np.deg2rad(LAT)[:, None], np.deg2rad(LON)[None, :]
    modes = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la) + 0 * lo])
    f = np.einsum("tcm,mhw->tchw", g.normal(size=(T, 3, 3)), modes)
    coords = {"time": TIMES,
              "lat": ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north"}),
              "lon": ("lon", LON, {"standard_name": "longitude", "units": "degrees_east"})}
    return xr.Dataset({
        f"t{p}": (("time", "lat", "lon"), c + s * f[:, k], {"units": "K"})
        for k, (p, c, s) in enumerate(((850, 280.0, 6.0), (500, 255.0, 4.0), (250, 225.0, 3.0)))
    }, coords=coords)


def test_autoencoder_round_trips_a_smooth_field():
    """After 150 steps on 24 smooth states, the reconstruction RMSE is below 20 % of each
    variable's standard deviation (it starts near 100 %; about 15 % is reached)."""
    ds = synthetic()
    arr = np.stack([ds[v].values for v in ds.data_vars], axis=1)
    center, scale = arr.mean(axis=(0, 2, 3)), arr.std(axis=(0, 2, 3))
    x = torch.as_tensor((arr - center[:, None, None]) / scale[:, None, None], dtype=torch.float32)
    cfg = AutoencoderTrainConfig(latent_channels=4, factor=2, channels=16, steps=150, lr=3e-3,
                                 batch_size=8)
    ae, log = train_autoencoder(x, cfg, device="cpu", log_every=50)
    rmse = reconstruction_rmse(ae, x, scale)
    assert rmse.shape == (3,) and (rmse < 0.2 * scale).all(), rmse / scale
    assert log[-1]["step"] == 150 and log[-1]["loss"] < log[0]["loss"]
    untrained, _ = train_autoencoder(x, replace(cfg, steps=0), device="cpu")
    assert (reconstruction_rmse(untrained, x, scale) > 0.5 * scale).all()
    with pytest.raises(ArgumentError, match="channel_weights"):
        train_autoencoder(x, AutoencoderTrainConfig(steps=1, channel_weights=(1.0,)))


def test_two_stages_give_a_loadable_latent_model(tmp_path):
    ds = synthetic()
    prior = TrainConfig(variables=["t850", "t500", "t250"], train_end="2000-01-05",
                        unet_preset="tiny", unet={"channel_mult": [1, 2], "attn_levels": []},
                        batch_size=8, lr=2e-3, warmup_steps=2, steps=6, val_every=3,
                        log_every=3, ckpt_every=100, val_samples=4, name="tiny-latent")
    ae = AutoencoderTrainConfig(latent_channels=2, channels=8, steps=20, variational=True)
    model, log = train_latent_model(ds, ["t850", "t500", "t250"], autoencoder=ae, prior=prior,
                                    out_dir=tmp_path / "run", device="cpu")
    assert isinstance(model, LatentDiffusionModel)
    assert model.sample_shape == (2, 4, 8) and model.variables == ("t850", "t500", "t250")
    assert log["prior"]["steps"] == 6 and set(log["autoencoder"]["heldout_rmse"]) == set(
        model.variables)
    assert log["autoencoder"]["heldout_split"] == "validation"
    path = model.save(tmp_path / "m.safetensors")
    back = xdiffsr.load_model(path)
    assert isinstance(back, LatentDiffusionModel) and back.fingerprint() == model.fingerprint()
    # latent normalisation: the encoded training states have ~zero mean and unit std
    z = back.encode(np.stack([ds[v].values for v in back.variables], axis=1)[:16])
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2


def test_make_latent_model_tool(tmp_path, capsys):
    store = tmp_path / "nature.zarr"
    synthetic().to_zarr(store)
    out = tmp_path / "latent.safetensors"
    spec = importlib.util.spec_from_file_location(
        "make_latent_model", ROOT / "tools" / "make_latent_model.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    argv = [str(store), "--train", "2000-01-01", "2000-01-05", "--minutes", "0.5", "0.5",
            "--out", str(out), "--ae-steps", "10", "--prior-steps", "4", "--latent-channels",
            "2", "--channels", "8", "--tiny", "--device", "cpu", "--batch-size", "8"]
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out RMSE" in printed and "t500" in printed
    log = json.loads(out.with_suffix(".json").read_text())
    assert set(log["autoencoder"]["heldout_rmse"]) == {"t850", "t500", "t250"}
    assert isinstance(xdiffsr.load_model(out), LatentDiffusionModel)
