"""Weights through pooch: packaged registry, loopback HTTP mirror, cache, hash checks."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xdiffsr
import xdiffsr.models.registry as weights
from tests.conftest import tiny_model

NAME = "xdiffsr-tiny"
FILE = NAME + ".safetensors"


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    model = tiny_model("tiny-served")
    return model.save(tmp_path_factory.mktemp("model") / FILE).read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        self.server.gets.append(self.path)
        super().do_GET()


@pytest.fixture
def served(tmp_path):
    """A folder served on 127.0.0.1 (loopback only); ``.gets`` records the GET paths."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    server.gets = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    server.root, server.url = root, f"http://127.0.0.1:{server.server_address[1]}/weights"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def env(tmp_path, monkeypatch, model_bytes, served):
    """Registry with the tiny model (and the default alias), an empty package folder, a mirror."""
    (served.root / "weights").mkdir()
    for fname in (FILE, "xdiffsr-default.safetensors"):
        (served.root / "weights" / fname).write_bytes(model_bytes)
    reg = tmp_path / "registry.txt"
    reg.write_text(
        "# test registry\n"
        f"{FILE} sha256:{sha256(model_bytes)}\n"
        f"xdiffsr-default.safetensors  {sha256(model_bytes).upper()}  # bare hex is sha256\n"
    )
    pkg = tmp_path / "pkgdata"
    pkg.mkdir()
    monkeypatch.setattr(weights, "REGISTRY_FILE", reg)
    monkeypatch.setattr(weights, "DATA_DIR", pkg)
    monkeypatch.setenv("XDIFFSR_WEIGHTS_URL", served.url)
    monkeypatch.setenv("XDIFFSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_registry_reads_comments_and_normalises_hashes(env, model_bytes):
    reg = weights.registry()
    assert reg == {
        FILE: f"sha256:{sha256(model_bytes)}",
        "xdiffsr-default.safetensors": f"sha256:{sha256(model_bytes)}",
    }


def test_registry_rejects_malformed_line(tmp_path):
    bad = tmp_path / "registry.txt"
    bad.write_text("# fine\nmodel.safetensors sha256:abc\n")
    with pytest.raises(xdiffsr.ModelError, match=r"registry.txt:2.*64 hex"):
        weights.registry(bad)


def test_packaged_registry_parses():
    # the real packaged file: header comments only, or well-formed lines
    assert weights.REGISTRY_FILE.is_file()
    assert all(h.startswith("sha256:") for h in weights.registry().values())


def test_first_call_downloads_second_hits_cache(env, served, model_bytes, capfd):
    path = weights.fetch_weights(NAME, progress=True)
    assert served.gets == [f"/weights/{FILE}"]
    assert path == env / FILE and sha256(path.read_bytes()) == sha256(model_bytes)
    assert "100%" in capfd.readouterr().err  # tqdm's progress bar
    model = weights.load_model(NAME)
    assert served.gets == [f"/weights/{FILE}"]  # no new request
    assert model.variables == ("t850", "z500") and model.name == "tiny-served"


def test_alias_and_file_name_resolve(env, served):
    assert weights.fetch_weights("default", progress=False).name == "xdiffsr-default.safetensors"
    assert weights.fetch_weights(FILE, progress=False).name == FILE
    assert sorted(served.gets) == sorted(
        ["/weights/xdiffsr-default.safetensors", f"/weights/{FILE}"]
    )


def test_tampered_download_is_refused_and_not_kept(env, served, model_bytes):
    bad = bytearray(model_bytes)
    bad[-1] ^= 0xFF
    (served.root / "weights" / FILE).write_bytes(bytes(bad))
    with pytest.raises(xdiffsr.ModelError) as err:
        weights.load_model(NAME, progress=False)
    msg = str(err.value)
    assert sha256(model_bytes) in msg and sha256(bytes(bad)) in msg
    assert f"{served.url}/{FILE}" in msg and "XDIFFSR_WEIGHTS_URL" in msg
    assert served.gets == [f"/weights/{FILE}"]
    assert not env.exists() or list(env.iterdir()) == []  # nor any temporary file


def test_tampered_cache_is_downloaded_again(env, served, model_bytes):
    path = weights.fetch_weights(NAME, progress=False)
    path.write_bytes(b"not the released weights")
    with pytest.warns(xdiffsr.XDiffSRWarning, match="cached model file.*expected sha256:"):
        again = weights.fetch_weights(NAME, progress=False)
    assert again == path and served.gets == [f"/weights/{FILE}"] * 2
    assert sha256(again.read_bytes()) == sha256(model_bytes)


def test_tampered_cache_without_network_is_refused_and_removed(env, monkeypatch):
    env.mkdir()
    (env / FILE).write_bytes(b"tampered")
    url = _closed_port_url()
    monkeypatch.setenv("XDIFFSR_WEIGHTS_URL", url)
    with (
        pytest.warns(xdiffsr.XDiffSRWarning, match="cached model file"),
        pytest.raises(xdiffsr.ModelError, match="cannot download") as err,
    ):
        weights.load_model(NAME, progress=False)
    assert url + FILE in str(err.value) and "XDIFFSR_CACHE" in str(err.value)
    assert not (env / FILE).exists()


def test_missing_on_mirror_is_a_model_error(env, served):
    (served.root / "weights" / FILE).unlink()
    with pytest.raises(xdiffsr.ModelError, match="404"):
        weights.fetch_weights(NAME, progress=False)


def test_unknown_name_lists_available(env, served):
    with pytest.raises(xdiffsr.ModelError, match="unknown model 'nope'") as err:
        weights.load_model("nope")
    assert NAME in str(err.value) and "xdiffsr-default" in str(err.value)
    other = {"a.safetensors": "sha256:" + "0" * 64}
    with pytest.raises(xdiffsr.ModelError, match=r"available models: \['a'\]"):
        weights.fetch_weights(NAME, registry=other)
    assert served.gets == []


def test_paths_load_directly_and_missing_paths_keep_their_error(env, served, model_bytes, tmp_path):
    local = tmp_path / "mine.safetensors"
    local.write_bytes(model_bytes)
    assert weights.load_model(local).name == "tiny-served"
    assert weights.load_model(str(local)).name == "tiny-served"
    for missing in (tmp_path / FILE, str(tmp_path / "missing.safetensors"), "missing.safetensors"):
        with pytest.raises(xdiffsr.ModelError, match="no model file"):
            weights.load_model(missing)
    assert served.gets == []


def test_packaged_file_loads_offline(env, monkeypatch, model_bytes, served):
    monkeypatch.setenv("XDIFFSR_WEIGHTS_URL", _closed_port_url())
    (weights.DATA_DIR / "xdiffsr-default.safetensors").write_bytes(model_bytes)
    assert weights.fetch_weights("default") == weights.DATA_DIR / "xdiffsr-default.safetensors"
    m = weights.load_model("default")
    assert m.name == "tiny-served" and served.gets == [] and not env.exists()
    assert m.reference.name == "default"  # a worker without the file fetches it by name
    assert m.reference.sha256 == sha256(model_bytes)
    ds = xr.Dataset(coords={"time": pd.date_range("2020-01-01", periods=2, freq="6h")})
    df = pd.DataFrame(
        {
            "time": np.repeat(ds.time.values, 2),
            "lat": [10.0, -30.0] * 2,
            "lon": [5.0, 200.0] * 2,
            "variable": ["t850", "z500"] * 2,
            "value": [280.0, 54500.0, 279.0, 54400.0],
            "units": ["K", "m2 s-2"] * 2,
        }
    )
    out = ds.diffsr.super_resolve([df], model=m, members=2, steps=3)
    assert out["t850"].shape == (2, 2, 8, 16)
    assert np.isfinite(out["t850"].values).all() and np.isfinite(out["z500"].values).all()


def test_packaged_file_with_wrong_hash_is_not_used(env, served, model_bytes):
    (weights.DATA_DIR / FILE).write_bytes(b"corrupted install")
    with pytest.warns(xdiffsr.XDiffSRWarning, match="packaged model file"):
        path = weights.fetch_weights(NAME, progress=False)
    assert path == env / FILE and served.gets == [f"/weights/{FILE}"]
    assert sha256(path.read_bytes()) == sha256(model_bytes)


def test_environment_is_read_at_call_time(env, tmp_path, monkeypatch, served):
    other = tmp_path / "other-cache"
    monkeypatch.setenv("XDIFFSR_CACHE", str(other))
    assert weights.fetch_weights(NAME, progress=False) == other / FILE
    assert Path(weights.make_fetcher().abspath) == other
    monkeypatch.delenv("XDIFFSR_WEIGHTS_URL")
    assert weights.make_fetcher().base_url == weights.BASE_URL
