"""Held-out-observation validation: withhold some observations, reconstruct, score at them.

The protocol: split a source with :func:`withhold` into the observations that are assimilated
and those that are not, reconstruct with the kept ones only, and score the ensemble at the
withheld ones with :func:`score_withheld` (the ensemble interpolated to the withheld points with
:func:`xdiffsr.regrid.point_weights`, the operator the assimilation uses for points). The scores
are independent of the data the reconstruction saw; they include the observation error (an
ensemble that is perfect at the points has an RMSE equal to the error std there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, ObservationError
from xdiffsr.evaluation.metrics import crps_ensemble, rmse, spread_skill_ratio
from xdiffsr.grid import find_time, grid_of, to_datetime64
from xdiffsr.observations.vertical import soundings_to_observations
from xdiffsr.regrid import point_weights
from xdiffsr.units import convert_units

__all__ = ["WITHHOLD_BY", "score_withheld", "withhold"]

#: The ways :func:`withhold` chooses what to withhold.
WITHHOLD_BY = ("random", "station", "region")


def _is_sounding_frame(df: pd.DataFrame) -> bool:
    return "variable" not in df.columns and "pressure" in df.columns


def _station_column(df: pd.DataFrame) -> str | None:
    return next((c for c in ("station", "id") if c in df.columns), None)


def _units(df: pd.DataFrame, by: str) -> pd.Series:
    """A label per row: the unit that is withheld as a whole (row, sounding, station, place)."""
    st = _station_column(df)
    place = df["lat"].round(6).astype(str) + "," + df["lon"].round(6).astype(str)
    if by == "random":
        if not _is_sounding_frame(df):
            return pd.Series(np.arange(len(df)).astype(str), index=df.index)
        who = df[st].astype(str) if st else place
        return who + "@" + df["time"].astype(str)
    if by == "station" and st:
        return df[st].astype(str)
    return place


def _region_labels(df: pd.DataFrame, labels: pd.Series, n: int, rng) -> set:
    """The ``n`` locations nearest (great circle) to a randomly chosen observed location."""
    first = df.groupby(labels.values, sort=True)[["lat", "lon"]].first()
    lat, lon = np.deg2rad(first["lat"].to_numpy(float)), np.deg2rad(first["lon"].to_numpy(float))
    c = int(rng.integers(len(first)))
    cosd = np.sin(lat) * np.sin(lat[c]) + np.cos(lat) * np.cos(lat[c]) * np.cos(lon - lon[c])
    order = np.argsort(-np.clip(cosd, -1, 1), kind="stable")
    return set(first.index[order[:n]])


def withhold(
    frame: pd.DataFrame,
    fraction: float = 0.1,
    by: str = "random",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split point observations into kept (to assimilate) and withheld (to score) ones.

    Parameters
    ----------
    frame : pandas.DataFrame
        Tidy point observations (time, lat, lon, variable, value[, error]) or an IGRA sounding
        frame (:func:`xdiffsr.io.igra.read_igra`, :func:`xdiffsr.osse.simulate_soundings`).
    fraction : float
        Fraction of the units (below) to withhold, in (0, 1); at least one is withheld and one
        kept.
    by : {"random", "station", "region"}
        ``"random"``: random rows of a tidy frame, random soundings (station and time) of a
        sounding frame. ``"station"``: every observation of randomly chosen stations (the
        ``station`` or ``id`` column, else distinct positions). ``"region"``: every observation
        at the positions nearest (great-circle distance) to a randomly chosen observed position,
        as many positions as ``fraction`` of them: a spherical cap with no assimilated data.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    kept, withheld : pandas.DataFrame
        Rows of ``frame`` (index and columns kept), disjoint, together all of ``frame``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ArgumentError(f"frame must be a pandas DataFrame, got {type(frame).__name__}.")
    missing = {"time", "lat", "lon"} - set(frame.columns)
    if missing:
        raise ObservationError(f"frame lacks columns {sorted(missing)} (have {list(frame)}).")
    if by not in WITHHOLD_BY:
        raise ArgumentError(f"by={by!r}: choose one of {WITHHOLD_BY}.")
    if not (isinstance(fraction, int | float) and 0 < fraction < 1):
        raise ArgumentError(f"fraction={fraction!r} must be a number in (0, 1), e.g. 0.1.")
    labels = _units(frame, by)
    unique = np.unique(labels.to_numpy(str))
    if unique.size < 2:
        raise ObservationError(f"frame has {unique.size} unit(s) to split by {by!r}; need >= 2.")
    n = int(min(max(round(fraction * unique.size), 1), unique.size - 1))
    rng = np.random.default_rng(seed)
    if by == "region":
        chosen = _region_labels(frame, labels, n, rng)
    else:
        chosen = set(rng.choice(unique, n, replace=False))
    out = labels.isin(chosen).to_numpy()
    return frame.loc[~out].copy(), frame.loc[out].copy()


def _tidy(withheld: pd.DataFrame, variables: Sequence[str]) -> pd.DataFrame:
    if _is_sounding_frame(withheld):
        withheld = soundings_to_observations(withheld, list(variables))
    missing = {"time", "lat", "lon", "variable", "value"} - set(withheld.columns)
    if missing:
        raise ObservationError(
            f"withheld observations lack columns {sorted(missing)}; give tidy point observations "
            "or an IGRA sounding frame."
        )
    return withheld[withheld["variable"].isin(list(variables))]


def _at_points(ensemble: xr.Dataset, obs: pd.DataFrame, tolerance, method: str):
    """(forecast (member, obs) and observed (obs,) DataArrays) per variable; each observation
    is matched to the nearest ensemble time within ``tolerance``."""
    grid = grid_of(ensemble, argname="ensemble")
    tname = find_time(ensemble, argname="ensemble")
    times = to_datetime64(ensemble[tname].values)
    t_obs = to_datetime64(obs["time"])
    k = np.abs(t_obs[:, None] - times[None, :]).argmin(axis=1)
    ok = np.abs(t_obs - times[k]) <= pd.Timedelta(tolerance).to_timedelta64()
    obs, k = obs.loc[ok], k[ok]
    out = {}
    for v, g in obs.groupby("variable", sort=True):
        da = ensemble[v]
        member = "member" in da.dims
        da = da if member else da.expand_dims(member=1)
        da = da.transpose(tname, "member", grid.lat_name, grid.lon_name)
        P = point_weights(grid.lat, grid.lon, g["lat"].to_numpy(float), g["lon"].to_numpy(float),
                          method=method)
        kk = k[(obs["variable"] == v).to_numpy()]
        fields = da.values.reshape(da.shape[0], da.shape[1], -1)  # (time, member, H*W)
        x = np.einsum("nj,nmj->mn", P.toarray(), fields[kk])
        y = g["value"].to_numpy(float).copy()
        units = da.attrs.get("units") or None
        for u in g["units"].unique() if "units" in g else []:
            sel = (g["units"] == u).to_numpy()
            y[sel] = convert_units(y[sel], u, units, name=f"withheld {v} values")
        out[v] = (xr.DataArray(x, dims=("member", "obs")), xr.DataArray(y, dims="obs"),
                  member, units or "")
    return out


def score_withheld(
    ensemble: xr.Dataset,
    withheld: pd.DataFrame,
    *,
    variables: Sequence[str] | None = None,
    tolerance: str | pd.Timedelta = "3h",
    method: str = "bilinear",
) -> pd.DataFrame:
    """Scores of a reconstruction at withheld observations (and nowhere else).

    Parameters
    ----------
    ensemble : xarray.Dataset
        A reconstruction (time, member, lat, lon), or a deterministic one without ``member``.
    withheld : pandas.DataFrame
        The withheld observations of :func:`withhold` (tidy, or an IGRA sounding frame, which is
        interpolated to the ensemble's pressure-level variables first).
    variables : list of str, optional
        Variables to score (default: every ensemble variable with withheld observations).
    tolerance : str or Timedelta
        An observation is scored against the nearest ensemble time within this window.
    method : {"bilinear", "bicubic"}
        Interpolation of the ensemble to the points (:func:`xdiffsr.regrid.point_weights`).

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, units, metric, value, count``: ``rmse`` of the ensemble mean, the
        fair ``crps`` (Ferro 2014; the mean absolute error of a deterministic reconstruction)
        and ``spread_skill`` (with the finite-ensemble factor, ensembles only), unweighted means
        over the ``count`` withheld observations. Units conversion of a ``units`` column.
    """
    grid = grid_of(ensemble, argname="ensemble")
    fields = [str(v) for v, da in ensemble.data_vars.items()
              if {grid.lat_name, grid.lon_name} <= set(da.dims)]
    variables = [v for v in (variables or fields) if v in fields]
    obs = _tidy(withheld, variables)
    rows: list[dict[str, Any]] = []
    for v, (x, y, member, units) in _at_points(ensemble, obs, tolerance, method).items():
        if y.size == 0:
            continue
        kw = dict(dims=["obs"], weights=None)
        scores = {"rmse": rmse(x, y, **kw)}
        if member and x.sizes["member"] > 1:
            scores["crps"] = crps_ensemble(x, y, **kw)
            scores["spread_skill"] = spread_skill_ratio(x, y, **kw)
        else:
            scores["crps"] = crps_ensemble(x, y, fair=False, **kw)
        rows += [
            {"variable": v, "units": units, "metric": m, "value": float(s), "count": int(y.size)}
            for m, s in scores.items()
        ]
    return pd.DataFrame(rows, columns=["variable", "units", "metric", "value", "count"])
