"""Figures like the paper's: maps, zonal spectra, latitude traces with spread, point scatter.

Conventions (every map): longitude/latitude axis labels in degrees; a colour bar labelled with
the variable and its ``units`` attribute ("units unknown" when it has none); errors and other
differences on a diverging colour map centred on zero with symmetric limits; titles that give the
valid time (``YYYY-MM-DD HH:MM UTC``, cftime dates included) and, for ensemble statistics, the
ensemble size ("mean of 8 members"). With ``projection="auto"`` (the default) maps are drawn on
cartopy's PlateCarree with coastlines when cartopy is installed and on plain axes otherwise;
cartopy is never required.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.evaluation.metrics import (
    check_same_grid,
    ensemble_dim,
    latitude_weights,
    observation_mask,
    zonal_spectrum,
)
from xdiffsr.grid import find_latlon, find_time
from xdiffsr.names import to_model_layout

__all__ = [
    "MapPanel",
    "field_maps",
    "latitude_trace",
    "maps",
    "scatter_points",
    "scores_by_lead",
    "spectra",
    "valid_time",
]


def _figure(
    ncols: int,
    nrows: int = 1,
    *,
    size: tuple[float, float],
    subplot_kw: Mapping[str, Any] | None = None,
):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "xdiffsr.evaluation.plot needs matplotlib: pip install 'xdiffsr[plot]'"
        ) from err
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, subplot_kw=dict(subplot_kw or {}))
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
    if np.issubdtype(da[tname].dtype, np.datetime64):
        time = np.datetime64(pd.Timestamp(time), "ns")
    return da.sel({tname: time}, method="nearest")  # cftime dates are selected as they are


def valid_time(da: xr.DataArray) -> str:
    """The valid time of a field at one time, as ``YYYY-MM-DD HH:MM UTC`` ('' without one).

    A scalar ``valid_time`` coordinate (cfgrib) is preferred, then any scalar datetime64 or
    cftime coordinate (what ``.isel(time=i)`` leaves behind).
    """
    coords = sorted(da.coords.values(), key=lambda c: c.name != "valid_time")
    for c in coords:
        if c.ndim != 0:
            continue
        value = c.values.item() if c.dtype == object else c.values
        if np.issubdtype(c.dtype, np.datetime64) and not pd.isna(value):
            return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")
        if hasattr(value, "calendar") and hasattr(value, "strftime"):  # cftime
            return value.strftime("%Y-%m-%d %H:%M") + " UTC"
    return ""


def _names(da: xr.DataArray, name: str = "field") -> tuple[str, str]:
    """Names of the latitude and longitude dimensions of ``da`` (CF discovery)."""
    lat, lon = find_latlon(da, name)
    return str(lat.dims[0]), str(lon.dims[0])


def _units(*das: xr.DataArray) -> str:
    """The first ``units`` attribute among ``das``, or ``"units unknown"``."""
    return next((str(d.attrs["units"]) for d in das if d.attrs.get("units")), "units unknown")


def _label(da: xr.DataArray, var: str) -> str:
    return f"{var} ({_units(da)})"


def _crs(projection: Any) -> Any:
    """The cartopy CRS to draw on, or None for plain longitude-latitude axes."""
    if projection is None:
        return None
    if isinstance(projection, str):
        if projection != "auto":
            raise ArgumentError(
                f"projection: {projection!r} is not understood; pass 'auto' (cartopy's "
                "PlateCarree when cartopy is installed), None (plain axes) or a cartopy CRS."
            )
        try:
            import cartopy.crs as ccrs
        except ImportError:
            return None
        return ccrs.PlateCarree(central_longitude=180.0)
    return projection


@dataclass
class MapPanel:
    """One map of :func:`field_maps`.

    Attributes
    ----------
    title : str
        First line of the panel's title; the valid time is added as a second line.
    data : DataArray
        (lat, lon) field, or a field with a time dimension (one time is drawn).
    kind : {"field", "spread", "difference"}
        ``"field"`` panels share one sequential colour scale; ``"spread"`` starts at zero;
        ``"difference"`` (errors, increments) uses a diverging map centred on zero with
        symmetric limits.
    label : str
        Colour-bar label, e.g. ``"t850 (K)"``.
    """

    title: str
    data: xr.DataArray
    kind: str = "field"
    label: str = ""


KINDS = {"field": "viridis", "spread": "magma", "difference": "RdBu_r"}


def _scales(panels: list[MapPanel]) -> list[dict]:
    """Colour map and limits of each panel (fields share theirs; differences symmetric)."""
    fields = [np.asarray(p.data, float) for p in panels if p.kind == "field"]
    lo = min((np.nanmin(f) for f in fields), default=0.0)
    hi = max((np.nanmax(f) for f in fields), default=1.0)
    out = []
    for p in panels:
        if p.kind not in KINDS:
            raise ArgumentError(
                f"kind: {p.kind!r} (panel {p.title!r}) is not one of {sorted(KINDS)}."
            )
        kw = {"cmap": KINDS[p.kind]}
        if p.kind == "field":
            kw.update(vmin=float(lo), vmax=float(hi))
        elif p.kind == "spread":
            kw.update(vmin=0.0, vmax=float(np.nanmax(np.asarray(p.data, float))) or 1.0)
        else:
            amax = float(np.nanmax(np.abs(np.asarray(p.data, float)))) or 1.0
            kw.update(vmin=-amax, vmax=amax)
        out.append(kw)
    return out


def field_maps(
    panels: Sequence[MapPanel],
    *,
    ncols: int | None = None,
    time: int | Any = 0,
    projection: Any = "auto",
) -> Any:
    """Maps of any fields with the conventions of every figure here; what :func:`maps` draws.

    Each panel has longitude/latitude axis labels in degrees, a colour bar labelled with
    :attr:`MapPanel.label` and a title whose second line is the valid time
    (``YYYY-MM-DD HH:MM UTC``, also for cftime dates). Panels of kind ``"difference"`` use a
    diverging colour map centred on zero with symmetric limits.

    Parameters
    ----------
    panels : sequence of MapPanel
        The maps, drawn row by row; all on one latitude/longitude grid.
    ncols : int, optional
        Columns of the grid of panels (default 2 for four panels, else up to 3).
    time : int or datetime
        Index into, or value of, the time coordinate of panels that have one.
    projection : "auto", None or cartopy CRS
        ``"auto"`` draws on cartopy's PlateCarree with coastlines when cartopy is installed
        and on plain axes otherwise; None always uses plain axes; a CRS is used as given.

    Returns
    -------
    matplotlib.figure.Figure
        One map and one colour bar per panel.
    """
    panels = [replace(p, data=_at_time(p.data, time)) for p in panels]
    if not panels:
        raise ArgumentError("panels: no maps to draw; pass at least one MapPanel.")
    n = len(panels)
    ncols = ncols or (2 if n == 4 else min(n, 3))
    nrows = -(-n // ncols)
    crs = _crs(projection)
    fig, axes = _figure(
        ncols,
        nrows,
        size=(4.6 * ncols, 3.0 * nrows + 0.4),
        subplot_kw={"projection": crs} if crs is not None else None,
    )
    ny, nx = _names(panels[0].data, panels[0].title)
    for ax, p, kw in zip(axes, panels, _scales(panels)):
        if crs is not None:
            import cartopy.crs as ccrs

            kw["transform"] = ccrs.PlateCarree()
        da = p.data.transpose(..., ny, nx)
        im = ax.pcolormesh(da[nx], da[ny], da, shading="auto", **kw)
        ax.set_title("\n".join(filter(None, (p.title, valid_time(p.data)))), fontsize="medium")
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        if crs is not None:
            ax.coastlines(linewidth=0.5)
            ax.gridlines(draw_labels=["left", "bottom"], linewidth=0.3)
        fig.colorbar(im, ax=ax, label=p.label or _label(p.data, str(p.data.name or "")))
    for ax in axes[n:]:
        ax.remove()
    return fig


def maps(
    truth: xr.Dataset | xr.DataArray,
    ens: xr.Dataset | xr.DataArray,
    var: str,
    *,
    time: int | Any = 0,
    member_dim: str | None = None,
    baselines: Mapping[str, xr.Dataset | xr.DataArray] | None = None,
    ncols: int | None = None,
    projection: Any = "auto",
) -> Any:
    """Maps of the truth, baselines, the ensemble mean and spread, and the error of the mean.

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
    member_dim : str, optional
        Ensemble dimension of ``ens``; default: whichever of ``member``, ``number``,
        ``realization`` or ``ensemble`` it has.
    baselines : mapping of label to Dataset or DataArray, optional
        Other reconstructions (e.g. bicubic interpolation) drawn after the truth on its colour
        scale; an ensemble is drawn as its mean.
    ncols : int, optional
        Columns of panels (default 2 without baselines: a 2 x 2 figure).
    projection : "auto", None or cartopy CRS
        As in :func:`field_maps`: cartopy with coastlines when installed, else plain axes.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per field, each with a colour bar labelled ``"var (units)"`` (units of the
        truth, else of ``ens``, else "units unknown"). Truth, baselines and mean share a
        colour scale; the ensemble std starts at zero; the error (mean minus truth) uses a
        diverging scale centred on zero. Titles give the valid time and the ensemble size.
    """
    t = _at_time(_field(truth, var, "truth"), time)
    e = _at_time(_field(ens, var, "ens"), time)
    check_same_grid(e, t, ("ens", "truth"))
    member_dim = ensemble_dim(e, member_dim) or "member"
    n = e.sizes.get(member_dim, 1)
    mean = e.mean(member_dim) if member_dim in e.dims else e
    std = e.std(member_dim, ddof=1) if n > 1 and member_dim in e.dims else 0 * mean
    of = f"of {n} members" if member_dim in e.dims else "deterministic"
    label = f"{var} ({_units(t, e)})"
    panels = [MapPanel(f"{var}: truth", t, "field", label)]
    for name, obj in (baselines or {}).items():
        b = _at_time(_field(obj, var, f"baselines[{name!r}]"), time)
        b = _ens_mean(b, member_dim)
        panels.append(MapPanel(f"{var}: {name}", b, "field", label))
    panels += [
        MapPanel(f"{var}: ensemble mean, mean {of}", mean, "field", label),
        MapPanel(f"{var}: ensemble std, spread {of}", std, "spread", label),
        MapPanel(f"{var}: error of the mean (mean {of} − truth)", mean - t, "difference", label),
    ]
    return field_maps(panels, ncols=ncols, projection=projection)


def _ens_mean(da: xr.DataArray, member_dim: str | None) -> xr.DataArray:
    """``da`` averaged over its ensemble dimension (``member_dim`` or one of
    :data:`~xdiffsr.evaluation.metrics.ENSEMBLE_DIMS`), if it has one."""
    dim = member_dim if member_dim in da.dims else ensemble_dim(da)
    return da.mean(dim) if dim is not None else da


def _mean_spectrum(da: xr.DataArray, member_dim: str | None) -> xr.DataArray:
    """Zonal power spectrum averaged over members, time and latitude (area-weighted)."""
    member_dim = member_dim if member_dim in da.dims else ensemble_dim(da)
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
    member_dim: str | None = None,
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
    ax.set_ylabel(f"power ({_units(curves['truth'])})$^2$")
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
    member_dim: str | None = None,
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
    member_dim = ensemble_dim(e, member_dim) or "member"
    mean = e.mean(member_dim) if member_dim in e.dims else e
    fig, (ax,) = _figure(1, size=(8, 4))
    if member_dim in e.dims and e.sizes[member_dim] > 1:
        sd = e.std(member_dim, ddof=1)
        band = f"mean ± 2 std of {e.sizes[member_dim]} members"
        ax.fill_between(e[ny], mean - 2 * sd, mean + 2 * sd, alpha=0.3, label=band)
    ax.plot(t[ny], t, "k", lw=2, label="truth")
    ax.plot(mean[ny], mean, "C0", lw=1.5, label="ensemble mean")
    for i, (label, obj) in enumerate((baselines or {}).items()):
        b = column(_field(obj, var, f"baselines[{label!r}]"))
        b = _ens_mean(b, member_dim)
        ax.plot(b[ny], b, f"C{i + 1}", lw=1, ls="--", label=label)
    ax.set_xlabel("latitude (°N)")
    ax.set_ylabel(_label(t, var))
    ax.set_title("\n".join(filter(None, (f"{var} along {float(t[nx]):.2f}°E", valid_time(t)))))
    ax.legend(fontsize="small")
    return fig


def scatter_points(
    truth: xr.Dataset | xr.DataArray,
    ens: xr.Dataset | xr.DataArray,
    points: pd.DataFrame,
    var: str,
    *,
    radius_km: float | None = None,
    member_dim: str | None = None,
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
    member_dim = ensemble_dim(e, member_dim) or "member"
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
