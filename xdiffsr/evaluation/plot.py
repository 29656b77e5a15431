"""Figures like the paper's: maps, zonal spectra, latitude traces with spread, point scatter.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
state; save it with ``fig.savefig(path)``). matplotlib is imported on first use; install it with
``pip install 'xdiffsr[plot]'``.

References
----------
.. [1] Chakraborty, D. et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models (Figs.: maps of truth, mean, spread and error; spectra; latitude transects).
.. [2] Rasp, S. et al. (2024). WeatherBench 2 (zonal energy spectra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.evaluation.metrics import (
    check_same_grid,
    latitude_weights,
    observation_mask,
    zonal_spectrum,
)
from xdiffsr.grid import find_latlon, find_time
from xdiffsr.names import to_model_layout

__all__ = ["latitude_trace", "maps", "scatter_points", "scores_by_lead", "spectra"]


def _figure(ncols: int, nrows: int = 1, *, size: tuple[float, float]):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "xdiffsr.evaluation.plot needs matplotlib: pip install 'xdiffsr[plot]'"
        ) from err
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def _field(obj: xr.Dataset | xr.DataArray, var: str, name: str) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj
    if var not in obj:
        try:  # another layout of the lexicon (WeatherBench 2 ``temperature`` + ``level``, ...)
            return to_model_layout(obj, [var], argname=name)[var]
        except (ArgumentError, CoordinateError):
            raise ArgumentError(
                f"{name}: no variable {var!r}; it has {list(obj.data_vars)}"
            ) from None
    return obj[var]


def _at_time(da: xr.DataArray, time: int | Any) -> xr.DataArray:
    tname = find_time(da, argname="field")
    if tname is None:
        return da
    if isinstance(time, int | np.integer):
        return da.isel({tname: int(time)})
    return da.sel({tname: np.datetime64(pd.Timestamp(time), "ns")}, method="nearest")


def _names(da: xr.DataArray, name: str = "field") -> tuple[str, str]:
    """Names of the latitude and longitude dimensions of ``da`` (CF discovery)."""
    lat, lon = find_latlon(da, name)
    return str(lat.dims[0]), str(lon.dims[0])


def _label(da: xr.DataArray, var: str) -> str:
    units = da.attrs.get("units", "")
    return f"{var} ({units})" if units else var


def maps(
    truth: xr.Dataset | xr.DataArray,
    ens: xr.Dataset | xr.DataArray,
    var: str,
    *,
    time: int | Any = 0,
    member_dim: str = "member",
) -> Any:
    """Four maps: truth, ensemble mean, ensemble standard deviation and error of the mean.

    Parameters
    ----------
    truth : Dataset or DataArray
        (time, lat, lon) or (lat, lon).
    ens : Dataset or DataArray
        (time, member, lat, lon); without ``member_dim`` it is treated as deterministic (std 0).
    var : str
        Variable to draw.
    time : int or datetime
        Index into, or value of, the time coordinate.

    Returns
    -------
    matplotlib.figure.Figure
        2 x 2 panels, each with a colour bar (truth and mean share the colour scale; the error
        uses a symmetric diverging scale).
    """
    t = _at_time(_field(truth, var, "truth"), time)
    e = _at_time(_field(ens, var, "ens"), time)
    check_same_grid(e, t, ("ens", "truth"))
    mean = e.mean(member_dim) if member_dim in e.dims else e
    ensemble = member_dim in e.dims and e.sizes[member_dim] > 1
    std = e.std(member_dim, ddof=1) if ensemble else 0 * mean
    err = mean - t
    fig, axes = _figure(2, 2, size=(11, 6))
    lo, hi = float(t.min()), float(t.max())
    amax = float(np.abs(err).max()) or 1.0
    panels = [
        ("truth", t, {"vmin": lo, "vmax": hi, "cmap": "viridis"}),
        ("ensemble mean", mean, {"vmin": lo, "vmax": hi, "cmap": "viridis"}),
        ("ensemble std", std, {"vmin": 0.0, "cmap": "magma"}),
        ("error of the mean", err, {"vmin": -amax, "vmax": amax, "cmap": "RdBu_r"}),
    ]
    ny, nx = _names(t, "truth")
    for ax, (title, da, kw) in zip(axes, panels):
        im = ax.pcolormesh(da[nx], da[ny], da.transpose(ny, nx), shading="auto", **kw)
        ax.set_title(f"{var}: {title}")
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        fig.colorbar(im, ax=ax, label=t.attrs.get("units", ""))
    return fig


def _mean_spectrum(da: xr.DataArray, member_dim: str) -> xr.DataArray:
    """Zonal power spectrum averaged over members, time and latitude (area-weighted)."""

    ny, _ = _names(da)
    spec = zonal_spectrum(da)
    dims = [d for d in (member_dim, "time") if d in spec.dims]
    spec = spec.mean(dims) if dims else spec
    return spec.weighted(latitude_weights(da[ny])).mean(ny)


def spectra(
    truth: xr.Dataset | xr.DataArray,
    ens: xr.Dataset | xr.DataArray | None,
    var: str,
    *,
    baselines: Mapping[str, xr.Dataset | xr.DataArray] | None = None,
    member_dim: str = "member",
) -> Any:
    """Zonal power spectra of the truth, the ensemble members and baselines.

    The spectrum of each latitude circle (:func:`~zonal_spectrum`, Parseval-
    normalised) is averaged over members, times and latitudes with area weights; members are
    averaged *after* the transform, so the curve shows the members' small-scale power, not the
    ensemble mean's.

    Parameters
    ----------
    truth : Dataset or DataArray
        (time, lat, lon).
    ens : Dataset or DataArray, optional
        (time, member, lat, lon).
    var : str
    baselines : mapping of label to Dataset or DataArray, optional
        Other reconstructions on any regular grid (ensembles or deterministic).

    Returns
    -------
    matplotlib.figure.Figure
        One log-log panel of power against zonal wavenumber (k >= 1).
    """
    curves = {"truth": _field(truth, var, "truth")}
    if ens is not None:
        curves["ensemble"] = _field(ens, var, "ens")
    for label, obj in (baselines or {}).items():
        curves[label] = _field(obj, var, f"baselines[{label!r}]")
    fig, (ax,) = _figure(1, size=(6, 4.5))
    floor = None
    for label, da in curves.items():
        s = _mean_spectrum(da, member_dim).isel(zonal_wavenumber=slice(1, None))
        style = {"color": "k", "lw": 2.5} if label == "truth" else {"lw": 1.5}
        if len(ax.get_lines()) > 9:  # the colour cycle repeats after 10 curves
            style["ls"] = "--"
        ax.loglog(s["zonal_wavenumber"], s, label=label, **style)
        floor = float(s.where(s > 0).min()) if label == "truth" else floor
    if floor is not None and np.isfinite(floor):  # piecewise-constant fields have exact zeros
        ax.set_ylim(bottom=floor * 1e-2)
    ax.set_xlabel("zonal wavenumber")
    ax.set_ylabel(f"power ({curves['truth'].attrs.get('units', '')})$^2$")
    ax.set_title(f"{var}: zonal spectrum (area-weighted mean over latitude)")
    ax.legend(fontsize="small")
    return fig


def latitude_trace(
    truth: xr.Dataset | xr.DataArray,
    ens: xr.Dataset | xr.DataArray,
    var: str,
    *,
    lon: float = 180.0,
    time: int | Any = 0,
    baselines: Mapping[str, xr.Dataset | xr.DataArray] | None = None,
    member_dim: str = "member",
) -> Any:
    """Meridional transect at one longitude: truth, ensemble mean and a ±2 std spread band.

    Parameters
    ----------
    truth, ens : Dataset or DataArray
        As in :func:`maps`.
    var : str
    lon : float
        Longitude (degrees east, either convention); the nearest grid column is used.
    time : int or datetime
    baselines : mapping of label to Dataset or DataArray, optional
        Deterministic (or ensemble-mean) curves to add.

    Returns
    -------
    matplotlib.figure.Figure
        One panel against latitude.
    """

    ny, nx = _names(_field(truth, var, "truth"), "truth")

    def column(da: xr.DataArray) -> xr.DataArray:
        da = _at_time(da, time)
        x = np.mod(np.asarray(da[nx], float) - lon + 180.0, 360.0) - 180.0
        return da.isel({nx: int(np.argmin(np.abs(x)))})

    check_same_grid(_field(ens, var, "ens"), _field(truth, var, "truth"), ("ens", "truth"))
    t = column(_field(truth, var, "truth"))
    e = column(_field(ens, var, "ens"))
    mean = e.mean(member_dim) if member_dim in e.dims else e
    fig, (ax,) = _figure(1, size=(8, 4))
    if member_dim in e.dims and e.sizes[member_dim] > 1:
        sd = e.std(member_dim, ddof=1)
        ax.fill_between(e[ny], mean - 2 * sd, mean + 2 * sd, alpha=0.3, label="mean ± 2 std")
    ax.plot(t[ny], t, "k", lw=2, label="truth")
    ax.plot(mean[ny], mean, "C0", lw=1.5, label="ensemble mean")
    for i, (label, obj) in enumerate((baselines or {}).items()):
        b = column(_field(obj, var, f"baselines[{label!r}]"))
        b = b.mean(member_dim) if member_dim in b.dims else b
        ax.plot(b[ny], b, f"C{i + 1}", lw=1, ls="--", label=label)
    ax.set_xlabel("latitude (°N)")
    ax.set_ylabel(_label(t, var))
    ax.set_title(f"{var} along {float(t[nx]):.2f}°E")
    ax.legend(fontsize="small")
    return fig


def scatter_points(
    truth: xr.Dataset | xr.DataArray,
    ens: xr.Dataset | xr.DataArray,
    points: pd.DataFrame,
    var: str,
    *,
    radius_km: float | None = None,
    member_dim: str = "member",
) -> Any:
    """Ensemble mean against truth at observed and at unobserved grid cells.

    Cells are split with :func:`~.metrics.observation_mask` (cells nearest to a point, or
    within ``radius_km``); every time is drawn.

    Parameters
    ----------
    truth, ens : Dataset or DataArray
        As in :func:`maps`.
    points : DataFrame
        Observation locations (columns ``lat``, ``lon``), e.g. the station list.
    var : str
    radius_km : float, optional

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (observed, unobserved) with the 1:1 line and the RMSE in the title.
    """

    t = _field(truth, var, "truth")
    e = _field(ens, var, "ens")
    mean = e.mean(member_dim) if member_dim in e.dims else e
    t, mean = xr.broadcast(t, mean)
    ny, nx = _names(t, "truth")
    mask = observation_mask(t[ny], t[nx], points, radius_km=radius_km)
    mask = mask.broadcast_like(t)
    fig, axes = _figure(2, size=(9, 4.5))
    lo, hi = float(t.min()), float(t.max())
    for ax, (label, sel) in zip(axes, (("observed", mask), ("unobserved", ~mask))):
        x, y = np.asarray(t.values)[sel.values], np.asarray(mean.values)[sel.values]
        ax.scatter(x, y, s=2, alpha=0.4)
        ax.plot([lo, hi], [lo, hi], "k", lw=1)
        err = float(np.sqrt(np.mean((y - x) ** 2))) if x.size else float("nan")
        ax.set_title(f"{var}, {label} cells (n={x.size}, RMSE {err:.3g})")
        ax.set_xlabel(f"truth {_label(t, var)}")
        ax.set_ylabel("ensemble mean")
    return fig


def scores_by_lead(
    table: pd.DataFrame, var: str, metrics: tuple[str, ...] = ("rmse", "crps", "spread_skill")
) -> Any:
    """Scores of the sequential experiment against lead time, one line per configuration.

    Parameters
    ----------
    table : DataFrame
        The long table of :func:`xdiffsr.evaluation.sequential.evaluate_sequential` (columns
        ``configuration, lead_hours, variable, metric, value``).
    var : str
        Variable to draw.
    metrics : tuple of str
        One panel per metric present in ``table``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sub = table[table["variable"] == var]
    if sub.empty:
        raise ArgumentError(
            f"var: {var!r} is not in the table; choose from {sorted(set(table['variable']))}"
        )
    metrics = tuple(m for m in metrics if (sub["metric"] == m).any())
    fig, axes = _figure(len(metrics), size=(4.5 * len(metrics), 3.8))
    units = sub["units"].iloc[0]
    for ax, m in zip(axes, metrics):
        for name, grp in sub[sub["metric"] == m].groupby("configuration", sort=False):
            grp = grp.sort_values("lead_hours")
            det = grp["weight"].isna().all() if "weight" in grp else False
            ax.plot(
                grp["lead_hours"] / 24,
                grp["value"],
                "--" if det else "-o",
                ms=3,
                label=str(name),
            )
        if m == "spread_skill":
            ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xlabel("lead time (days)")
        ax.set_ylabel(f"{m} ({units})" if m != "spread_skill" and units else m)
        ax.set_title(f"{var}: {m}")
    axes[0].legend(fontsize=7)
    return fig
