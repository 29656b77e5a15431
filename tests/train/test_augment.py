"""Symmetry augmentation of training batches and periods left out of the training split
(``xdiffsr.train.augment``, ``TrainConfig.augment``/``train_exclude``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import TIMES, synthetic, tiny_config  # tests/train is on sys.path

from xdiffsr import load_model
from xdiffsr.errors import ArgumentError
from xdiffsr.grid import grid_of
from xdiffsr.train import TrainConfig, Trainer, split_by_time
from xdiffsr.train.augment import Augmentation, northward_channels

VARS = ["t850", "u500", "v500", "v10"]


def grid(**sel):
    return grid_of(synthetic().isel(**sel), argname="data")


def batch(B=6, C=4, H=8, W=16, seed=0):
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed))


def test_northward_channels_are_the_v_components():
    assert northward_channels(VARS) == (2, 3)
    assert northward_channels(["t850", "u850"]) == ()


def test_lat_mirror_reflects_rows_and_flips_northward_wind():
    g = grid()
    H, W = g.shape
    x = batch(H=H, W=W)
    aug = Augmentation(["lat_mirror"], g, VARS)
    y = aug(x, torch.Generator().manual_seed(1))
    mirrored = [not torch.equal(y[b], x[b]) for b in range(x.shape[0])]
    assert 0 < sum(mirrored) < x.shape[0]  # about half of the states, each whole
    for b in range(x.shape[0]):
        if mirrored[b]:
            # row i of the result is row H-1-i of the state; v changes sign, t and u do not
            torch.testing.assert_close(y[b, :2], x[b, :2].flip(1), rtol=0, atol=0)
            torch.testing.assert_close(y[b, 2:], -x[b, 2:].flip(1), rtol=0, atol=0)
        else:
            torch.testing.assert_close(y[b], x[b], rtol=0, atol=0)


def test_lon_roll_shifts_each_state_by_whole_cells():
    g = grid()
    H, W = g.shape
    x = batch(B=8, H=H, W=W)
    y = Augmentation(["lon_roll"], g, VARS)(x, torch.Generator().manual_seed(2))
    shifts = []
    for b in range(x.shape[0]):
        match = [k for k in range(W) if torch.equal(y[b], torch.roll(x[b], k, dims=-1))]
        assert len(match) == 1  # one whole-cell rotation of the whole state, all channels
        shifts.append(match[0])
    assert len(set(shifts)) > 1


def test_no_augmentation_passes_batches_through():
    x = batch()
    aug = Augmentation([], grid(), VARS)
    assert not aug and aug(x, torch.Generator()) is x


def test_symmetries_need_a_grid_where_they_hold():
    with pytest.raises(ArgumentError, match=r"'lat_mirror'.*symmetric about it"):
        Augmentation(["lat_mirror"], grid(lat=slice(2, None)), VARS)
    with pytest.raises(ArgumentError, match=r"'lon_roll'.*not global"):
        Augmentation(["lon_roll"], grid(lon=slice(0, 8)), VARS)
    # regional in longitude but symmetric in latitude: the mirror alone is fine
    Augmentation(["lat_mirror"], grid(lon=slice(0, 8)), VARS)


def test_config_refuses_unknown_symmetries_and_bad_periods():
    with pytest.raises(ArgumentError, match=r"unknown symmetries \['flip'\].*lon_roll"):
        tiny_config(augment=["flip"])
    with pytest.raises(ArgumentError, match="augment must be a list"):
        tiny_config(augment="lon_roll")
    with pytest.raises(ArgumentError, match="ends before it starts"):
        tiny_config(train_exclude=[("2000-01-05", "2000-01-02")])
    with pytest.raises(ArgumentError, match=r"train_exclude must be a list of \(start, end\)"):
        tiny_config(train_exclude=["2000-01-05"])
    with pytest.raises(ArgumentError, match="train_exclude must be"):
        tiny_config(train_exclude=[("2000-01-05", "not a date")])
    cfg = tiny_config(augment=["lat_mirror", "lon_roll"],
                      train_exclude=[("2000-01-03", "2000-01-04T18")])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_excluded_periods_leave_the_training_split():
    ds = synthetic()
    train, val = split_by_time(ds, val_start="2000-01-05", val_end="2000-01-06T18",
                               exclude=[("2000-01-05", "2000-01-06T18"),
                                        ("2000-01-10", "2000-01-10T06")])
    t = pd.DatetimeIndex(train.time.values)
    assert t.size == TIMES.size - 8 - 2
    assert not ((t >= "2000-01-05") & (t <= "2000-01-06T18")).any()
    assert "2000-01-10T12" in t and "2000-01-10T06" not in t
    assert val.sizes["time"] == 8
    with pytest.raises(ArgumentError, match=r"shares 8 times.*train_exclude=\[\('2000-01-05'"):
        split_by_time(ds, val_start="2000-01-05", val_end="2000-01-06T18")
    with pytest.raises(ArgumentError, match="leaves no training times"):
        split_by_time(ds, exclude=[("1999-01-01", "2001-01-01")])


def test_training_sees_the_same_batches_some_mirrored(tmp_path, monkeypatch):
    seen = []
    cfg = tiny_config(steps=3, augment=["lat_mirror"],
                      train_exclude=[("2000-01-02", "2000-01-02T18")])
    tr = Trainer(cfg, out_dir=tmp_path / "a", dataset=synthetic(), progress=False)
    assert tr.train_ds.sizes["time"] == 48 - 4
    loss_fn = tr.loss_fn

    def spy(net, x, generator=None):
        seen.append(x.clone())
        return loss_fn(net, x, generator=generator)

    monkeypatch.setattr(tr, "loss_fn", spy)
    meta = load_model(tr.run()).metadata["data"]
    assert meta["augment"] == ["lat_mirror"] and meta["train"]["times"] == 44
    assert meta["train"]["excluded"] == [["2000-01-02", "2000-01-02T18"]]
    plain = Trainer(tiny_config(steps=3, train_exclude=[("2000-01-02", "2000-01-02T18")]),
                    out_dir=tmp_path / "b", dataset=synthetic(), progress=False)
    raw = []
    monkeypatch.setattr(plain, "loss_fn",
                        lambda net, x, generator=None: raw.append(x.clone()) or loss_fn(
                            net, x, generator=generator))
    plain.run()
    # the same states, some of them mirrored (rows reversed; t850 and z500 keep their sign)
    flipped = 0
    for a, b in zip(seen, raw, strict=True):
        for i in range(a.shape[0]):
            if torch.equal(a[i], b[i]):
                continue
            torch.testing.assert_close(a[i], b[i].flip(1), rtol=0, atol=0)
            flipped += 1
    assert 0 < flipped < sum(x.shape[0] for x in raw)
    assert np.isfinite(tr.validation_loss())


def test_validation_without_start_follows_the_training_split():
    ds = synthetic()
    train, val = split_by_time(ds, train_end="2000-01-10T18", val_end="2000-01-12T18")
    assert pd.Timestamp(val.time.values[0]) == pd.Timestamp("2000-01-11")
    assert val.sizes["time"] == 8 and train.sizes["time"] == 40
    with pytest.raises(ArgumentError, match="shares 48 times"):
        split_by_time(ds, val_end="2000-01-12T18")


def test_cli_options_reach_the_config():
    from xdiffsr.train.__main__ import config_from_args, parser

    args = parser().parse_args(["--out", "o", "--variables", "t850", "--augment", "lat_mirror",
                                "lon_roll", "--train-exclude", "2000-01-05..2000-01-06T18"])
    cfg = config_from_args(args)
    assert cfg.augment == ("lat_mirror", "lon_roll")
    assert cfg.train_exclude == (("2000-01-05", "2000-01-06T18"),)
    with pytest.raises(ArgumentError, match=r"--train-exclude '2000-01-05'.*START\.\.END"):
        config_from_args(parser().parse_args(["--out", "o", "--variables", "t850",
                                              "--train-exclude", "2000-01-05"]))
