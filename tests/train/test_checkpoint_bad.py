"""Damaged training checkpoints are refused with a ModelError naming the file."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from xdiffsr.errors import ModelError
from xdiffsr.train.checkpoint import load_into, read_checkpoint, restore_rng, write_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    net = torch.nn.Linear(3, 2)
    ema = copy.deepcopy(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = write_checkpoint(tmp_path / "ckpt-000001.safetensors", model=net, ema=ema,
                            optimizer=opt, header={"step": 1})
    return path, net, ema, opt


def _rewrite(path, **meta_changes):
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(meta_changes)
    save_file(tensors, str(path), metadata=meta)


def test_round_trip_still_works(ckpt):
    path, net, ema, opt = ckpt
    tensors, header = read_checkpoint(path)
    load_into(tensors, header, model=net, ema=ema, optimizer=opt)
    restore_rng(tensors, header)
    assert header["step"] == 1


def test_corrupted_json_header(ckpt):
    path = ckpt[0]
    _rewrite(path, xdiffsr='{"step": 1, "optimizer": ')
    with pytest.raises(ModelError, match=r"ckpt-000001\.safetensors.*JSON header .* damaged"):
        read_checkpoint(path)


def test_json_header_without_its_keys(ckpt):
    path = ckpt[0]
    _rewrite(path, xdiffsr=json.dumps({"step": 1}))
    with pytest.raises(ModelError, match=r"ckpt-000001\.safetensors.*lacks \['optimizer', 'rng'\]"):
        read_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_checkpoint(ckpt, keep):
    path = ckpt[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelError, match=r"cannot read checkpoint .*ckpt-000001\.safetensors"):
        read_checkpoint(path)


def test_garbage_checkpoint(ckpt):
    path = ckpt[0]
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=r"ckpt-000001\.safetensors"):
        read_checkpoint(path)


def test_damaged_optimizer_and_rng_state(ckpt):
    path, net, ema, opt = ckpt
    tensors, header = read_checkpoint(path)
    bad = {**header, "optimizer": {"param_groups": "x", "scalars": {}}}
    with pytest.raises(ModelError, match="optimiser state"):
        load_into(tensors, bad, model=net, ema=ema, optimizer=opt)
    with pytest.raises(ModelError, match="numpy RNG state"):
        restore_rng(tensors, {**header, "rng": {"numpy": [1, 2]}})
