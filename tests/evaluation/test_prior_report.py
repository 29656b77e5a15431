"""The prior-quality report (xdiffsr.evaluation.prior_report) against analytic answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xdiffsr import DiffusionModel
from xdiffsr.core.precond import EDMPrecond
from xdiffsr.core.unet import SongUNet, UNetConfig
from xdiffsr.evaluation.prior_report import (
    climate,
    denoiser_roughness,
    edge_ratios,
    guided_scores,
    high_wavenumber_ratio,
    prior_report,
    roughness,
)
from xdiffsr.grid import grid_of

H, W = 16, 32
LAT = -90 + 180 / H * (np.arange(H) + 0.5)
LON = 360 / W * np.arange(W)
LATC = ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north"})
LONC = ("lon", LON, {"standard_name": "longitude", "units": "degrees_east"})


def smooth_truth(n: int = 3, seed: int = 0) -> xr.Dataset:
    g = np.random.default_rng(seed)
    la, lo = np.deg2rad(LAT)[:, None], np.deg2rad(LON)[None, :]
    f = np.stack([np.cos(la) * (np.cos(lo + a) + 0.5 * np.sin(2 * lo + b))
                  for a, b in g.uniform(0, 6, (n, 2))])
    coords = {"time": pd.date_range("2000-01-01", periods=n, freq="6h"), "lat": LATC, "lon": LONC}
    dims = ("time", "lat", "lon")
    return xr.Dataset({"t850": (dims, 270 + 5 * f, {"units": "K"}),
                       "z500": (dims, 5e4 + 300 * f[:, ::-1], {"units": "m2 s-2"})}, coords=coords)


def test_roughness_of_a_wave():
    k, amp = 5, 2.0
    lon = np.deg2rad(LON)
    field = np.broadcast_to(amp * np.sin(k * lon), (H, W))
    dlon = 2 * np.pi / W
    want = 4 * np.sin(k * dlon / 2) ** 2 * amp / np.sqrt(2)  # |second difference| of the wave
    assert roughness(field, LAT) == pytest.approx(want, rel=1e-10)


def _skip_only_model(truth: xr.Dataset) -> DiffusionModel:
    """A prior whose network outputs zero: D(x; sigma) = x / (1 + sigma^2) (sigma_data = 1)."""
    net = SongUNet.from_config(UNetConfig.tiny(2, (H, W)))
    with torch.no_grad():
        net.out_conv.weight.zero_()
        net.out_conv.bias.zero_()
    center = np.array([270.0, 5e4])
    scale = np.array([5.0, 300.0])
    return DiffusionModel(EDMPrecond(net, sigma_data=1.0), ["t850", "z500"],
                          {"t850": "K", "z500": "m2 s-2"}, grid_of(truth, argname="truth"),
                          center, scale)


def test_denoiser_roughness_of_a_known_denoiser():
    """D = (x + sigma n) / (1 + sigma^2): roughness^2 = (r_x^2 + 6 sigma^2) / (1 + sigma^2)^2
    for white noise n (the second difference of unit white noise has variance 1 + 4 + 1)."""
    truth = smooth_truth(n=64)
    model = _skip_only_model(truth)
    table = denoiser_roughness(model, truth, sigmas=(0.1, 1.0), variables=("t850", "z500"))
    x = (truth["t850"].values - 270.0) / 5.0
    r_x = roughness(x, LAT)
    for s in (0.1, 1.0):
        want = np.sqrt(r_x**2 + 6 * s**2) / (1 + s**2) / r_x
        assert table.loc[(s, "t850"), "roughness_ratio"] == pytest.approx(want, rel=0.03)
        rms_want = np.sqrt(np.mean((x / (1 + s**2) - x) ** 2) + s**2 / (1 + s**2) ** 2)
        assert table.loc[(s, "t850"), "rmse"] == pytest.approx(rms_want, rel=0.03)


def test_denoiser_roughness_with_the_samplers_band_limit():
    """With the prior's zonal truncation (N = 8 here) the report measures the denoiser the
    sampler uses, P D: the smooth truth passes P, the white noise keeps the wavenumbers
    m <= ceil(N cos(lat)) + 1 of each row, whose second difference has the variance
    (1/W) sum_m (2 - 2 cos(2 pi m / W))^2 over the kept m (both signs)."""
    from xdiffsr.core.zonal import kept_wavenumbers

    truth = smooth_truth(n=64)
    model = _skip_only_model(truth)
    model.zonal_truncation = 8
    s = 1.0
    table = denoiser_roughness(model, truth, sigmas=(s,), variables=("t850",))
    x = (truth["t850"].values - 270.0) / 5.0
    r_x = roughness(x, LAT)
    rows = np.abs(LAT) <= 60
    m = np.fft.fftfreq(W, 1 / W)
    gain = (2 - 2 * np.cos(2 * np.pi * m / W)) ** 2
    noise = np.mean([gain[np.abs(m) <= k].sum() / W for k in kept_wavenumbers(LAT[rows], 8)])
    want = np.sqrt(r_x**2 + s**2 * noise) / (1 + s**2) / r_x
    assert table.loc[(s, "t850"), "roughness_ratio"] == pytest.approx(want, rel=0.03)
    off = denoiser_roughness(model, truth, sigmas=(s,), variables=("t850",), zonal_truncation=0)
    assert off.loc[(s, "t850"), "roughness_ratio"] > 1.5 * want  # all 6 of white noise


def test_high_wavenumber_ratio():
    truth = smooth_truth() + xr.DataArray(np.random.default_rng(1).normal(size=(3, H, W)) * 0.1,
                                          dims=("time", "lat", "lon"))
    members = xr.concat([truth, truth], dim="member")
    assert high_wavenumber_ratio(members, truth, band=(8, 16))["t850"] == pytest.approx(1.0)
    ratio = high_wavenumber_ratio((2 * truth).expand_dims(member=2), truth, band=(8, 16))
    assert ratio["t850"] == pytest.approx(4.0)  # twice the anomaly: four times the power
    noisy = members + xr.DataArray(np.random.default_rng(2).normal(size=(2, 3, H, W)),
                                   dims=("member", "time", "lat", "lon"))
    assert high_wavenumber_ratio(noisy, truth, band=(8, 16))["t850"] > 5


def test_edge_ratios():
    truth = smooth_truth()
    g = np.random.default_rng(3)
    err = g.normal(size=(4, 3, H, W))
    members = truth + xr.DataArray(err, dims=("member", "time", "lat", "lon"))
    flat = edge_ratios(members, truth)
    assert flat.loc["t850", "spread_edge_ratio"] == pytest.approx(1.0, abs=0.25)
    edges = np.ones(H)
    edges[[0, -1]] = 4.0  # errors four times larger in the outermost rows
    loud = truth + xr.DataArray(err * edges[:, None], dims=("member", "time", "lat", "lon"))
    r = edge_ratios(loud, truth)
    assert r.loc["t850", "spread_edge_ratio"] == pytest.approx(4.0, rel=0.25)
    assert r.loc["t850", "rmse_edge_ratio"] == pytest.approx(4.0, rel=0.35)


def test_climate_finds_the_jets():
    la = LAT[:, None]
    u = 30 * np.exp(-((np.abs(la) - 39.375) / 10) ** 2) * np.ones((1, H, W))
    u[:, LAT < 0] *= 0.8
    t = 300 - 40 * np.sin(np.deg2rad(np.abs(la))) ** 2 * np.ones((1, H, W))
    ds = xr.Dataset({"u250": (("time", "lat", "lon"), u), "t850": (("time", "lat", "lon"), t),
                     "sp": (("time", "lat", "lon"), np.full((1, H, W), 1e5))},
                    coords={"time": [0], "lat": LATC, "lon": LONC})
    c = climate(ds)
    assert c["jet250_north_m/s"] == pytest.approx(u.max(), rel=1e-6)
    assert c["jet250_north_lat"] == pytest.approx(39.375)
    assert c["jet250_south_m/s"] == pytest.approx(0.8 * u.max(), rel=1e-6)
    assert c["sp_global_mean_hPa"] == pytest.approx(1000.0)
    assert 30 < c["t850_equator_minus_pole_K"] < 40


def test_guided_scores_and_report():
    truth = smooth_truth(n=2)
    model = _skip_only_model(truth)
    members = xr.concat([truth + 0.75, truth - 0.25], dim="member")  # mean error 0.25
    s = guided_scores(members, truth, bicubic=truth + 1.0)
    assert s.loc["t850", "rmse"] == pytest.approx(0.25)
    assert s.loc["t850", "rmse_over_bicubic"] == pytest.approx(0.25)
    # spread sqrt(0.5) (ddof 1), times sqrt(3/2) for two members, over the error 0.25
    assert s.loc["t850", "spread_skill"] == pytest.approx(np.sqrt(0.5 * 1.5) / 0.25)
    rep = prior_report(model, truth, members=2, guided=members, bicubic=truth + 1.0,
                       sigmas=(0.1,), variables=("t850",), steps=4)
    text = rep.to_markdown()
    assert "Denoiser roughness" in text and "Guided members" in text and "jet250" not in text
    assert set(rep.unguided.index) == {"t850"}
