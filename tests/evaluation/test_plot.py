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


def mesh(ax):
    return ax.collections[0]


def test_maps_has_four_panels_with_colour_bars(fields, tmp_path):
    truth, ens = fields
    fig = plot.maps(truth, ens, "t850", time=1, projection=None)
    assert [ax.get_title().split("\n")[0] for ax in titled(fig)] == [
        "t850: truth",
        "t850: ensemble mean, mean of 5 members",
        "t850: ensemble std, spread of 5 members",
        "t850: error of the mean (mean of 5 members − truth)",
    ]
    assert len(fig.axes) == 8  # four maps, four colour bars
    fig.savefig(tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_maps_follow_the_figure_conventions(fields):
    """Axis labels, units on every colour bar, valid time and ensemble size in every title,
    and the error on a diverging map centred on zero."""
    truth, ens = fields
    fig = plot.maps(truth, ens, "t850", time=1, projection=None)
    panels = titled(fig)
    for ax in panels:
        assert ax.get_xlabel() == "longitude (°E)" and ax.get_ylabel() == "latitude (°N)"
        assert mesh(ax).colorbar.ax.get_ylabel() == "t850 (K)"
        assert ax.get_title().endswith("\n2001-01-01 12:00 UTC")
    err = mesh(panels[3])
    assert err.norm.vmin == -err.norm.vmax < 0
    assert err.get_cmap().name == "RdBu_r"
    values = np.asarray(err.get_array())
    assert err.norm.vmax == pytest.approx(np.abs(values).max())
    expected = ens["t850"].isel(time=1).mean("member") - truth["t850"].isel(time=1)
    assert np.allclose(np.sort(values.ravel()), np.sort(expected.values.ravel()))
    # truth and mean share one sequential scale; the spread starts at zero
    assert mesh(panels[0]).norm.vmin == mesh(panels[1]).norm.vmin
    assert mesh(panels[2]).norm.vmin == 0


def test_missing_units_are_said_not_left_blank(fields):
    truth, ens = fields
    bare = truth.copy()
    bare["t850"].attrs = {}
    fig = plot.maps(bare, ens, "t850", projection=None)
    labels = {mesh(ax).colorbar.ax.get_ylabel() for ax in titled(fig)}
    assert labels == {"t850 (units unknown)"}
    assert "units unknown" in plot.spectra(bare, ens, "t850").axes[0].get_ylabel()


def test_titles_give_cftime_valid_times(fields):
    cftime = pytest.importorskip("cftime")
    truth, ens = fields
    times = xr.date_range("2001-01-01", periods=2, freq="12h", calendar="noleap", use_cftime=True)
    t, e = truth.assign_coords(time=times), ens.assign_coords(time=times)
    when = cftime.DatetimeNoLeap(2001, 1, 1, 12)
    fig = plot.maps(t, e, "t850", time=when, projection=None)
    assert all(ax.get_title().endswith("2001-01-01 12:00 UTC") for ax in titled(fig))
    trace = plot.latitude_trace(t, e, "t850", time=1)
    assert "2001-01-01 12:00 UTC" in trace.axes[0].get_title()


def test_field_maps_centre_marked_differences(fields):
    truth, _ = fields
    t = truth["t850"]
    increment = (t.isel(time=1) - t.isel(time=0) + 0.3).assign_attrs(units="K")
    fig = plot.field_maps(
        [
            plot.MapPanel("analysis", t.isel(time=1), "field", "t850 (K)"),
            plot.MapPanel("increment", increment, "difference", "t850 increment (K)"),
        ],
        projection=None,
    )
    a, d = titled(fig)
    assert mesh(d).norm.vmin == -mesh(d).norm.vmax == pytest.approx(-1.3)
    assert mesh(d).colorbar.ax.get_ylabel() == "t850 increment (K)"
    assert a.get_title() == "analysis\n2001-01-01 12:00 UTC"
    with pytest.raises(ArgumentError, match="kind"):
        plot.field_maps([plot.MapPanel("x", increment, "error")], projection=None)


def test_maps_without_cartopy_use_plain_axes(fields, monkeypatch):
    import sys

    from matplotlib.axes import Axes

    monkeypatch.setitem(sys.modules, "cartopy", None)  # import cartopy raises ImportError
    monkeypatch.setitem(sys.modules, "cartopy.crs", None)
    truth, ens = fields
    fig = plot.maps(truth, ens, "t850")  # projection="auto"
    assert all(type(ax) is Axes for ax in titled(fig))
    with pytest.raises(ArgumentError, match=r"projection.*'auto'"):
        plot.maps(truth, ens, "t850", projection="robinson")


def test_maps_on_cartopy_draw_coastlines(fields, tmp_path):
    pytest.importorskip("cartopy")
    from cartopy.mpl.geoaxes import GeoAxes

    truth, ens = fields
    fig = plot.maps(truth, ens, "t850")
    panels = [ax for ax in fig.axes if isinstance(ax, GeoAxes)]
    assert len(panels) == 4
    assert all(mesh(ax).colorbar.ax.get_ylabel() == "t850 (K)" for ax in panels)
    fig.savefig(tmp_path / "maps.png")


def test_maps_of_a_deterministic_field_have_zero_spread(fields):
    truth, _ = fields
    fig = plot.maps(truth, truth, "t850")
    std_mesh = titled(fig)[2].collections[0]
    assert "deterministic" in titled(fig)[2].get_title()
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
