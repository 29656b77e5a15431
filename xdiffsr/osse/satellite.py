"""Simulated satellite column observations (radiances) along swaths, from a nature-run truth.

The counterpart of :func:`xdiffsr.osse.stations.simulate_soundings` for the column operator of
:mod:`xdiffsr.observations.column`: the truth's temperature levels are interpolated bilinearly to
each footprint with :func:`xdiffsr.regrid.point_weights`, combined with the channels' weighting
matrix (the assimilation's own operator) and perturbed with Gaussian noise per channel.

Swaths are idealised: each orbit is a great circle of inclination ``inclination`` (degrees; 98.7
is sun-synchronous) whose ascending node is at longitude ``phase + 360 j / orbits`` for orbit
``j``, with a random phase per time (from ``seed``); the Earth's rotation during an orbit is
ignored. Footprints lie every ``spacing_km`` along the track, on ``across`` lines evenly spread
over ``swath_km`` across it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.grid import find_latlon
from xdiffsr.observations.column import (
    DEFAULT_CHANNEL_ERROR_STD,
    WeightingFunctions,
    column_levels,
)
from xdiffsr.regrid import point_weights

__all__ = [
    "column_representativeness",
    "correct_radiances",
    "simulate_radiances",
    "swath_mask",
    "swath_points",
]

EARTH_RADIUS_KM = 6371.0


def swath_points(
    node_lon: float,
    *,
    inclination: float = 98.7,
    swath_km: float = 2300.0,
    spacing_km: float = 300.0,
    across: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Footprint latitudes and longitudes (degrees, longitudes in [0, 360)) of one orbit.

    Parameters
    ----------
    node_lon : float
        Longitude of the ascending node (degrees).
    inclination : float
        Orbit inclination (degrees).
    swath_km : float
        Full swath width across the track (km); 0 gives the ground track only.
    spacing_km : float
        Distance between footprints along the track (km).
    across : int
        Footprint lines across the track (1: the ground track).
    """
    if not (spacing_km > 0 and swath_km >= 0 and int(across) >= 1):
        raise ArgumentError(
            f"spacing_km={spacing_km!r} must be > 0, swath_km={swath_km!r} >= 0 and "
            f"across={across!r} >= 1."
        )
    lam, inc = np.deg2rad(node_lon), np.deg2rad(inclination)
    e1 = np.array([np.cos(lam), np.sin(lam), 0.0])
    e2 = np.array([-np.sin(lam) * np.cos(inc), np.cos(lam) * np.cos(inc), np.sin(inc)])
    n = np.cross(e1, e2)
    u = np.arange(0.0, 2 * np.pi, spacing_km / EARTH_RADIUS_KM)
    half = 0.5 * swath_km / EARTH_RADIUS_KM
    d = np.linspace(-half, half, int(across)) if across > 1 else np.zeros(1)
    p = np.cos(u)[:, None] * e1 + np.sin(u)[:, None] * e2  # (n_u, 3) along the track
    q = np.cos(d)[None, :, None] * p[:, None, :] + np.sin(d)[None, :, None] * n  # (n_u, n_d, 3)
    q = q.reshape(-1, 3)
    lat = np.rad2deg(np.arcsin(np.clip(q[:, 2], -1, 1)))
    lon = np.rad2deg(np.arctan2(q[:, 1], q[:, 0])) % 360.0
    return lat, lon


def swath_mask(grid_lat, grid_lon, lat, lon) -> np.ndarray:
    """Boolean (n_lat, n_lon) mask of the grid cells (nearest centre) holding a footprint."""
    glat, glon = np.asarray(grid_lat, float), np.asarray(grid_lon, float) % 360.0
    i = np.abs(np.asarray(lat, float)[:, None] - glat[None, :]).argmin(axis=1)
    dlon = np.abs((np.asarray(lon, float)[:, None] % 360.0) - glon[None, :])
    j = np.minimum(dlon, 360.0 - dlon).argmin(axis=1)
    mask = np.zeros((glat.size, glon.size), dtype=bool)
    mask[i, j] = True
    return mask


def _channel_std(errors: Mapping[str, float] | float | None, channels: Sequence[str]
                 ) -> np.ndarray:
    if errors is None or np.isscalar(errors):
        std = np.full(len(channels), DEFAULT_CHANNEL_ERROR_STD if errors is None else errors,
                      dtype=float)
    else:
        std = np.array([float(errors.get(c, DEFAULT_CHANNEL_ERROR_STD)) for c in channels])
    if not (np.isfinite(std).all() and (std >= 0).all()):
        raise ArgumentError(f"errors={errors!r}: give standard deviations >= 0 (K) per channel.")
    return std


def simulate_radiances(
    truth_ds: xr.Dataset,
    *,
    times: Sequence | np.ndarray | pd.DatetimeIndex | None = None,
    weighting: WeightingFunctions | None = None,
    orbits: int = 2,
    inclination: float = 98.7,
    swath_km: float = 2300.0,
    spacing_km: float = 300.0,
    across: int = 5,
    errors: Mapping[str, float] | float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate column observations (one value per footprint and channel) from a truth.

    Parameters
    ----------
    truth_ds : xarray.Dataset
        Temperature levels ``t<hPa>`` (at least two, e.g. ``t850, t500, t250``, in K) on
        (time, lat, lon); other variables are ignored.
    times : array_like of datetime, optional
        Times of ``truth_ds`` to observe; default all.
    weighting : WeightingFunctions, optional
        Channels; default :meth:`WeightingFunctions.gaussian`.
    orbits : int
        Orbits (swaths) per time.
    inclination, swath_km, spacing_km, across
        Swath geometry, see :func:`swath_points`.
    errors : float or mapping, optional
        Noise standard deviation (K), one value or a dict by channel; default
        :data:`~xdiffsr.observations.column.DEFAULT_CHANNEL_ERROR_STD`; 0 gives noise-free
        values. It is also written to the ``error`` column.
    seed : int
        Seed of :func:`numpy.random.default_rng` (node phases and noise).

    Returns
    -------
    pandas.DataFrame
        Columns ``time, lat, lon, channel, value, error`` (the format of
        :class:`~xdiffsr.observations.column.ColumnObservations`); ``attrs["simulated"]``.
    """
    if not isinstance(truth_ds, xr.Dataset):
        raise ArgumentError(f"truth_ds must be an xarray Dataset, got {type(truth_ds).__name__}.")
    if "time" not in truth_ds.coords:
        raise CoordinateError("truth_ds has no 'time' coordinate; add one (datetime64).")
    if int(orbits) < 1:
        raise ArgumentError(f"orbits={orbits!r} must be >= 1.")
    lat_da, lon_da = find_latlon(truth_ds, "truth_ds")
    lat_name, lon_name = str(lat_da.name), str(lon_da.name)
    weighting = WeightingFunctions.gaussian() if weighting is None else weighting
    names = [str(v) for v in truth_ds.data_vars]
    idx, levels = column_levels(names)
    W = weighting.matrix(levels)  # (channels, levels)
    std = _channel_std(errors, weighting.channels)
    tv = truth_ds["time"].values if times is None else np.atleast_1d(
        np.asarray(pd.to_datetime(np.atleast_1d(np.asarray(times))), dtype="datetime64[ns]"))
    glat, glon = truth_ds[lat_name].values, truth_ds[lon_name].values
    lat_max = float(np.abs(glat).max())
    rng = np.random.default_rng(seed)
    frames = []
    for t in tv:
        phase = rng.uniform(0.0, 360.0)
        pts = [swath_points(phase + 360.0 * j / orbits, inclination=inclination,
                            swath_km=swath_km, spacing_km=spacing_km, across=across)
               for j in range(int(orbits))]
        lat = np.concatenate([p[0] for p in pts])
        lon = np.concatenate([p[1] for p in pts])
        keep = np.abs(lat) <= lat_max
        lat, lon = lat[keep], lon[keep]
        P = point_weights(glat, glon, lat, lon)
        snap = truth_ds.sel(time=t)
        prof = np.stack([P @ snap[names[i]].transpose(lat_name, lon_name).values.ravel()
                         for i in idx], axis=1)  # (points, levels)
        vals = prof @ W.T + rng.normal(size=(lat.size, W.shape[0])) * std
        n, k = lat.size, W.shape[0]
        frames.append(pd.DataFrame({
            "time": np.repeat(np.datetime64(t, "ns"), n * k),
            "lat": np.repeat(lat, k), "lon": np.repeat(lon, k),
            "channel": np.tile(np.asarray(weighting.channels, dtype=object), n),
            "value": vals.ravel(), "error": np.tile(std, n),
        }))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["time", "lat", "lon", "channel", "value", "error"])
    df.attrs["simulated"] = True
    return df


def column_representativeness(
    truth_ds: xr.Dataset,
    model_levels: Sequence[int],
    *,
    weighting: WeightingFunctions | None = None,
) -> pd.DataFrame:
    """Per channel: what a model with only ``model_levels`` misses of a radiance.

    The radiance of the full column of ``truth_ds`` (every ``t<hPa>`` level it has, e.g. a
    :func:`~xdiffsr.osse.nature.branch_nature_run` with extra levels) minus the radiance of its
    ``model_levels`` alone (the column the assimilation's operator sees), at every grid point and
    time, noise-free: its mean is the bias of the model's operator and its standard deviation a
    representativeness error. Estimate it on states other than those assimilated and apply it
    with :func:`correct_radiances`, as a radiance bias correction does in operational
    assimilation.

    Parameters
    ----------
    truth_ds : xarray.Dataset
        Temperature levels ``t<hPa>`` on (time, lat, lon), more than ``model_levels``.
    model_levels : sequence of int
        The model's temperature levels (hPa), all in ``truth_ds``.
    weighting : WeightingFunctions, optional
        Channels; default :meth:`WeightingFunctions.gaussian`.

    Returns
    -------
    pandas.DataFrame
        Index ``channel``; columns ``bias`` and ``std`` (K) and ``count``.
    """
    weighting = WeightingFunctions.gaussian() if weighting is None else weighting
    names = [str(v) for v in truth_ds.data_vars]
    idx, levels = column_levels(names)
    model = [f"t{int(p)}" for p in model_levels]
    missing = [m for m in model if m not in names]
    if missing or len(model) < 2:
        raise ArgumentError(
            f"model_levels={list(model_levels)!r}: need at least two levels, all in truth_ds "
            f"(it has {sorted(names)}); missing {missing}."
        )
    midx, mlev = column_levels(model)
    lat_da, lon_da = find_latlon(truth_ds, "truth_ds")
    dims = ("time", str(lat_da.name), str(lon_da.name))

    def radiance(variables: list[str], ix: list[int], lev: np.ndarray) -> np.ndarray:
        prof = np.stack([np.asarray(truth_ds[variables[i]].transpose(*dims)) for i in ix],
                        axis=-1)  # (time, lat, lon, levels)
        return prof @ weighting.matrix(lev).T  # (time, lat, lon, channels)

    d = radiance(names, idx, levels) - radiance(model, midx, mlev)
    d = d.reshape(-1, len(weighting.channels))
    return pd.DataFrame({"bias": d.mean(axis=0), "std": d.std(axis=0), "count": d.shape[0]},
                        index=pd.Index(list(weighting.channels), name="channel"))


def correct_radiances(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Radiances ``df`` (the format of :func:`simulate_radiances`) with each channel's ``bias``
    of ``table`` (:func:`column_representativeness`) subtracted and its ``std`` added to the
    error in quadrature: ``error = (error^2 + std^2)^(1/2)``."""
    unknown = sorted(set(df["channel"]) - set(table.index))
    if unknown:
        raise ArgumentError(f"table: no bias for channels {unknown}; it has {list(table.index)}.")
    out = df.copy()
    out["value"] = df["value"] - df["channel"].map(table["bias"]).astype(float)
    out["error"] = np.hypot(df["error"].astype(float),
                            df["channel"].map(table["std"]).astype(float))
    out.attrs = dict(df.attrs) | {"representativeness_corrected": True}
    return out
