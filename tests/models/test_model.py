"""DiffusionModel: safetensors save/load with JSON metadata, and sampling through super_resolve."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xdiffsr
from tests.conftest import TINY_LAT, TINY_LON, tiny_model

LAT, LON = TINY_LAT, TINY_LON


@pytest.fixture(scope="module")
def model():
    return tiny_model(
        "tiny-test",
        attrs={"t850": {"standard_name": "air_temperature"}},
        metadata={"training": "random weights"},
    )


def test_save_load_roundtrip(model, tmp_path):
    path = model.save(tmp_path / "m.safetensors")
    loaded = xdiffsr.load_model(path)
    assert loaded.variables == model.variables and loaded.units == model.units
    np.testing.assert_array_equal(loaded.grid.lat, LAT)
    np.testing.assert_array_equal(loaded.scale, model.scale)
    assert loaded.metadata == {"training": "random weights"}
    assert loaded.attrs["t850"]["standard_name"] == "air_temperature"
    x = torch.randn(2, 2, 8, 16)
    s = torch.tensor([0.3, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoiser()(x, s), model.denoiser()(x, s))
    # the header is plain JSON that other tools can read
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["xdiffsr"])
    assert header["unet_config"]["model_channels"] == 8


def test_load_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(xdiffsr.ModelError, match="not an xdiffsr model"):
        xdiffsr.load_model(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(xdiffsr.ModelError, match="cannot read"):
        xdiffsr.load_model(tmp_path / "junk.safetensors")
    with pytest.raises(xdiffsr.ModelError, match="no model file"):
        xdiffsr.load_model(tmp_path / "missing.safetensors")


def test_diffusion_model_samples_through_accessor(model):
    df = pd.DataFrame(
        {
            "time": pd.Timestamp("2020-01-01"),
            "lat": [10.0, -30.0],
            "lon": [5.0, 200.0],
            "variable": ["t850", "z500"],
            "value": [280.0, 54500.0],
            "units": ["K", "m2 s-2"],
        }
    )
    ds = xr.Dataset(coords={"time": pd.date_range("2020-01-01", periods=2, freq="12h")})
    with pytest.warns(xdiffsr.XDiffSRWarning, match="no observations"):
        out = ds.diffsr.super_resolve([df], model=model, members=3, steps=4, S_churn=2.0)
    assert out["t850"].shape == (2, 3, 8, 16)
    assert np.isfinite(out["t850"].values).all() and np.isfinite(out["z500"].values).all()
    assert "tiny-test" in out.attrs["model"]


# ---------------------------------------------------------------------------------------------
# One way to load a model: load_model, with the model's own reference and a per-process cache


def test_loaded_model_carries_its_reference(model, tmp_path):
    path = model.save(tmp_path / "ref.safetensors")
    xdiffsr.models.clear_model_cache()
    loaded = xdiffsr.load_model(path)
    ref = loaded.reference
    assert isinstance(ref, xdiffsr.ModelRef)
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ref.path == str(path.resolve()) and ref.name is None
    assert not hasattr(loaded, "source") and not hasattr(loaded, "_xdiffsr_ref")
    assert model.reference is None  # an in-memory model has none
    assert xdiffsr.models.model_ref(loaded) is ref and xdiffsr.models.model_handle(loaded) is ref


def test_same_file_is_read_once_per_process(model, tmp_path):
    path = model.save(tmp_path / "once.safetensors")
    xdiffsr.models.clear_model_cache()
    first = xdiffsr.load_model(path)
    assert xdiffsr.load_model(str(path)) is first
    assert xdiffsr.open_model(path) is first  # the former name, the same function
    # what a dask worker does with the task's reference: the same cache, no second read
    ref = xdiffsr.ModelRef.of(path)
    assert ref == first.reference and ref.resolve("cpu") is first
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(path.read_bytes())
    again = xdiffsr.load_model(copy)  # another file: its own reference, the same content
    assert again is not first and again.reference.sha256 == ref.sha256
    assert again.reference.path == str(copy.resolve())
    assert xdiffsr.models.model_cache_stats() == {"loads": 2, "hits": 3}


def test_fingerprint_is_the_content(model, tmp_path):
    loaded = xdiffsr.load_model(model.save(tmp_path / "fp.safetensors"))
    fp = model.fingerprint()
    assert len(fp) == 64 and loaded.fingerprint() == fp  # file or memory: the same content
    assert xdiffsr.models.fingerprint(model) == fp
    other = tiny_model("tiny-test", attrs=model.attrs, metadata=model.metadata)
    assert other.fingerprint() == fp
    with torch.no_grad():
        next(other.precond.parameters()).add_(1e-3)
    assert other.fingerprint() != fp  # weights count
    renamed = tiny_model("tiny-other", attrs=model.attrs, metadata=model.metadata)
    assert renamed.fingerprint() != fp  # metadata counts
    mean = xr.Dataset(
        {"t850": (("lat", "lon"), np.full((8, 16), 270.0), {"units": "K"})},
        coords={
            "lat": ("lat", LAT, {"units": "degrees_north"}),
            "lon": ("lon", LON, {"units": "degrees_east"}),
        },
    )
    g1 = xdiffsr.GaussianPrior(mean, np.eye(128))
    g2 = xdiffsr.GaussianPrior(mean, 2 * np.eye(128))
    assert g1.fingerprint() == xdiffsr.GaussianPrior(mean, np.eye(128)).fingerprint()
    assert g1.fingerprint() != g2.fingerprint()


def test_prior_covariance_is_estimated_from_its_samples_and_can_be_given():
    """``Prior.covariance``: the stationary covariance of the prior's own samples (Jacobian-free
    guidance). For a white Gaussian prior of std 2 K (normalised by its own scale, 2) the
    normalised variance is 1 and the spectrum flat."""
    from xdiffsr.core.covariance import SpectralCovariance

    mean = xr.Dataset(
        {"t850": (("lat", "lon"), np.full((8, 16), 270.0), {"units": "K"})},
        coords={
            "lat": ("lat", LAT, {"units": "degrees_north"}),
            "lon": ("lon", LON, {"units": "degrees_east"}),
        },
    )
    g = xdiffsr.GaussianPrior(mean, 4.0 * np.eye(128))
    fp = g.fingerprint()
    cov = g.covariance(samples=64, steps=18)
    assert cov.shape == (1, 8, 16)
    assert abs(float(cov.variance()[0]) - 1.0) < 0.1
    ring = cov.power[0, : 8, 1:].flatten()
    assert float(ring.std() / ring.mean()) < 0.25  # flat: white
    assert g.covariance() is cov or torch.equal(g.covariance().power, cov.power)  # kept
    assert g.fingerprint() == fp  # estimated from the weights: not new content
    given = SpectralCovariance.white((1, 8, 16), 0.5)
    g.set_covariance(given)
    assert torch.equal(g.covariance().power, given.power)
    assert g.fingerprint() != fp  # given: content
    g.set_covariance(None)
    assert g.fingerprint() == fp
    with pytest.raises(xdiffsr.XDiffSRError, match="does not match"):
        g.set_covariance(SpectralCovariance.white((2, 8, 16)))


def test_covariance_of_a_loaded_model_is_stored_once_and_read_back(tmp_path, monkeypatch):
    """A loaded model's covariance estimate depends only on its weights: the first process
    estimates and stores it in the cache, a later one reads it (no sampling), equal; a cache
    that cannot be written costs a fresh estimate, not an error; in-memory priors store
    nothing."""
    from xdiffsr.models import prior as prior_mod

    monkeypatch.setenv("XDIFFSR_CACHE", str(tmp_path / "cache"))
    path = tiny_model().save(tmp_path / "tiny.safetensors")

    def fresh():  # a new process: load_model keeps one model object per file
        xdiffsr.models.registry.clear_model_cache()
        return xdiffsr.load_model(path)

    first = fresh().covariance(samples=2, steps=3)
    stored = list((tmp_path / "cache" / "covariance").glob("covariance-*-2x3-v*.safetensors"))
    assert len(stored) == 1

    def no_sampling(*a, **k):
        raise AssertionError("estimated again although stored")

    with monkeypatch.context() as m:
        m.setattr(prior_mod.Prior, "_estimate_covariance", no_sampling)
        again = fresh().covariance(samples=2, steps=3)
    torch.testing.assert_close(again.power, first.power)
    # other estimate settings: another file
    fresh().covariance(samples=2, steps=4)
    assert len(list((tmp_path / "cache" / "covariance").iterdir())) == 2
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDIFFSR_CACHE", str(blocker))
    cov = fresh().covariance(samples=2, steps=3)
    torch.testing.assert_close(cov.power, first.power)
    monkeypatch.setenv("XDIFFSR_CACHE", str(tmp_path / "fresh"))
    tiny_model().covariance(samples=2, steps=3)
    assert not (tmp_path / "fresh").exists()
    xdiffsr.models.registry.clear_model_cache()


def test_packaged_models_ship_their_covariance():
    """The packaged models' covariance estimates (default settings) are shipped with them, so
    the first Jacobian-free run (the demo) does not sample the prior to estimate it."""
    from xdiffsr.models import prior as prior_mod

    for alias in ("default", "latent"):
        m = xdiffsr.load_model(alias)
        name = (f"covariance-{m.fingerprint()[:24]}-4x12-v{prior_mod.COVARIANCE_VERSION}"
                ".safetensors")
        assert (prior_mod.DATA_DIR / name).is_file(), (alias, name)
        cov = prior_mod._read_covariance(name)
        assert cov.shape == tuple(m.sample_shape)
        assert bool(torch.isfinite(cov.power).all()) and float(cov.power.min()) >= 0
