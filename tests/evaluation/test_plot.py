"""Figures: each function returns a Figure with the expected panels and writes a PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")

from xdiffsr.errors import ArgumentError
from xdiffsr.evaluation import plot
from xdiffsr.grid import cell_centre_grid


@pytest.fixture(scope="module")
def fields():
    lat, lon = cell_centre_grid(16, 32)
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    times = pd.date_range("2001-01-01", periods=2, freq="12h")
    base = 280 + 20 * np.cos(la) + 3 * np.cos(la) * np.sin(4 * lo)
    truth = xr.Dataset(
        {"t850": (("time", "lat", "lon"), np.stack([base, base + 1]), {"units": "K"})},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.5, (2, 5, 16, 32))
    ens = xr.Dataset(
        {"t850": (("time", "member", "lat", "lon"), truth["t850"].values[:, None] + noise)},
        coords={"time": times, "member": np.arange(5), "lat": lat, "lon": lon},
    )
    return truth, ens


def titled(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_maps_has_four_panels_with_colour_bars(fields, tmp_path):
    truth, ens = fields
    fig = plot.maps(truth, ens, "t850", time=1)
    assert [ax.get_title() for ax in titled(fig)] == [
        "t850: truth",
        "t850: ensemble mean",
        "t850: ensemble std",
        "t850: error of the mean",
    ]
    assert len(fig.axes) == 8  # four maps, four colour bars
    fig.savefig(tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_maps_of_a_deterministic_field_have_zero_spread(fields):
    truth, _ = fields
    fig = plot.maps(truth, truth, "t850")
    std_mesh = titled(fig)[2].collections[0]
    assert np.all(np.asarray(std_mesh.get_array()) == 0)


def test_spectra_one_curve_per_source(fields, tmp_path):
    truth, ens = fields
    smooth = truth.coarsen(lon=2).mean().interp(lon=truth["lon"], kwargs={"fill_value": None})
    fig = plot.spectra(truth, ens, "t850", baselines={"smoothed": smooth})
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["truth", "ensemble", "smoothed"]
    # the truth's power sits at zonal wavenumber 4 (the sin(4 lon) wave)
    k, power = ax.get_lines()[0].get_data()
    assert k[np.argmax(power)] == 4
    # the noisy members carry more small-scale power than the truth
    assert ax.get_lines()[1].get_data()[1][-1] > power[-1]
    fig.savefig(tmp_path / "spectra.png")
    assert (tmp_path / "spectra.png").stat().st_size > 1000


def test_latitude_trace_has_band_and_curves(fields):
    truth, ens = fields
    fig = plot.latitude_trace(truth, ens, "t850", lon=-90.0, baselines={"truth again": truth})
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == [
        "truth",
        "ensemble mean",
        "truth again",
    ]
    assert len(ax.collections) == 1  # the ±2 std band
    assert "270.00°E" in ax.get_title()  # -90 deg maps to the 270 deg column


def test_scatter_splits_observed_and_unobserved(fields, tmp_path):
    truth, ens = fields
    points = pd.DataFrame({"lat": [0.0, 40.0], "lon": [10.0, 100.0]})
    fig = plot.scatter_points(truth, ens, points, "t850")
    obs, unobs = titled(fig)
    n_obs = int(obs.get_title().split("n=")[1].split(",")[0])
    n_unobs = int(unobs.get_title().split("n=")[1].split(",")[0])
    assert n_obs == 2 * 2  # two cells, two times
    assert n_obs + n_unobs == 2 * 16 * 32
    fig.savefig(tmp_path / "scatter.png")


def test_unknown_variable_is_named(fields):
    truth, ens = fields
    with pytest.raises(ArgumentError, match="z500"):
        plot.maps(truth, ens, "z500")


def test_figures_find_cf_coordinates_under_any_name(fields):
    """ERA5-style names (latitude descending, longitude) are found through CF attributes."""
    truth, ens = fields
    cf = {
        "lat": {"standard_name": "latitude", "units": "degrees_north"},
        "lon": {"standard_name": "longitude", "units": "degrees_east"},
    }

    def era5(ds):
        ds = ds.isel(lat=slice(None, None, -1)).rename(lat="latitude", lon="longitude")
        ds["latitude"].attrs.update(cf["lat"])
        ds["longitude"].attrs.update(cf["lon"])
        return ds

    t, e = era5(truth), era5(ens)
    fig = plot.maps(t, e, "t850")
    mesh = titled(fig)[0].collections[0]
    assert np.allclose(
        np.sort(mesh.get_array().ravel()), np.sort(t["t850"].isel(time=0).values.ravel())
    )
    trace = plot.latitude_trace(t, e, "t850", lon=90.0)
    line = trace.axes[0].get_lines()[0]
    assert np.allclose(np.sort(line.get_xdata()), np.sort(t["latitude"].values))
    assert plot.spectra(t, e, "t850").axes
