"""Training of EDM priors (``xdiffsr.train``) on tiny synthetic data.

The data: two variables (t850 in K, z500 in m2 s-2) on a 16 x 32 global grid, 64 six-hourly
times, each field a random combination of four smooth modes; the network is ``UNetConfig.tiny``.
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xdiffsr
from xdiffsr.errors import ArgumentError
from xdiffsr.train import (
    ChunkedSource,
    MemorySource,
    TrainConfig,
    Trainer,
    channel_name,
    chunked_order,
    flatten_levels,
    normalisation_stats,
    select_variables,
    split_by_time,
    train,
)
from xdiffsr.train.__main__ import main as cli_main
from xdiffsr.train.checkpoint import latest_checkpoint, read_checkpoint
from xdiffsr.train.data import batch_indices
from xdiffsr.train.loop import ema_beta, learning_rate

H, W, T = 16, 32, 64
LAT = -90 + 180 / H * (np.arange(H) + 0.5)
LON = 360 / W * np.arange(W)
TIMES = pd.date_range("2000-01-01", periods=T, freq="6h")
TRAIN_END = "2000-01-12T18"  # 48 training times, 16 validation times


def synthetic(seed: int = 0) -> xr.Dataset:
    g = np.random.default_rng(seed)
    la, lo = np.deg2rad(LAT)[:, None], np.deg2rad(LON)[None, :]
    modes = np.stack([np.cos(la) * np.cos(k * lo + k) for k in (1, 2, 3)]
                     + [np.sin(2 * la) * np.ones_like(lo)])
    f = np.einsum("tcm,mhw->tchw", g.normal(size=(T, 2, len(modes))), modes)
    coords = {"time": TIMES,
              "lat": ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north"}),
              "lon": ("lon", LON, {"standard_name": "longitude", "units": "degrees_east"})}
    return xr.Dataset({
        "t850": (("time", "lat", "lon"), 270 + 5 * f[:, 0], {"units": "K"}),
        "z500": (("time", "lat", "lon"), 54000 + 400 * f[:, 1], {"units": "m2 s-2"}),
    }, coords=coords)


def tiny_config(**kw) -> TrainConfig:
    base = {"variables": ["t850", "z500"], "train_end": TRAIN_END, "unet_preset": "tiny",
            "batch_size": 8, "lr": 2e-3, "warmup_steps": 5, "steps": 30, "val_every": 5,
            "log_every": 5, "ckpt_every": 100, "ema_halflife_samples": 50.0, "val_samples": 16}
    return TrainConfig(**{**base, **kw})


def read_log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ config


def test_config_round_trip_and_validation(tmp_path):
    cfg = tiny_config(variables={"t850": "temperature@850", "z5": "geopotential@500"},
                      unet={"model_channels": 4}, adam_betas=[0.9, 0.99])
    assert cfg.names == ("t850", "z5") and cfg.variables == ("temperature@850", "geopotential@500")
    again = TrainConfig.from_json(cfg.to_json(tmp_path / "c.json"))
    assert again == cfg and again.differences(cfg) == []
    u = cfg.unet_config(2, (16, 32))
    assert (u.in_channels, u.img_resolution, u.model_channels) == (2, (16, 32), 4)
    for bad in ({"batch_size": 0}, {"lr": -1.0}, {"variables": []}, {"unet": {"foo": 1}},
                {"lr_decay": "step"}, {"sigma_min": 100.0}, {"bf16": "yes"}):
        with pytest.raises(ArgumentError):
            tiny_config(**bad)
    with pytest.raises(ArgumentError, match="in_channels"):
        tiny_config(unet={"in_channels": 3}).unet_config(2, (16, 32))
    with pytest.raises(ArgumentError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"variables": ["t850"], "learning_rate": 1.0})


def test_schedules_follow_their_formulas():
    cfg = tiny_config(lr=1e-3, warmup_steps=10, steps=110, lr_decay="cosine", lr_min=1e-4,
                      ema_halflife_samples=1000.0, ema_rampup_ratio=0.5, batch_size=8)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)  # (0 + 1) / 10 of lr
    assert learning_rate(cfg, 9) == pytest.approx(1e-3)
    assert learning_rate(cfg, 60) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half way: cos = 0
    assert learning_rate(cfg, 110) == pytest.approx(1e-4)
    # half-life min(1000, 0.5 * 800) = 400 samples -> beta = 0.5 ** (8 / 400)
    assert ema_beta(cfg, 800) == pytest.approx(0.5 ** (8 / 400))
    assert ema_beta(cfg, 10**6) == pytest.approx(0.5 ** (8 / 1000))


# ------------------------------------------------------------------------------ data


def wb2_layout() -> xr.Dataset:
    """WeatherBench 2 style: temperature(time, level, latitude, longitude), levels in hPa."""
    ds = synthetic()
    levels = np.array([250, 500, 850])
    temp = np.stack([ds["t850"].values - 10 * i for i in (2, 1, 0)], axis=1)
    return xr.Dataset(
        {"temperature": (("time", "level", "latitude", "longitude"), temp, {"units": "K"}),
         "geopotential": (("time", "level", "latitude", "longitude"),
                          np.stack([ds["z500"].values * k for k in (2, 1, 0.5)], axis=1)),
         "surface_pressure": (("time", "latitude", "longitude"), 1e5 + 0 * ds["t850"].values)},
        coords={"time": TIMES, "level": ("level", levels, {"units": "hPa"}),
                "latitude": ("latitude", LAT, {"standard_name": "latitude",
                                               "units": "degrees_north"}),
                "longitude": ("longitude", LON, {"standard_name": "longitude",
                                                 "units": "degrees_east"})})


def test_level_selectors_and_flatten_levels():
    ds = wb2_layout()
    out = select_variables(ds, ["temperature@850", "geopotential@500", "surface_pressure"])
    assert list(out.data_vars) == ["t850", "z500", "surface_pressure"]
    np.testing.assert_array_equal(out["t850"].values, synthetic()["t850"].values)
    np.testing.assert_array_equal(out["z500"].values, synthetic()["z500"].values)
    assert out["t850"].dims == ("time", "latitude", "longitude")
    assert out["t850"].attrs["source_variable"] == "temperature@850"
    flat = flatten_levels(ds, {"temperature": "t", "surface_pressure": "sp"}, levels=[850, 250])
    assert list(flat.data_vars) == ["t850", "t250", "sp"]
    np.testing.assert_array_equal(flat["t250"].values, ds["temperature"].sel(level=250).values)
    assert channel_name("u_component_of_wind", 250) == "u250"
    assert channel_name("foo", 925.5) == "foo925.5"
    # levels in Pa are matched in hPa
    pa = ds.assign_coords(level=("level", ds["level"].values * 100, {"units": "Pa"}))
    np.testing.assert_array_equal(select_variables(pa, ["temperature@850"])["t850"].values,
                                  out["t850"].values)
    with pytest.raises(ArgumentError, match="level 700 hPa"):
        select_variables(ds, ["temperature@700"])
    with pytest.raises(ArgumentError, match="select a level"):
        select_variables(ds, ["temperature"])
    with pytest.raises(ArgumentError, match="not in the data"):
        select_variables(ds, ["humidity@850"])


def test_split_and_normalisation_statistics_with_dask():
    ds = synthetic().chunk({"time": 8})
    train_ds, val_ds = split_by_time(ds, train_end=TRAIN_END)
    assert train_ds.sizes["time"] == 48 and val_ds.sizes["time"] == 16
    center, scale = normalisation_stats(train_ds)
    raw = synthetic().isel(time=slice(0, 48))
    np.testing.assert_allclose(center, [raw[v].values.mean() for v in ("t850", "z500")],
                               rtol=1e-12)
    np.testing.assert_allclose(scale, [raw[v].values.std() for v in ("t850", "z500")],
                               rtol=1e-10)
    with pytest.raises(ArgumentError, match="NaN"):
        normalisation_stats(train_ds.where(train_ds["t850"] < 275))
    with pytest.raises(ArgumentError, match="holds no times"):
        split_by_time(ds, train_start="2010-01-01")


def test_chunked_order_and_source_match_memory():
    bounds = [(0, 5), (5, 13), (13, 20), (20, 31)]
    o = chunked_order(bounds, seed=3, epoch=1, window=2)
    assert sorted(o) == list(range(31))
    np.testing.assert_array_equal(o, chunked_order(bounds, seed=3, epoch=1, window=2))
    assert not np.array_equal(o, chunked_order(bounds, seed=3, epoch=2, window=2))
    sizes = np.array([5, 8, 7, 11])
    seg = np.repeat(np.arange(4), sizes)[o]  # chunk of each position
    _, first = np.unique(seg, return_index=True)
    p = np.sort(first)[2]  # where a third chunk first appears
    # the first window is two whole chunks, all of whose times come before the third chunk's
    assert len(np.unique(seg[:p])) == 2 and p == sizes[np.unique(seg[:p])].sum()

    ds = synthetic().chunk({"time": 8}).isel(time=slice(0, 48))
    center, scale = normalisation_stats(ds)
    mem = MemorySource(ds, center, scale)
    chk = ChunkedSource(ds, center, scale, window=2)
    assert chk.bounds == [(8 * i, 8 * i + 8) for i in range(6)]
    per_epoch = 48 // 8
    for step in range(per_epoch):
        idx = batch_indices(chk, step, 8, seed=0)
        assert len(np.unique(idx // 8)) <= 4  # at most two windows of two chunks
        np.testing.assert_array_equal(chk.fetch(idx).numpy(), mem.fetch(idx).numpy())
    assert chk.reads == 6  # each chunk read once per epoch
    np.testing.assert_allclose(mem.data.mean(dim=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(mem.data.std(dim=(0, 2, 3), unbiased=False), 1, atol=1e-5)


def test_batches_partition_epoch_across_ranks():
    src = MemorySource(synthetic().isel(time=slice(0, 48)), np.zeros(2), np.ones(2))
    seen = [batch_indices(src, s, 8, seed=1, rank=r, world=2) for s in range(6) for r in (0, 1)]
    assert all(len(i) == 4 for i in seen)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(48))


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    path = train(tiny_config(), out_dir=out, dataset=synthetic(), progress=False)
    return out, path


def test_training_decreases_validation_loss(trained):
    out, _ = trained
    val = [r["val_loss"] for r in read_log(out) if "val_loss" in r]
    assert len(val) == 7  # steps 0, 5, ..., 30
    # the output layer starts near zero, so D(x) ~ c_skip x: loss ~ E[y^2] of the validation
    # subset (1 for unit-variance data; EDM's weighting makes it independent of sigma)
    assert 0.7 < val[0] < 1.3
    assert np.mean(val[-2:]) < 0.93 * np.mean(val[:2]), val


def test_saved_model_loads_and_samples(trained):
    out, path = trained
    model = xdiffsr.load_model(path)
    assert model.variables == ("t850", "z500")
    assert model.units == {"t850": "K", "z500": "m2 s-2"}
    raw = synthetic().isel(time=slice(0, 48))
    np.testing.assert_allclose(model.center, [raw["t850"].values.mean(),
                                              raw["z500"].values.mean()], rtol=1e-12)
    meta = model.metadata
    assert meta["training"]["steps"] == 30 and meta["training"]["complete"]
    assert meta["data"]["train"]["times"] == 48 and meta["data"]["validation"]["times"] == 16
    assert TrainConfig.from_dict(meta["training"]["config"]) == tiny_config()
    # the saved weights are the EMA of the final checkpoint
    tensors, header = read_checkpoint(latest_checkpoint(out))
    assert header["step"] == 30
    for k, v in model.precond.state_dict().items():
        torch.testing.assert_close(v, tensors[f"ema.{k}"], rtol=0, atol=0)
    obs = pd.DataFrame({"time": TIMES[50], "lat": LAT[[3, 8]], "lon": LON[[5, 20]],
                        "variable": "t850", "value": [268.0, 275.0], "error": 1.0,
                        "units": "K"})
    ens = xr.Dataset(coords={"time": TIMES[50:51]}).diffsr.super_resolve(
        [obs], model=model, members=2, steps=3)
    assert ens["t850"].shape == (1, 2, H, W)
    assert np.isfinite(ens["t850"].values).all() and np.isfinite(ens["z500"].values).all()


def test_resume_equals_uninterrupted(tmp_path):
    cfg = tiny_config(steps=10, val_every=4, log_every=2, unet={"dropout": 0.1})
    ds = synthetic()
    train(cfg, out_dir=tmp_path / "a", dataset=ds, progress=False)
    for n in (4, 3, 100):  # three stretches: 4 + 3 + 3 steps
        train(cfg, out_dir=tmp_path / "b", dataset=ds, progress=False, max_steps_this_run=n)
    ta, ha = read_checkpoint(latest_checkpoint(tmp_path / "a"))
    tb, hb = read_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert ha["step"] == hb["step"] == 10
    assert sorted(ta) == sorted(tb)
    assert any(k.startswith("optim.") for k in ta) and any(k.startswith("ema.") for k in ta)
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)
    va = [r for r in read_log(tmp_path / "a") if "val_loss" in r]
    vb = [r for r in read_log(tmp_path / "b") if "val_loss" in r]
    assert [r["val_loss"] for r in va] == [r["val_loss"] for r in vb]
    # the parameters moved (the test would be vacuous otherwise)
    fresh = Trainer(cfg, out_dir=tmp_path / "c", dataset=ds, progress=False)
    assert not torch.equal(fresh.precond.state_dict()["net.enc_in.weight"].cpu(),
                           ta["model.net.enc_in.weight"])


def test_resume_refuses_changed_settings(tmp_path):
    ds = synthetic()
    train(tiny_config(steps=2), out_dir=tmp_path, dataset=ds, progress=False)
    with pytest.raises(ArgumentError, match=r"\['lr'\]"):
        train(tiny_config(steps=4, lr=1e-2), out_dir=tmp_path, dataset=ds, progress=False)
    # more steps is allowed
    path = train(tiny_config(steps=4), out_dir=tmp_path, dataset=ds, progress=False)
    assert xdiffsr.load_model(path).metadata["training"]["steps"] == 4


def test_zarr_input_streamed_by_chunks_and_cli(tmp_path):
    store = tmp_path / "data.zarr"
    synthetic().chunk({"time": 8}).to_zarr(store, zarr_format=2)
    cfg = tiny_config(data=str(store), steps=4, max_memory_gb=1e-6, window_chunks=2)
    trainer = Trainer(cfg, out_dir=tmp_path / "run", progress=False)
    assert isinstance(trainer.source, ChunkedSource) and trainer.source.window == 2
    path = trainer.run()
    assert xdiffsr.load_model(path).metadata["data"]["source"] == str(store)
    # the command line resumes the same run (config from the JSON written by train)
    rc = cli_main(["--config", str(tmp_path / "run" / "config.json"), "--out",
                   str(tmp_path / "run2"), "--steps", "3", "--no-progress",
                   "--max-memory-gb", "1"])
    assert rc == 0
    model = xdiffsr.load_model(tmp_path / "run2" / "model.safetensors")
    assert model.metadata["training"]["steps"] == 3


# ------------------------------------------------------------------------------ DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    trainer = Trainer(tiny_config(steps=4, val_every=2), out_dir=out, dataset=synthetic(),
                      device="cpu", progress=False)
    try:
        trainer.run()
        state = {k: v.contiguous() for k, v in trainer.precond.state_dict().items()}
        save_file(state, os.path.join(out, f"params-rank{rank}.safetensors"))
    finally:
        trainer.dist.close()


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_parameters(tmp_path):
    from safetensors.torch import load_file

    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    p0 = load_file(tmp_path / "params-rank0.safetensors")
    p1 = load_file(tmp_path / "params-rank1.safetensors")
    for k in p0:
        torch.testing.assert_close(p0[k], p1[k], rtol=0, atol=0, msg=k)
    tensors, header = read_checkpoint(latest_checkpoint(tmp_path))
    assert header["world_size"] == 2 and header["step"] == 4
    for k in p0:
        torch.testing.assert_close(tensors[f"model.{k}"], p0[k], rtol=0, atol=0)
    fresh = Trainer(tiny_config(), out_dir=tmp_path / "fresh", dataset=synthetic(),
                    progress=False)
    assert not torch.equal(fresh.precond.state_dict()["net.enc_in.weight"].cpu(),
                           p0["net.enc_in.weight"])
