"""DiffusionModel: safetensors save/load with JSON metadata, and sampling through super_resolve."""

from __future__ import annotations

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
        }
    )
    ds = xr.Dataset(coords={"time": pd.date_range("2020-01-01", periods=2, freq="12h")})
    with pytest.warns(xdiffsr.XDiffSRWarning, match="no observations"):
        out = ds.diffsr.super_resolve([df], model=model, members=3, steps=4, S_churn=2.0)
    assert out["t850"].shape == (2, 3, 8, 16)
    assert np.isfinite(out["t850"].values).all() and np.isfinite(out["z500"].values).all()
    assert "tiny-test" in out.attrs["model"]
