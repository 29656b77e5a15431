"""Shared fixtures: the device option, the real-data folder, and small analytic problems."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # The test problems are tiny: one thread avoids oversubscribing the 2-core machines (with two
    # threads and any other load, torch's spinning workers made the suite several times slower).
    torch.set_num_threads(1)
    # Stored covariance estimates of loaded models go to a temporary cache, not the user's.
    if "XDIFFSR_CACHE" not in os.environ:
        os.environ["XDIFFSR_CACHE"] = tempfile.mkdtemp(prefix="xdiffsr-test-cache-")


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for the core tests (cpu, cuda)")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda given but no CUDA device is available")
    return dev


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real test data folder {SHARED_DATA} is absent (it sits beside the repo as "
            "../shared/data in the project's workspace)"
        )
    return SHARED_DATA


def smooth_covariance(
    H: int, W: int, length: float = 3.0, nugget: float = 1e-3, periodic: bool = False
) -> np.ndarray:
    """Squared-exponential covariance on an H x W index grid (optionally periodic in W)."""
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    dy = yy.ravel()[:, None] - yy.ravel()[None, :]
    dx = np.abs(xx.ravel()[:, None] - xx.ravel()[None, :])
    if periodic:
        dx = np.minimum(dx, W - dx)
    return np.exp(-(dy**2 + dx**2) / (2 * length**2)) + nugget * np.eye(H * W)


TINY_LAT = -78.75 + 22.5 * np.arange(8)
TINY_LON = 22.5 * np.arange(16)


def tiny_model(name: str = "tiny", **kwargs):
    """A random-weight DiffusionModel (tiny SongUNet) with t850 and z500 on the 8 x 16 grid."""
    import xdiffsr
    from xdiffsr.core import EDMPrecond, SongUNet, UNetConfig
    from xdiffsr.grid import Grid

    torch.manual_seed(0)
    net = SongUNet.from_config(UNetConfig.tiny(2, (8, 16)))
    return xdiffsr.DiffusionModel(
        EDMPrecond(net, sigma_data=0.5),
        ["t850", "z500"],
        {"t850": "K", "z500": "m2 s-2"},
        Grid(TINY_LAT, TINY_LON),
        center=[270.0, 54000.0],
        scale=[5.0, 400.0],
        name=name,
        **kwargs,
    )


def tiny_observations(times) -> list:
    """12 t850 points per time and a 4 x 8 coarse z500 field (random values, seed 0): the
    observations of the tiny-model tests of parallel and speed options."""
    g = np.random.default_rng(0)
    n = 12
    pts = pd.DataFrame(
        {
            "time": np.repeat(times.values, n),
            "lat": g.uniform(-70, 70, n * len(times)),
            "lon": g.uniform(0, 360, n * len(times)),
            "variable": "t850",
            "value": g.normal(270, 5, n * len(times)),
            "units": "K",
        }
    )
    coarse = xr.Dataset(
        {"z500": (("time", "lat", "lon"), g.normal(54000, 300, (len(times), 4, 8)))},
        coords={
            "time": times,
            "lat": ("lat", -67.5 + 45 * np.arange(4), {"units": "degrees_north"}),
            "lon": ("lon", 22.5 + 45 * np.arange(8), {"units": "degrees_east"}),
        },
    )
    coarse["z500"].attrs["units"] = "m2 s-2"
    return [pts, coarse]
