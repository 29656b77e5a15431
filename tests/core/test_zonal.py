"""Zonal truncation (``xdiffsr.core.zonal``): the band limit of spectral-model fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xdiffsr.core.zonal import ZonalFilter, kept_wavenumbers, truncate_zonal, zonal_mask
from xdiffsr.errors import ArgumentError

LAT = np.linspace(-88.59375, 88.59375, 64)  # the default model's rows


def test_kept_wavenumbers_by_hand():
    # ceil(42 cos(lat)) + 1: the equator keeps 43, 60 degrees 22, the rows next to the poles 3
    lat = [-88.59375, -85.78125, -60.0, 0.0, 45.0, 90.0]
    expected = [3, 5, 22, 43, int(np.ceil(42 * np.sqrt(0.5))) + 1, 1]
    assert kept_wavenumbers(lat, 42).tolist() == expected
    assert kept_wavenumbers([30.0], 10).tolist() == [int(np.ceil(10 * np.sqrt(3) / 2)) + 1]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "42", None])
def test_truncation_must_be_a_positive_integer(bad):
    with pytest.raises(ArgumentError, match=r"zonal_truncation must be a positive integer.*"
                                            rf"got {bad!r}"):
        kept_wavenumbers(LAT, bad)


def test_latitudes_are_checked():
    with pytest.raises(ArgumentError, match="latitudes in"):
        kept_wavenumbers([0.0, 95.0], 42)
    project = ZonalFilter(LAT, 42)
    with pytest.raises(ArgumentError, match="built for 64 latitude rows, got a state with 32"):
        project(torch.zeros(1, 1, 32, 128))


def test_projection_properties():
    """Idempotent, self-adjoint (an orthogonal projection), and exactly zero above each row's
    limit; waves within every row's limit pass unchanged."""
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(3, 2, 64, 128, generator=g, dtype=torch.float64) for _ in range(2))
    mask = zonal_mask(LAT, 128, 42).double()
    px = truncate_zonal(x, mask)
    torch.testing.assert_close(truncate_zonal(px, mask), px, rtol=0, atol=1e-12)
    torch.testing.assert_close((px * y).sum(), (x * truncate_zonal(y, mask)).sum())
    spec = torch.fft.rfft(px, dim=-1).abs()
    kept = torch.as_tensor(kept_wavenumbers(LAT, 42))
    above = torch.arange(65)[None, :] > kept[:, None]  # (H, M)
    assert spec[..., above].max() < 1e-10 and spec[..., ~above].min() > 0
    lon = torch.arange(128, dtype=torch.float64) * 2 * torch.pi / 128
    waves = 3.0 + torch.cos(lon) + 0.5 * torch.sin(2 * lon - 1.0)  # m <= 2 <= every row's 3
    field = waves.expand(1, 1, 64, 128)
    torch.testing.assert_close(truncate_zonal(field, mask), field, rtol=0, atol=1e-12)


def test_bf16_input_is_filtered_in_fp32_and_returned_in_bf16():
    x = torch.randn(1, 1, 64, 128).bfloat16()
    out = truncate_zonal(x, zonal_mask(LAT, 128, 42))
    assert out.dtype == torch.bfloat16
    ref = truncate_zonal(x.float(), zonal_mask(LAT, 128, 42))
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.05)


def test_spherical_harmonics_of_the_truncation_mostly_pass():
    """A T21 field with a red spectrum (amplitude ~ n^-1.5, as atmospheric fields) built from
    spherical harmonics (scipy) loses under 1 % of its variance to truncation at N = 21; the
    rows next to the poles keep only waves 0-2 (each Y_n^m decays as sin^m of the
    colatitude)."""
    special = pytest.importorskip("scipy.special")
    if not hasattr(special, "sph_harm_y"):
        pytest.skip("scipy without sph_harm_y")
    lat = np.linspace(-87.1875, 87.1875, 32)
    colat, lon = np.deg2rad(90 - lat)[:, None], np.arange(64)[None, :] * 2 * np.pi / 64
    rng = np.random.default_rng(0)
    f = np.zeros((32, 64))
    for n in range(1, 22):
        for m in range(n + 1):
            c = complex(*rng.standard_normal(2)) * n**-1.5
            f += np.real(c * special.sph_harm_y(n, m, colat, lon))
    x = torch.as_tensor(f)[None, None]
    out = truncate_zonal(x, zonal_mask(lat, 64, 21).double())
    assert float(((out - x) ** 2).mean() / (x**2).mean()) < 1e-2
    white = torch.randn(1, 1, 32, 64, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    removed = float(((truncate_zonal(white, zonal_mask(lat, 64, 21).double()) - white) ** 2)
                    .mean() / (white**2).mean())
    assert removed > 0.2  # grid-scale noise is not band-limited: much of it goes


def test_the_packaged_nature_run_state_is_band_limited():
    """The packaged held-out states (T42 Held-Suarez) lose < 0.3 % of their zonal-anomaly rms
    to truncation at 42: the projection is exact for the data the default model learnt."""
    from xdiffsr.evaluation.datasets import load_heldout

    ds = load_heldout()
    lat = ds["lat"].values
    for v in ds.data_vars:
        x = torch.as_tensor(ds[v].values, dtype=torch.float64)[:, None]
        out = truncate_zonal(x, zonal_mask(lat, x.shape[-1], 42).double())
        anomaly = x - x.mean(-1, keepdim=True)
        assert float((out - x).pow(2).mean().sqrt() / anomaly.pow(2).mean().sqrt()) < 3e-3, v


def test_filter_caches_one_mask_per_width_and_device():
    project = ZonalFilter(LAT, 42)
    x = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(project(x), truncate_zonal(x, zonal_mask(LAT, 128, 42)))
    project(torch.zeros(1, 1, 64, 64))
    assert sorted(project._masks) == [(64, "cpu"), (128, "cpu")] and project.truncation == 42
