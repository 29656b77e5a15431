"""Fine-tuning from a model file, pole padding, area weights, the noise-level mix, bf16 choice
and runs stopped by a signal (``xdiffsr.train``), on the tiny synthetic data of test_train."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from test_train import read_log, synthetic, tiny_config  # tests/train is on sys.path

from xdiffsr.core.precond import EDMLoss
from xdiffsr.errors import ArgumentError, ModelError
from xdiffsr.grid import grid_of
from xdiffsr.train import Trainer, train
from xdiffsr.train import loop as train_loop
from xdiffsr.train.checkpoint import latest_checkpoint, read_checkpoint
from xdiffsr.train.finetune import lat_weights, wind_channels
from xdiffsr.train.loop import derived_seed


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny model file trained for a few steps (zero latitude padding)."""
    out = tmp_path_factory.mktemp("base")
    return train(tiny_config(steps=6, name="base"), out_dir=out, dataset=synthetic(),
                 progress=False)


def test_finetune_starts_from_the_model_and_keeps_its_normalisation(tmp_path, base_model):
    from xdiffsr import load_model

    base = load_model(base_model)
    ds = synthetic(seed=3)
    ds["t850"] = ds["t850"] + 7.0  # different data statistics: the base's must be kept
    cfg = tiny_config(init_from=str(base_model), unet={"lat_padding": "pole"}, steps=4)
    tr = Trainer(cfg, out_dir=tmp_path, dataset=ds, progress=False)
    for k, v in base.precond.state_dict().items():
        torch.testing.assert_close(tr.precond.state_dict()[k], v, rtol=0, atol=0, msg=k)
        torch.testing.assert_close(tr.ema.state_dict()[k], v, rtol=0, atol=0, msg=k)
    np.testing.assert_array_equal(tr.center, base.center)
    np.testing.assert_array_equal(tr.scale, base.scale)
    assert tr.unet_config.lat_padding == "pole"
    path = tr.run()
    tuned = load_model(path)
    assert tuned.precond.net.config.lat_padding == "pole"
    info = tuned.metadata["training"]["fine_tuned_from"]
    assert info["init_from"] == str(base_model) and info["samples_seen"] == 6 * 8
    # the weights moved from the base
    a, b = tuned.precond.state_dict(), base.precond.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_finetune_adds_a_latitude_embedding_that_starts_at_zero(tmp_path, base_model):
    """Pole padding takes the edges away; a fine-tuning can add the latitude embedding (a new
    parameter, zero at the start: the base model's function) and never remove it."""
    from xdiffsr import load_model

    base = load_model(base_model)
    assert base.precond.net.config.lat_embedding is False
    unet = {"lat_padding": "pole", "lat_embedding": True}
    tr = Trainer(tiny_config(init_from=str(base_model), unet=unet, steps=4), out_dir=tmp_path,
                 dataset=synthetic(), progress=False)
    for k, v in base.precond.state_dict().items():
        torch.testing.assert_close(tr.precond.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert torch.equal(tr.ema.net.lat_embed, torch.zeros_like(tr.ema.net.lat_embed))
    path = tr.run()
    tuned = load_model(path)
    cfg = tuned.precond.net.config
    assert cfg.lat_embedding and cfg.lat_padding == "pole"
    assert tuned.precond.net.lat_embed.abs().max() > 0  # trained, saved, loaded
    with pytest.raises(ArgumentError, match=r"'unet.lat_embedding' differs.*drop trained"):
        Trainer(tiny_config(init_from=str(path), unet={"lat_embedding": False}),
                out_dir=tmp_path / "back", dataset=synthetic(), progress=False)


def test_finetune_refuses_another_model(tmp_path, base_model):
    ds = synthetic()
    with pytest.raises(ArgumentError, match=r"field 'variables' differs.*\['t850', 'z500'\]"):
        Trainer(tiny_config(variables=["t850"], init_from=str(base_model)), out_dir=tmp_path,
                dataset=ds, progress=False)
    coarse = ds.isel(lat=slice(None, None, 2), lon=slice(None, None, 2))
    with pytest.raises(ArgumentError, match=r"field 'lat' differs"):
        Trainer(tiny_config(init_from=str(base_model)), out_dir=tmp_path / "b", dataset=coarse,
                progress=False)
    with pytest.raises(ArgumentError, match=r"field 'unet.model_channels' differs.*8"):
        Trainer(tiny_config(init_from=str(base_model), unet={"model_channels": 16}),
                out_dir=tmp_path / "c", dataset=ds, progress=False)
    assert not list((tmp_path / "b").glob("ckpt-*"))


def test_truncated_checkpoint_is_refused_and_kept(tmp_path):
    cfg = tiny_config(steps=4)
    train(cfg, out_dir=tmp_path, dataset=synthetic(), progress=False)
    ckpt = latest_checkpoint(tmp_path)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        train(cfg.replace(steps=8), out_dir=tmp_path, dataset=synthetic(), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert ckpt.read_bytes() == data[: len(data) // 2]  # nothing overwritten


def test_pole_padding_refused_on_a_regional_grid(tmp_path):
    regional = synthetic().isel(lat=slice(2, 14), lon=slice(0, 16))
    with pytest.raises(ArgumentError, match=r"lat_padding='pole'.*regional"):
        Trainer(tiny_config(unet={"lat_padding": "pole"}), out_dir=tmp_path, dataset=regional,
                progress=False)


def test_wind_channels_found_by_name():
    assert wind_channels(["t850", "u850", "v500", "z250", "u10", "v10m", "sp"]) == (1, 2, 4, 5)


def test_lat_weights_are_cosine_with_mean_one():
    grid = grid_of(synthetic(), argname="ds")
    w = lat_weights(grid).reshape(-1).double()
    cos = torch.cos(torch.deg2rad(torch.tensor(np.asarray(grid.lat), dtype=torch.float64)))
    torch.testing.assert_close(w, cos / cos.mean(), rtol=1e-6, atol=1e-7)


def test_area_weighted_validation_loss_is_the_cosine_weighted_mean(tmp_path):
    ds = synthetic()
    cfg = tiny_config(area_weighted=True, bf16=False)
    tr = Trainer(cfg, out_dir=tmp_path, dataset=ds, progress=False)
    got = tr.validation_loss(tr.precond)
    # reference: the same noise (seeded per validation batch), weighted by hand
    loss_fn, bs = EDMLoss(sigma_data=1.0), cfg.batch_size
    cos = torch.cos(torch.deg2rad(torch.tensor(np.asarray(tr.grid.lat), dtype=torch.float32)))
    w = (cos / cos.mean()).reshape(1, 1, -1, 1)
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, tr.val_x.shape[0], bs):
            gen = torch.Generator().manual_seed(derived_seed(cfg.seed, i // bs, 0, 2))
            loss = loss_fn(tr.precond.eval(), tr.val_x[i:i + bs], generator=gen) * w
            total += float(loss.mean(dim=(1, 2, 3)).sum())
            n += loss.shape[0]
    assert got == pytest.approx(total / n, rel=1e-5)
    unweighted = Trainer(cfg.replace(area_weighted=False), out_dir=tmp_path / "u", dataset=ds,
                         progress=False).validation_loss()
    assert abs(unweighted - got) > 1e-4 * got


def test_sigma_mix():
    gen = torch.Generator().manual_seed(0)
    n = 20000
    plain = EDMLoss(P_mean=-1.2, P_std=1.2).sample_sigma(n, generator=gen)
    ref = (torch.randn((n, 1, 1, 1), generator=torch.Generator().manual_seed(0)) * 1.2 - 1.2).exp()
    torch.testing.assert_close(plain, ref, rtol=0, atol=0)  # no mix: the same draws as before
    all_mix = EDMLoss(mix=1.0, mix_range=(0.3, 10.0)).sample_sigma(n, generator=gen).log()
    lo, hi = math.log(0.3), math.log(10.0)
    assert all_mix.min() >= lo and all_mix.max() <= hi
    hist = torch.histc(all_mix, bins=5, min=lo, max=hi) / n  # log-uniform: equal bins
    assert (hist - 0.2).abs().max() < 0.02
    half = EDMLoss(mix=0.5).sample_sigma(n, generator=gen)
    inside = ((half >= 0.3) & (half <= 10)).float().mean()
    p_normal = 0.5 * (math.erf((math.log(10) + 1.2) / 1.2 / 2**0.5) + 1) - 0.5
    assert float(inside) == pytest.approx(0.5 + 0.5 * p_normal, abs=0.02)
    with pytest.raises(ArgumentError, match="mix"):
        EDMLoss(mix=1.5)


def test_bf16_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_loop, "bf16_supported", lambda device: (False, "no bf16 here"))
    with pytest.raises(ArgumentError, match="bf16=True, but no bf16 here"):
        Trainer(tiny_config(bf16=True), out_dir=tmp_path, dataset=synthetic(), progress=False)
    tr = Trainer(tiny_config(), out_dir=tmp_path / "a", dataset=synthetic(), progress=False)
    assert tr.bf16 is False
    assert capsys.readouterr().err.count("training in fp32: no bf16 here") == 1
    monkeypatch.setattr(train_loop, "bf16_supported", lambda device: (True, "native"))
    assert Trainer(tiny_config(), out_dir=tmp_path / "b", dataset=synthetic(),
                   progress=False).bf16 is True


_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = {paths!r}
    from test_train import synthetic, tiny_config
    from xdiffsr.train import train
    cfg = tiny_config(steps=400, log_every=1, val_every=1000, ckpt_every=1000)
    train(cfg, out_dir=sys.argv[1], dataset=synthetic(), progress=False)
""")


def test_sigterm_stops_with_a_checkpoint_and_the_run_resumes(tmp_path):
    """A run stopped by SIGTERM mid-way writes a checkpoint; the same call resumes it."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(paths=[here, root]))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=root,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for a few logged steps
        if (out / "log.jsonl").exists() and len(read_log(out)) >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    log = read_log(out)
    assert log[-1].get("stopped") == "signal"
    step = read_checkpoint(latest_checkpoint(out))[1]["step"]
    assert 0 < step < 400 and step == log[-1]["step"]
    assert (out / "model.safetensors").exists()
    # resume with the same call for a few more steps
    cfg = tiny_config(steps=step + 3, log_every=1, val_every=1000, ckpt_every=1000)
    train(cfg, out_dir=out, dataset=synthetic(), progress=False)
    assert read_checkpoint(latest_checkpoint(out))[1]["step"] == step + 3
