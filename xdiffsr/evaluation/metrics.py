"""Verification metrics for gridded (ensemble) reconstructions.

All functions take xarray ``DataArray`` or ``Dataset`` objects, broadcast over every dimension they
do not reduce, and stay lazy on dask-backed inputs.

References
----------
.. [1] Rasp, S. et al. (2024). WeatherBench 2: A benchmark for the next generation of data-driven
   global weather models. *J. Adv. Model. Earth Syst.*, 16, e2023MS004019.
.. [2] Gneiting, T. and Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and
   estimation. *J. Am. Stat. Assoc.*, 102, 359-378.
.. [3] Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. *Q. J. R. Meteorol. Soc.*, 140,
   1917-1923.
.. [4] Fortin, V., Abaza, M., Anctil, F. and Turcotte, R. (2014). Why should ensemble spread match
   the RMSE of the ensemble mean? *J. Hydrometeorol.*, 15, 1708-1713.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError
from xdiffsr.evaluation.members import ENSEMBLE_DIMS, ensemble_dim
from xdiffsr.grid import find_latlon
from xdiffsr.names import to_model_layout

__all__ = [
    "ENSEMBLE_DIMS",
    "check_same_grid",
    "crps_ensemble",
    "ensemble_dim",
    "errors_at_points",
    "latitude_weights",
    "observation_mask",
    "rmse",
    "spread_skill_ratio",
    "zonal_spectrum",
]

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)
Weights = Literal["latitude"] | xr.DataArray | None

EARTH_RADIUS_M = 6_371_000.0



# --------------------------------------------------------------------------------------- helpers
def _latlon_dims(obj: xr.DataArray | xr.Dataset) -> tuple[Hashable | None, Hashable | None]:
    """Dimensions of the latitude and longitude of ``obj`` (:func:`xdiffsr.grid.find_latlon`),
    or (None, None) when it has no 1-D latitude and longitude (e.g. a time series)."""
    try:
        lat, lon = find_latlon(obj, "field")
    except CoordinateError:
        pass
    else:
        return lat.dims[0], lon.dims[0]
    # latitude without longitude (e.g. a zonal mean): the same finder, given a stand-in longitude
    stand_in = xr.Dataset(coords=dict(obj.coords)).assign_coords(
        _lon=("_lon", [0.0, 1.0], {"standard_name": "longitude"})
    )
    try:
        lat, _ = find_latlon(stand_in, "field")
    except CoordinateError:
        return None, None
    return (lat.dims[0] if lat.dims[0] in obj.dims else None), None


def check_same_grid(
    forecast: xr.DataArray | xr.Dataset,
    truth: xr.DataArray | xr.Dataset,
    names: tuple[str, str] = ("forecast", "truth"),
) -> tuple[Hashable | None, Hashable | None] | None:
    """Refuse two fields on different grids instead of letting xarray broadcast them.

    Latitude and longitude are found in both (CF attributes, then names: ``lat``/``latitude``,
    ``lon``/``longitude``); they must have the same dimension names and the same values (in any
    order: xarray aligns them).

    Returns
    -------
    (lat_dim, lon_dim) or None
        The shared dimensions, None when neither field has a latitude/longitude grid.

    Raises
    ------
    CoordinateError
        Different names for the same axis (``lat`` and ``latitude``, which would broadcast to
        a 4-D product), or different coordinate values (which would align to fewer points).
    """
    a, b = _latlon_dims(forecast), _latlon_dims(truth)
    if a == (None, None) and b == (None, None):
        return None
    for axis, da, db in (("latitude", a[0], b[0]), ("longitude", a[1], b[1])):
        if da != db:
            raise CoordinateError(
                f"{names[0]} has the {axis} dimension {da!r} but {names[1]} has {db!r}; "
                f"xarray would broadcast them into a product of both grids. Give both the same "
                f"name, e.g. {names[1]}.rename({{{db!r}: {da!r}}})."
            )
        if da is None:
            continue
        va = np.sort(np.asarray(forecast[da].values, dtype=float))
        vb = np.sort(np.asarray(truth[db].values, dtype=float))
        if va.shape != vb.shape or not np.array_equal(va, vb):
            raise CoordinateError(
                f"{names[0]} and {names[1]} are on different {axis} grids ({da!r}: {va.size} "
                f"values {va[:1].tolist()}..{va[-1:].tolist()} vs {vb.size} values "
                f"{vb[:1].tolist()}..{vb[-1:].tolist()}); regrid one onto the other "
                "(xdiffsr.regrid.Regridder) or, if they differ by rounding only, copy the "
                f"coordinate: {names[1]}.assign_coords({{{db!r}: {names[0]}[{da!r}]}})."
            )
    return a


def _prepare(
    forecast: T_Xarray, truth: T_Xarray, dims: Sequence[Hashable] | None
) -> tuple[T_Xarray, T_Xarray, tuple[Hashable, ...]]:
    """``truth`` in the forecast's layout (variables picked through :mod:`xdiffsr.names` when
    it is, e.g., a WeatherBench 2 Dataset), the grids checked, and the dimensions to reduce
    (default: latitude and longitude)."""
    if isinstance(forecast, xr.Dataset) and isinstance(truth, xr.Dataset):
        lacking = [str(v) for v in forecast.data_vars if v not in truth.data_vars]
        if lacking:
            found = to_model_layout(truth, lacking, argname="truth", missing="skip")
            if found.data_vars:
                kept = [v for v in forecast.data_vars if v in truth.data_vars]
                truth = truth[kept].assign(found.data_vars)
    grid_dims = check_same_grid(forecast, truth)
    if dims is None:
        if grid_dims is None or None in grid_dims:
            raise ArgumentError(
                f"dims: no latitude/longitude dimensions found among {tuple(forecast.dims)}; "
                "pass dims= naming the dimensions to average over"
            )
        dims = grid_dims
    return forecast, truth, tuple(dims)


def latitude_weights(lat: xr.DataArray | np.ndarray) -> xr.DataArray:
    """Area weights of latitude rows, normalised to mean 1 (WeatherBench 2 convention).

    The weight of a row is the area of its cell, ``sin(phi_upper) - sin(phi_lower)``, where the cell
    bounds are the midpoints between neighbouring latitudes and +-90 deg at the ends [1]_. On an
    equiangular grid whose cell centres are offset from the poles (e.g. the 2.8125 deg grid with
    centres at +-88.59375 deg) this is exactly proportional to ``cos(phi)``.

    Parameters
    ----------
    lat : DataArray or ndarray, shape (nlat,)
        Latitudes in degrees north, strictly monotonic (ascending or descending).

    Returns
    -------
    DataArray, shape (nlat,)
        Weights along ``lat``'s dimension (``"lat"`` for a plain array), mean 1.

    References
    ----------
    .. [1] Rasp et al. (2024), WeatherBench 2, Sect. 4 (latitude weighting).
    """
    da = lat if isinstance(lat, xr.DataArray) else xr.DataArray(np.asarray(lat), dims=["lat"])
    phi = np.asarray(da.values, dtype=float)
    if phi.ndim != 1 or phi.size < 2 or np.any(np.abs(phi) > 90):
        raise CoordinateError(
            f"lat: expected a 1-D array of at least 2 latitudes within [-90, 90], got {phi!r}; "
            "pass the grid's latitude coordinate"
        )
    step = np.diff(phi)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise CoordinateError("lat: latitudes must be strictly monotonic; sort the grid first")
    ascending = np.sort(phi)
    bounds = np.concatenate([[-90.0], 0.5 * (ascending[1:] + ascending[:-1]), [90.0]])
    area = np.diff(np.sin(np.deg2rad(bounds)))
    area = area if step[0] > 0 else area[::-1]
    return xr.DataArray(area / area.mean(), dims=da.dims, coords={da.dims[0]: da.values})


def _resolve_weights(
    obj: xr.DataArray | xr.Dataset, dims: Sequence[Hashable], weights: Weights
) -> xr.DataArray | None:
    """Turn the ``weights`` argument into a DataArray (or None for an unweighted mean)."""
    if weights is None:
        return None
    if isinstance(weights, xr.DataArray):
        return weights
    if weights != "latitude":
        raise ArgumentError(
            f"weights: expected 'latitude', None or a DataArray, got {weights!r}; "
            "use weights='latitude' for area weighting"
        )
    lat_dim, _ = _latlon_dims(obj)
    if lat_dim is None or lat_dim not in dims:
        return None  # latitude not reduced: area weights cancel out
    return latitude_weights(obj[lat_dim])


def _check_dims(obj: xr.DataArray | xr.Dataset, dims: Sequence[Hashable], name: str) -> None:
    missing = [d for d in dims if d not in obj.dims]
    if missing:
        raise ArgumentError(
            f"dims: {missing} not among the dimensions {tuple(obj.dims)} of {name}; "
            "pass dims= with existing dimension names"
        )


def _mean(
    obj: T_Xarray, dims: Sequence[Hashable], weights: Weights, name: str = "forecast"
) -> T_Xarray:
    """(Weighted) mean over ``dims``; NaNs are skipped."""
    dims = tuple(dims)
    _check_dims(obj, dims, name)
    if not dims:
        return obj
    w = _resolve_weights(obj, dims, weights)
    if w is None:
        return obj.mean(dims)
    return obj.weighted(w.fillna(0.0)).mean(dims)


def _ensemble_size(forecast: xr.DataArray | xr.Dataset, member_dim: Hashable | None) -> int:
    if member_dim is None:
        raise ArgumentError(
            f"member_dim: none of the ensemble dimensions {ENSEMBLE_DIMS} is among the "
            f"forecast's dimensions {tuple(forecast.dims)}; pass member_dim= naming it"
        )
    if member_dim not in forecast.dims:
        raise ArgumentError(
            f"member_dim: {member_dim!r} is not a dimension of the forecast "
            f"{tuple(forecast.dims)}; "
            "pass member_dim= naming the ensemble dimension"
        )
    return int(forecast.sizes[member_dim])


# --------------------------------------------------------------------------------------- metrics
def rmse(
    forecast: T_Xarray,
    truth: T_Xarray,
    *,
    dims: Sequence[Hashable] | None = None,
    weights: Weights = "latitude",
    member_dim: Hashable | None = None,
) -> T_Xarray:
    """Root-mean-square error of the (ensemble-mean) forecast.

    ``sqrt(sum_i w_i (f_i - y_i)^2 / sum_i w_i)`` over ``dims``, where ``f`` is the mean over
    ``member_dim`` when the forecast has that dimension [1]_. Including ``"time"`` in ``dims``
    averages squared errors over time before the square root (the WeatherBench 2 RMSE).

    Parameters
    ----------
    forecast, truth : DataArray or Dataset
        Broadcastable fields, e.g. forecast (member, time, lat, lon) and truth (time, lat, lon).
    dims : sequence of str, optional
        Dimensions to reduce; default the latitude and longitude dimensions, found by CF
        attributes or name (``lat``/``latitude``, ``lon``/``longitude``). The forecast and the
        truth must share them, with the same values (:func:`check_same_grid`); a truth Dataset
        in another layout (WeatherBench 2, cfgrib) is put in the forecast's
        (:func:`xdiffsr.names.to_model_layout`).
    weights : {"latitude"}, DataArray or None
        ``"latitude"``: cell-area weights of :func:`latitude_weights`; a DataArray: custom weights;
        None: unweighted.
    member_dim : str, optional
        Ensemble dimension, averaged first when present; default: whichever of
        :data:`ENSEMBLE_DIMS` (``member``, ``number``, ``realization``, ``ensemble``) the
        forecast has.

    Returns
    -------
    DataArray or Dataset
        Same type as ``forecast`` without ``dims`` (and ``member_dim``).

    References
    ----------
    .. [1] Rasp et al. (2024), WeatherBench 2, Eq. (1).
    """
    forecast, truth, dims = _prepare(forecast, truth, dims)
    member_dim = ensemble_dim(forecast, member_dim)
    if member_dim in forecast.dims:
        forecast = forecast.mean(member_dim)
    return np.sqrt(_mean((forecast - truth) ** 2, dims, weights))


def _crps_kernel(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    """CRPS of ensembles ``x`` (..., M) against ``y`` (...); Gneiting & Raftery (2007), Eq. (21).

    The spread term uses the sorted-member identity ``sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1)
    x_(i)`` (1-based ranks), O(M log M) instead of O(M^2).
    """
    m = x.shape[-1]
    skill = np.mean(np.abs(x - y[..., None]), axis=-1)
    ranks = 2.0 * np.arange(1, m + 1) - m - 1
    pair_sum = 2.0 * np.sum(np.sort(x, axis=-1) * ranks, axis=-1)
    norm = 2.0 * m * (m - 1) if fair else 2.0 * m * m
    return skill - pair_sum / norm


def crps_ensemble(
    forecast: T_Xarray,
    truth: T_Xarray,
    *,
    member_dim: Hashable | None = None,
    fair: bool = True,
    dims: Sequence[Hashable] | None = None,
    weights: Weights = "latitude",
) -> T_Xarray:
    """Continuous ranked probability score of an ensemble, optionally the fair (unbiased) form.

    Pointwise ``CRPS = mean_i |x_i - y| - 1/(2 M (M-1)) sum_{i,j} |x_i - x_j|`` (fair [3]_) or
    with ``1/(2 M^2)`` (the CRPS of the empirical distribution [2]_), then averaged over ``dims``.
    The fair score's expectation equals the CRPS of the distribution the members are drawn from.

    Parameters
    ----------
    forecast : DataArray or Dataset
        Ensemble with dimension ``member_dim`` (M members; M >= 2 when ``fair``).
    truth : DataArray or Dataset
        Verifying field, broadcastable against ``forecast`` without ``member_dim``.
    member_dim : str, optional
        Ensemble dimension (a single dask chunk along it is used); default: whichever of
        :data:`ENSEMBLE_DIMS` the forecast has.
    fair : bool
        Fair (unbiased) estimator (True) or the empirical-distribution CRPS (False).
    dims, weights
        Averaging as in :func:`rmse`; ``dims=()`` returns the pointwise score.

    Returns
    -------
    DataArray or Dataset
        Same type as ``forecast`` without ``member_dim`` and ``dims``.

    References
    ----------
    .. [2] Gneiting & Raftery (2007), Eq. (21).
    .. [3] Ferro (2014), Eq. (4); Zamo & Naveau (2018), Math. Geosci. 50, 209-234.
    """
    forecast, truth, dims = _prepare(forecast, truth, dims)
    member_dim = ensemble_dim(forecast, member_dim)
    m = _ensemble_size(forecast, member_dim)
    if fair and m < 2:
        raise ArgumentError(
            f"forecast: the fair CRPS needs at least 2 members along {member_dim!r}, got {m}; "
            "pass fair=False for a single member"
        )
    if forecast.chunks:
        forecast = forecast.chunk({member_dim: -1})
    score = xr.apply_ufunc(
        _crps_kernel,
        forecast,
        truth,
        kwargs={"fair": fair},
        input_core_dims=[[member_dim], []],
        dask="parallelized",
        output_dtypes=[float],
    )
    return _mean(score, dims, weights)


def spread_skill_ratio(
    forecast: T_Xarray,
    truth: T_Xarray,
    *,
    member_dim: Hashable | None = None,
    dims: Sequence[Hashable] | None = None,
    weights: Weights = "latitude",
    finite_ensemble_correction: bool = True,
) -> T_Xarray:
    """Ratio of ensemble spread to the RMSE of the ensemble mean.

    ``spread = sqrt(mean_w var_M(x))`` with the unbiased (ddof=1) member variance, ``skill =``
    :func:`rmse` of the ensemble mean, both averaged with the same weights. With
    ``finite_ensemble_correction`` the spread is multiplied by ``sqrt((M+1)/M)`` so that a reliable
    ensemble of any size has an expected ratio of 1 [4]_; ratios below 1 mean under-dispersion.

    Parameters
    ----------
    forecast : DataArray or Dataset
        Ensemble with at least 2 members along ``member_dim``.
    truth : DataArray or Dataset
        Verifying field.
    member_dim, dims, weights
        As in :func:`crps_ensemble`.
    finite_ensemble_correction : bool
        Apply the ``sqrt((M+1)/M)`` factor of Fortin et al. (2014), Eq. (8).

    Returns
    -------
    DataArray or Dataset
        Same type as ``forecast`` without ``member_dim`` and ``dims``.

    References
    ----------
    .. [4] Fortin et al. (2014); Rasp et al. (2024), WeatherBench 2, Sect. 4.
    """
    forecast, truth, dims = _prepare(forecast, truth, dims)
    member_dim = ensemble_dim(forecast, member_dim)
    m = _ensemble_size(forecast, member_dim)
    if m < 2:
        raise ArgumentError(
            f"forecast: the spread needs at least 2 members along {member_dim!r}, got {m}; "
            "pass an ensemble"
        )
    spread = np.sqrt(_mean(forecast.var(member_dim, ddof=1), dims, weights))
    if finite_ensemble_correction:
        spread = spread * np.sqrt((m + 1) / m)
    return spread / rmse(forecast, truth, dims=dims, weights=weights, member_dim=member_dim)


def _power_kernel(x: np.ndarray) -> np.ndarray:
    """One-sided power of a real signal along the last axis; sums to mean(x**2) (Parseval)."""
    n = x.shape[-1]
    power = np.abs(np.fft.rfft(x, axis=-1) / n) ** 2
    power[..., 1 : (n + 1) // 2] *= 2.0  # +-k pairs, excluding k=0 and (even n) the Nyquist
    return power


def zonal_spectrum(
    field: T_Xarray,
    *,
    lon_dim: Hashable | None = None,
    radius: float = EARTH_RADIUS_M,
) -> T_Xarray:
    """Zonal power spectrum of a field along latitude circles.

    For ``n`` equally spaced longitudes with DFT ``F_k = sum_j x_j exp(-2 pi i j k / n)``, the power
    at zonal wavenumber ``k = 0 .. n//2`` is ``c_k |F_k / n|^2`` with ``c_k = 2`` except ``c_0 = 1``
    and (even ``n``) ``c_{n/2} = 1``, so that ``sum_k E_k = mean(x^2)`` (Parseval). A single wave
    ``A cos(k0 lambda)`` gives ``E_{k0} = A^2 / 2``. WeatherBench 2 multiplies this by the circle's
    circumference to get field^2 x metre [1]_; multiply by the ``circumference`` coordinate for
    that.

    Parameters
    ----------
    field : DataArray or Dataset
        Fields with a longitude dimension (any other dimensions are kept).
    lon_dim : str, optional
        Longitude dimension; found by name (lon, longitude) or units ``degrees_east`` if omitted.
    radius : float
        Sphere radius in metres, used for the ``wavelength`` and ``circumference`` coordinates.

    Returns
    -------
    DataArray or Dataset
        ``field`` with ``lon_dim`` replaced by ``zonal_wavenumber`` (size n//2 + 1), plus
        coordinates ``wavelength`` (m; inf at k=0) and ``circumference`` (m)
        when latitude is present.

    References
    ----------
    .. [1] Rasp et al. (2024), WeatherBench 2, Sect. 4 (zonal energy spectrum).
    """
    lat_dim, found_lon = _latlon_dims(field)
    lon_dim = lon_dim or found_lon
    if lon_dim is None or lon_dim not in field.dims:
        raise CoordinateError(
            f"lon_dim: no longitude dimension among {tuple(field.dims)}; pass lon_dim= explicitly"
        )
    n = int(field.sizes[lon_dim])
    if field.chunks:
        field = field.chunk({lon_dim: -1})
    spec = xr.apply_ufunc(
        _power_kernel,
        field,
        input_core_dims=[[lon_dim]],
        output_core_dims=[["zonal_wavenumber"]],
        dask="parallelized",
        output_dtypes=[float],
        dask_gufunc_kwargs={"output_sizes": {"zonal_wavenumber": n // 2 + 1}},
    )
    k = np.arange(n // 2 + 1)
    spec = spec.assign_coords(zonal_wavenumber=k)
    if lat_dim is not None:
        circ = 2 * np.pi * radius * np.cos(np.deg2rad(field[lat_dim]))
        with np.errstate(divide="ignore"):
            wavelength = circ / xr.DataArray(k, dims="zonal_wavenumber").astype(float)
        spec = spec.assign_coords(circumference=circ, wavelength=wavelength)
    return spec


# ------------------------------------------------------------------- observed vs unobserved
def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray):
    p1, p2, dl = np.deg2rad(lat1), np.deg2rad(lat2), np.deg2rad(lon2 - lon1)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M / 1000 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def _points_latlon(points: pd.DataFrame | xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    cols = points.columns if isinstance(points, pd.DataFrame) else points.variables
    if "lat" not in cols or "lon" not in cols:
        raise ArgumentError(
            f"points: needs 'lat' and 'lon' columns, got {list(cols)}; pass the tidy observation "
            "DataFrame (columns time, lat, lon, variable, value)"
        )
    lat = np.asarray(points["lat"], dtype=float).ravel()
    lon = np.asarray(points["lon"], dtype=float).ravel()
    keep = np.isfinite(lat) & np.isfinite(lon)
    return lat[keep], lon[keep]


def observation_mask(
    lat: xr.DataArray,
    lon: xr.DataArray,
    points: pd.DataFrame | xr.Dataset,
    *,
    radius_km: float | None = None,
) -> xr.DataArray:
    """Boolean (lat, lon) mask of grid cells that are "observed".

    Without ``radius_km`` a cell is observed when it is the nearest grid cell of at least one point;
    with ``radius_km`` when its centre lies within that great-circle distance of a point.

    Parameters
    ----------
    lat, lon : DataArray, shapes (nlat,), (nlon,)
        Grid coordinates in degrees (longitudes in either convention).
    points : DataFrame or Dataset
        Anything with ``lat`` and ``lon`` columns, e.g. the tidy observation DataFrame; all times
        are pooled.
    radius_km : float, optional
        Influence radius in km.

    Returns
    -------
    DataArray of bool, shape (nlat, nlon)
    """
    plat, plon = _points_latlon(points)
    glat, glon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    mask = np.zeros((glat.size, glon.size), dtype=bool)
    if radius_km is not None and not (np.isfinite(radius_km) and radius_km >= 0):
        raise ArgumentError(f"radius_km: expected a non-negative distance, got {radius_km!r}")
    if plat.size == 0:
        pass
    elif radius_km is None:
        i = np.abs(glat[:, None] - plat[None, :]).argmin(axis=0)
        dlon = np.abs((glon[:, None] - plon[None, :] + 180.0) % 360.0 - 180.0)
        mask[i, dlon.argmin(axis=0)] = True
    else:
        g_lat, g_lon = np.meshgrid(glat, glon, indexing="ij")
        for start in range(0, plat.size, 256):  # bounded memory: cells x 256 points at a time
            sl = slice(start, start + 256)
            d = _haversine_km(g_lat[..., None], g_lon[..., None], plat[sl], plon[sl])
            mask |= (d <= radius_km).any(axis=-1)
    return xr.DataArray(
        mask,
        dims=(lat.dims[0], lon.dims[0]),
        coords={lat.dims[0]: lat.values, lon.dims[0]: lon.values},
        name="observed",
    )


def errors_at_points(
    forecast: T_Xarray,
    truth: T_Xarray,
    points: pd.DataFrame | xr.Dataset,
    *,
    radius_km: float | None = None,
    dims: Sequence[Hashable] | None = None,
    weights: Weights = "latitude",
    member_dim: Hashable | None = None,
) -> T_Xarray:
    """RMSE of the (ensemble-mean) forecast at observed and at unobserved grid cells.

    The grid cells are split with :func:`observation_mask`; each part's latitude-weighted RMSE is
    computed as in :func:`rmse`. A reconstruction that merely copies observations shows a low error
    at observed cells and no gain elsewhere.

    Parameters
    ----------
    forecast, truth : DataArray or Dataset
        Gridded fields with latitude and longitude dimensions (see :func:`rmse`).
    points : DataFrame or Dataset
        Observation locations (columns ``lat``, ``lon``).
    radius_km, dims, weights, member_dim
        See :func:`observation_mask` and :func:`rmse`.

    Returns
    -------
    DataArray or Dataset
        RMSE with a new leading dimension ``location = ["observed", "unobserved"]`` (NaN for a part
        with no cells).
    """
    forecast, truth, dims = _prepare(forecast, truth, dims)
    lat, lon = find_latlon(truth, "truth")
    lat_dim, lon_dim = lat.dims[0], lon.dims[0]
    mask = observation_mask(truth[lat_dim], truth[lon_dim], points, radius_km=radius_km)
    member_dim = ensemble_dim(forecast, member_dim)
    if member_dim in forecast.dims:
        forecast = forecast.mean(member_dim)
    sq = (forecast - truth) ** 2
    parts = [np.sqrt(_mean(sq.where(m), dims, weights)) for m in (mask, ~mask)]
    loc = pd.Index(["observed", "unobserved"], name="location")
    return xr.concat(parts, dim=loc)
