"""Radiosonde station networks for observing-system experiments.

Simulate soundings from a gridded truth at real IGRA station locations, in the same DataFrame
schema as :func:`xdiffsr.io.igra.read_igra` (so the same vertical operator, writer and
``super_resolve`` path apply), and subset networks in one call to test observing-network designs.

References
----------
.. [1] Durre, I., Yin, X., Vose, R. S., Applequist, S., Arnfield, J. (2018). Enhancing the Data
   Coverage in the Integrated Global Radiosonde Archive. J. Atmos. Oceanic Technol. 35, 1753-1770.
.. [2] Chakraborty et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models (station-network experiments).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from xdiffsr.errors import (
    ArgumentError,
    CoordinateError,
    ObservationError,
    UnitsError,
    XDiffSRWarning,
)
from xdiffsr.grid import find_latlon
from xdiffsr.io.igra import STANDARD_LEVELS_HPA, in_bbox, wind_direction_speed
from xdiffsr.observations.vertical import DEFAULT_ERRORS, G0, parse_model_variable
from xdiffsr.regrid import point_weights

__all__ = ["active_stations", "simulate_soundings", "station_operator", "subset_network"]

#: model quantity -> column of the IGRA schema it fills (z, gh both fill gph)
_FILLS = {"t": "temperature", "u": "u", "v": "v", "z": "gph", "gh": "gph", "r": "rh"}


def active_stations(station_list: pd.DataFrame, year: int) -> pd.DataFrame:
    """Fixed stations whose record covers ``year`` (``first_year <= year <= last_year``).

    Parameters
    ----------
    station_list : pandas.DataFrame
        From :func:`xdiffsr.io.igra.read_station_list` (columns ``id``, ``lat``, ``lon``,
        ``first_year``, ``last_year``; ``mobile`` optional).
    year : int

    Returns
    -------
    pandas.DataFrame
        The matching rows (mobile stations and stations without coordinates removed), index reset.
    """
    need = {"id", "lat", "lon", "first_year", "last_year"}
    if not isinstance(station_list, pd.DataFrame) or not need <= set(station_list.columns):
        raise ArgumentError(
            f"station_list must be a DataFrame with columns {sorted(need)}; pass "
            "read_station_list(path)."
        )
    if isinstance(year, bool) or not float(year).is_integer():
        raise ArgumentError(f"year={year!r} must be an integer year such as 2015.")
    sl = station_list
    ok = (sl["first_year"] <= year) & (sl["last_year"] >= year)
    ok &= np.isfinite(sl["lat"]) & np.isfinite(sl["lon"])
    if "mobile" in sl:
        ok &= ~sl["mobile"].astype(bool)
    return sl[ok].reset_index(drop=True)


def subset_network(
    df_or_stations: pd.DataFrame,
    *,
    drop: Iterable[str] | None = None,
    keep: Iterable[str] | None = None,
    bbox: Sequence[float] | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Subset a station network or its observations in one call.

    Parameters
    ----------
    df_or_stations : pandas.DataFrame
        A station list (column ``id``) or soundings/observations (column ``station``), with
        ``lat`` and ``lon`` when ``bbox`` is used.
    drop : iterable of str, optional
        Station ids to remove.
    keep : iterable of str, optional
        Station ids to keep (all others are removed).
    bbox : (lon_min, lat_min, lon_max, lat_max), optional
        Keep rows inside this box (see :func:`xdiffsr.io.igra.in_bbox`).
    fraction : float in (0, 1], optional
        After the other filters, keep a random ``fraction`` of the remaining stations (rounded,
        at least one), drawn with ``seed``.
    seed : int
        Seed of the random draw.

    Returns
    -------
    pandas.DataFrame
        The selected rows, index reset, ``attrs`` kept.
    """
    df = df_or_stations
    if not isinstance(df, pd.DataFrame):
        raise ArgumentError(f"df_or_stations must be a DataFrame, got {type(df).__name__}.")
    col = "station" if "station" in df else "id" if "id" in df else None
    if col is None:
        raise ArgumentError("df_or_stations needs a 'station' or 'id' column of station ids.")
    ids = df[col].astype(str)
    mask = np.ones(len(df), dtype=bool)
    for name, sel, inside in (("drop", drop, False), ("keep", keep, True)):
        if sel is None:
            continue
        sel = {sel} if isinstance(sel, str) else {str(s) for s in sel}
        unknown = sel - set(ids)
        if unknown:
            warnings.warn(f"{name}: station ids {sorted(unknown)[:10]} are not in the network.",
                          XDiffSRWarning, stacklevel=2)
        hit = ids.isin(sel).to_numpy()
        mask &= hit if inside else ~hit
    if bbox is not None:
        if not {"lat", "lon"} <= set(df.columns):
            raise ArgumentError("bbox needs 'lat' and 'lon' columns in df_or_stations.")
        mask &= in_bbox(df["lat"].to_numpy(float), df["lon"].to_numpy(float), bbox)
    if fraction is not None:
        if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise ArgumentError(f"fraction={fraction!r} must be in (0, 1].")
        left = pd.unique(ids[mask])
        n = max(1, round(fraction * len(left))) if len(left) else 0
        chosen = np.random.default_rng(seed).choice(left, size=n, replace=False)
        mask &= ids.isin(set(chosen)).to_numpy()
    out = df[mask].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


def simulate_soundings(
    truth_ds: xr.Dataset,
    stations: pd.DataFrame,
    *,
    times: Sequence | np.ndarray | pd.DatetimeIndex | None = None,
    hours: Sequence[int] = (0, 12),
    errors: Mapping[str, float] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate radiosonde soundings from a gridded truth at station locations.

    Each variable ``<q><level>`` of ``truth_ds`` (``t850``, ``u500``, ``z250``, ...) is
    interpolated bilinearly (longitude wrap on global grids) to each station with
    :func:`xdiffsr.regrid.point_weights`, the operator the assimilation applies to soundings,
    giving one sounding per station and time with one level per pressure level of the truth;
    Gaussian noise with the standard deviations of ``errors`` (default
    :data:`~xdiffsr.observations.vertical.DEFAULT_ERRORS`)
    is added.

    Parameters
    ----------
    truth_ds : xarray.Dataset
        Variables on (time, lat, lon) (found by :func:`xdiffsr.grid.find_latlon`);
        quantities ``t`` (K), ``u``, ``v`` (m/s), ``z`` (m2/s2), ``gh`` (m), ``r`` (%).
        Other variables (``sp``, ``t2m``) are ignored.
    stations : pandas.DataFrame
        Columns ``id`` (or ``station``), ``lat``, ``lon``: e.g. :func:`active_stations`.
        Stations outside the grid's cells (those :func:`xdiffsr.regrid.point_weights` refuses:
        beyond a regional grid's edge cells) are dropped with a warning naming how many.
    times : array_like of datetime, optional
        Times of ``truth_ds`` to use; default: the truth's times at ``hours`` UTC.
    hours : sequence of int
        Synoptic hours used when ``times`` is omitted.
    errors : mapping, optional
        Noise std per quantity (``"t"``) or variable (``"t850"``); 0 gives noise-free values.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    pandas.DataFrame
        The schema of :func:`xdiffsr.io.igra.read_igra` (data format): one row per station, time
        and level (pressure descending), ``gph = z / g0``, ``wdir``/``wspd`` from the noisy
        ``u``/``v``, ``release_time = time``, ``p_src = "simulate"``; columns with no source
        variable are NaN. ``attrs``: ``igra_format="data"``, ``simulated=True`` and, when
        ``errors`` has positive entries, ``errors`` (those entries), which ``super_resolve``
        assimilates the frame with instead of the default errors.
    """
    lat_name, lon_name = _latlon_names(truth_ds)
    targets = _truth_variables(truth_ds, lat_name, lon_name)
    st = _station_table(stations)
    op, inside = station_operator(truth_ds[lat_name].values, truth_ds[lon_name].values, st)
    if (~inside).any():
        warnings.warn(f"{int((~inside).sum())} of {inside.size} stations lie outside the truth "
                      "grid's cells (where the assimilation's point operator refuses them) and "
                      "were dropped.", XDiffSRWarning, stacklevel=2)
    st = st[inside].reset_index(drop=True)
    tsel = _select_times(truth_ds, times, hours)
    levels = sorted({lev for _, lev in targets.values()}, reverse=True)
    n_t, n_s, n_k = len(tsel), len(st), len(levels)
    cols = {c: np.full((n_t, n_s, n_k), np.nan) for c in ("temperature", "u", "v", "gph", "rh")}
    rng = np.random.default_rng(seed)
    for name, (q, lev) in targets.items():
        arr = truth_ds[name].transpose("time", lat_name, lon_name).isel(time=tsel).values
        vals = np.asarray(op @ arr.reshape(arr.shape[0], -1).T).T  # (time, station) bilinear
        std = _noise_std(errors, name, q)
        vals = vals + (rng.normal(0.0, std, vals.shape) if std > 0 else 0.0)
        cols[_FILLS[q]][:, :, levels.index(lev)] = vals / G0 if q == "z" else vals
    df = _sounding_frame(truth_ds["time"].values[tsel], st, np.asarray(levels, float), cols)
    positive = {str(k): float(v) for k, v in (errors or {}).items() if float(v) > 0}
    if positive:  # noise-free values (0) keep the default assimilation errors
        df.attrs["errors"] = positive
    return df


def _latlon_names(ds: xr.Dataset) -> tuple[str, str]:
    if not isinstance(ds, xr.Dataset):
        raise ArgumentError(f"truth_ds must be an xarray Dataset, got {type(ds).__name__}.")
    lat, lon = find_latlon(ds, "truth_ds")
    if "time" not in ds.coords:
        raise CoordinateError("truth_ds has no 'time' coordinate; add one (datetime64).")
    return str(lat.dims[0]), str(lon.dims[0])


def station_operator(
    grid_lat: np.ndarray, grid_lon: np.ndarray, stations: pd.DataFrame
) -> tuple[sp.csr_matrix, np.ndarray]:
    """The assimilation's point operator at the stations that lie inside the grid.

    Parameters
    ----------
    grid_lat, grid_lon : ndarray, shapes (n_lat,), (n_lon,)
        Grid centres, in their stored order.
    stations : pandas.DataFrame
        Columns ``lat``, ``lon``.

    Returns
    -------
    P : scipy.sparse.csr_matrix, shape (n_inside, n_lat * n_lon)
        :func:`xdiffsr.regrid.point_weights` (bilinear) at the inside stations: the same operator
        the assimilation applies to soundings.
    inside : ndarray of bool, shape (n_stations,)
        Stations inside the grid's cells; the others are refused by the operator.
    """
    lat, lon = stations["lat"].to_numpy(float), stations["lon"].to_numpy(float)
    try:
        return point_weights(grid_lat, grid_lon, lat, lon, "bilinear"), np.ones(lat.size, bool)
    except ObservationError:  # some lie outside: find them with the operator's own test
        pass
    inside = np.zeros(lat.size, bool)
    for k in range(lat.size):
        try:
            point_weights(grid_lat, grid_lon, lat[k : k + 1], lon[k : k + 1], "bilinear")
            inside[k] = True
        except ObservationError:
            pass
    if not inside.any():
        raise ArgumentError(
            f"stations: none of the {lat.size} stations lies inside the truth grid (lat "
            f"{np.min(grid_lat):g}..{np.max(grid_lat):g}, lon {np.min(grid_lon):g}.."
            f"{np.max(grid_lon):g}); pass stations within the grid"
        )
    return point_weights(grid_lat, grid_lon, lat[inside], lon[inside], "bilinear"), inside


def _truth_variables(ds: xr.Dataset, lat: str, lon: str) -> dict[str, tuple[str, float]]:
    out = {}
    for name in ds.data_vars:
        parsed = parse_model_variable(str(name))
        if parsed is None or parsed[0] not in _FILLS:
            continue
        if set(ds[name].dims) != {"time", lat, lon}:
            raise CoordinateError(
                f"truth_ds[{name!r}] has dims {ds[name].dims}; expected (time, {lat}, {lon}). "
                "Select one ensemble member or level first."
            )
        units = str(ds[name].attrs.get("units", "")).strip()
        if parsed[0] == "z" and units in ("m", "gpm"):
            raise UnitsError(f"truth_ds[{name!r}] has units {units!r}; z must be geopotential "
                             "(m**2 s**-2): multiply by g0 or rename it gh.")
        out[str(name)] = parsed
    if not out:
        raise ArgumentError(
            "truth_ds has no variables like t850, u500, z250 (quantities t, u, v, z, gh, r)."
        )
    return out


def _station_table(stations: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(stations, pd.DataFrame):
        raise ArgumentError(f"stations must be a DataFrame, got {type(stations).__name__}.")
    st = stations.rename(columns={"station": "id"}) if "id" not in stations else stations
    if not {"id", "lat", "lon"} <= set(st.columns):
        raise ArgumentError("stations needs columns id (or station), lat, lon.")
    st = st.drop_duplicates("id")[["id", "lat", "lon"]]
    st = st[np.isfinite(st["lat"]) & np.isfinite(st["lon"])].reset_index(drop=True)
    if st.empty:
        raise ArgumentError("stations has no station with finite lat/lon.")
    return st


def _select_times(ds: xr.Dataset, times: object, hours: Sequence[int]) -> np.ndarray:
    tv = pd.DatetimeIndex(ds["time"].values)
    if times is None:
        idx = np.flatnonzero(tv.hour.isin(list(hours)) & (tv.minute == 0) & (tv.second == 0))
        if idx.size == 0:
            raise ArgumentError(f"truth_ds has no time at hours={tuple(hours)} UTC; pass times=.")
        return idx
    want = pd.DatetimeIndex(pd.to_datetime(np.atleast_1d(np.asarray(times))))
    pos = tv.get_indexer(want)
    if (pos < 0).any():
        raise ArgumentError(f"times {list(want[pos < 0][:5])} are not in truth_ds.time.")
    return pos


def _noise_std(errors: Mapping[str, float] | None, name: str, q: str) -> float:
    errors = errors or {}
    std = float(errors.get(name, errors.get(q, DEFAULT_ERRORS[q])))
    if not (np.isfinite(std) and std >= 0):
        raise ArgumentError(f"errors for {name!r} is {std!r}; pass a std >= 0.")
    return std


def _sounding_frame(times: np.ndarray, st: pd.DataFrame, levels: np.ndarray,
                    cols: dict[str, np.ndarray]) -> pd.DataFrame:
    n_t, n_s, n_k = cols["u"].shape
    t_idx = np.repeat(np.arange(n_t), n_s * n_k)
    s_idx = np.tile(np.repeat(np.arange(n_s), n_k), n_t)
    p = np.tile(levels * 100.0, n_t * n_s)
    flat = {c: v.ravel() for c, v in cols.items()}
    wdir, wspd = wind_direction_speed(flat["u"], flat["v"])
    t = np.asarray(times, dtype="datetime64[ns]")[t_idx]
    n = len(p)
    std = np.isin(levels, STANDARD_LEVELS_HPA)
    df = pd.DataFrame({
        "station": st["id"].to_numpy(dtype=str)[s_idx],
        "sounding": t_idx * n_s + s_idx,
        "time": t, "release_time": t,
        "lat": st["lat"].to_numpy(float)[s_idx], "lon": st["lon"].to_numpy(float)[s_idx],
        "lvltyp1": np.tile(np.where(std, 1, 2), n_t * n_s).astype(np.int8),
        "lvltyp2": np.zeros(n, dtype=np.int8), "etime": np.full(n, np.nan), "pressure": p,
        "gph": flat["gph"], "temperature": flat["temperature"], "rh": flat["rh"],
        "dpdp": np.full(n, np.nan), "wdir": wdir, "wspd": wspd, "u": flat["u"], "v": flat["v"],
        "pflag": "", "zflag": "", "tflag": "", "qc_removed": np.zeros(n, dtype=np.int16),
        "p_src": "simulate", "np_src": "",
    })
    df["time"] = df["time"].astype("datetime64[ns]")
    df["release_time"] = df["release_time"].astype("datetime64[ns]")
    df.attrs.update({"igra_format": "data", "simulated": True, "igra_problems": []})
    return df
