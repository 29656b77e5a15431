"""Bad weights files and environment: every one is a ModelError naming the file, field or
variable, the bad value and the fix (never a raw JSON, torch or pooch error)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import xdiffsr
import xdiffsr.models.registry as weights
from tests.conftest import tiny_model
from tests.models.test_registry import FILE, NAME, env, model_bytes, served  # noqa: F401
from xdiffsr.errors import ModelError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The state dict and metadata of a tiny model as written by ``DiffusionModel.save``."""
    model = tiny_model("bad-weights")
    state = {k: v.detach().clone().contiguous() for k, v in model.precond.state_dict().items()}
    return state, json.loads(json.dumps(model._header()))


def _write(path, state, header=None, *, raw=None):
    meta = {"format": "xdiffsr-model", "version": "1"}
    meta["xdiffsr"] = raw if raw is not None else json.dumps(header)
    save_file(state, str(path), metadata=meta)
    return path


def test_metadata_not_json(saved, tmp_path):
    p = _write(tmp_path / "m.safetensors", saved[0], raw="{not json")
    with pytest.raises(ModelError, match=r"m\.safetensors.*'xdiffsr' is not valid JSON"):
        xdiffsr.load_model(p)


def test_metadata_not_an_object(saved, tmp_path):
    p = _write(tmp_path / "m.safetensors", saved[0], raw="[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        xdiffsr.load_model(p)


@pytest.mark.parametrize("key", ["unet_config", "lat", "variables", "sigma_data"])
def test_metadata_missing_key(saved, tmp_path, key):
    header = {k: v for k, v in saved[1].items() if k != key}
    p = _write(tmp_path / "m.safetensors", saved[0], header)
    with pytest.raises(ModelError, match=rf"m\.safetensors.*lacks the key '{key}'"):
        xdiffsr.load_model(p)


def test_metadata_wrong_type(saved, tmp_path):
    p = _write(tmp_path / "m.safetensors", saved[0], {**saved[1], "center": "270"})
    with pytest.raises(ModelError, match="metadata 'center' is '270'"):
        xdiffsr.load_model(p)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda h: h["lat"].pop(), "'lat' length is 7"),
        (lambda h: h["lon"].append(400.0), "'lon' length is 17"),
        (lambda h: h["variables"].append("q700"), "'variables' count is 3"),
        (lambda h: h["center"].append(1.0), "'center' length is 3"),
        (lambda h: h["scale"].pop(), "'scale' length is 1"),
    ],
)
def test_metadata_inconsistent_with_network(saved, tmp_path, change, field):
    header = json.loads(json.dumps(saved[1]))
    change(header)
    p = _write(tmp_path / "m.safetensors", saved[0], header)
    with pytest.raises(ModelError, match=f"metadata {field}") as err:
        xdiffsr.load_model(p)
    assert "do not match its architecture" not in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(saved, tmp_path, bad):
    state = {k: v.clone() for k, v in saved[0].items()}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name].view(-1)[1] = bad
    p = _write(tmp_path / "nan.safetensors", state, saved[1])
    with pytest.raises(ModelError, match=rf"nan\.safetensors.*tensor '{name}' holds 1 NaN"):
        xdiffsr.load_model(p)


def test_truncated_weights_file(saved, tmp_path):
    p = _write(tmp_path / "m.safetensors", saved[0], saved[1])
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ModelError, match=r"m\.safetensors"):
        xdiffsr.load_model(p)


@pytest.mark.parametrize(
    "url, why",
    [
        ("example.org/weights", "no scheme"),
        ("ftp://example.org/weights/", "scheme 'ftp'"),
        ("https:///weights/", "no host"),
        ("weights", "no scheme"),
    ],
)
def test_malformed_weights_url(env, monkeypatch, url, why):  # noqa: F811
    monkeypatch.setenv("XDIFFSR_WEIGHTS_URL", url)
    with pytest.raises(ModelError, match=f"XDIFFSR_WEIGHTS_URL={url!r} has {why}") as err:
        xdiffsr.load_model(NAME)
    assert "sha256" not in str(err.value)


def test_file_url_mirror_works(env, monkeypatch, served, tmp_path):  # noqa: F811
    monkeypatch.setenv("XDIFFSR_WEIGHTS_URL", (served.root / "weights").as_uri())
    assert weights.fetch_weights(NAME, progress=False).name == FILE


def test_cache_folder_not_writable(env, monkeypatch, tmp_path):  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDIFFSR_CACHE", str(blocker / "cache"))
    with pytest.raises(ModelError, match=r"cache folder .*a-file.* is not writable.*XDIFFSR_CACHE"):
        xdiffsr.load_model(NAME)


def test_finite_model_still_loads(saved, tmp_path):
    p = _write(tmp_path / "ok.safetensors", saved[0], saved[1])
    m = xdiffsr.load_model(p)
    assert all(torch.isfinite(v).all() for v in m.precond.state_dict().values())
