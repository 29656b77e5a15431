"""Observation sources: point observations (tidy DataFrames, IGRA soundings) and gridded fields.

Each source turns, for one target time, into an :class:`ObsBlock`: a sparse matrix acting on the
model state in physical units (flattened in (variable, lat, lon) C order), the observed values,
their
error variances and the index of the model variable each observation belongs to.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from xdiffsr.cache import ProcessCache
from xdiffsr.errors import ArgumentError, ObservationError, XDiffSRWarning
from xdiffsr.grid import Grid, find_time, grid_of, to_datetime64
from xdiffsr.names import extra_dims, parse_channel, to_model_layout
from xdiffsr.observations.base import ObsBlock, Observations
from xdiffsr.observations.earth2studio import from_earth2studio, is_earth2studio_frame
from xdiffsr.observations.error_model import DEFAULT_ERROR_STD
from xdiffsr.observations.superobs import (
    DEFAULT_SUPEROBS_RHO,
    check_superobs,
    grid_averaging,
    is_fine,
    point_superobs,
    superobs_rows,
    superobs_suffix,
)
from xdiffsr.observations.validate import (
    check_points,
    grid_units,
    is_real,
    numeric_column,
    point_units,
    time_column,
)
from xdiffsr.observations.vertical import soundings_to_observations
from xdiffsr.regrid import point_weights, regrid_weights
from xdiffsr.units import convert_units

__all__ = [
    "DEFAULT_ERROR_STD",
    "CallableObservations",
    "GridObservations",
    "ObsBlock",
    "Observations",
    "PointObservations",
    "as_source",
]

@dataclass
class PointObservations(Observations):
    """Point observations in tidy form: columns time, lat, lon, variable, value[, error][, gamma].

    ``value`` is in the model variable's units unless a ``units`` column says otherwise (converted
    per row group). ``error`` is an error *standard deviation* in the same units; ``gamma`` a
    per-observation ``Gamma``. The default time tolerance is ±3 h (radiosonde convention:
    nominal hours 00 and 12 UTC).

    ``superobs=True`` averages the observations of each model variable in each model cell into
    one (the mean of their values and of their interpolation rows; error variance as for grids,
    :mod:`xdiffsr.observations.superobs`); off by default.
    """

    kind = "points"
    superobs: bool = False
    superobs_rho: float = DEFAULT_SUPEROBS_RHO

    def __post_init__(self):
        df = self.data
        if not isinstance(df, pd.DataFrame):
            raise ArgumentError(
                f"PointObservations needs a pandas DataFrame, got {type(df).__name__}."
            )
        missing = {"time", "lat", "lon", "variable", "value"} - set(df.columns)
        if missing:
            raise ObservationError(
                f"point observations lack columns {sorted(missing)} (have {list(df.columns)}); "
                "give a tidy DataFrame with time, lat, lon, variable, value[, error], or the "
                "output of xdiffsr.io.igra.read_igra."
            )
        self._check_options("3h")
        df = point_units(df.copy(), self.units, self.assume_units)
        df["time"] = time_column(df)
        for col in ("value", "lat", "lon", "error", "gamma"):
            if col in df:
                df[col] = numeric_column(df, col)
        check_points(df)
        bad = ~np.isfinite(df["value"].to_numpy(float)) | np.isnat(df["time"].to_numpy())
        bad |= ~np.isfinite(df["lat"].to_numpy(float)) | ~np.isfinite(df["lon"].to_numpy(float))
        if "error" in df:
            bad |= ~(df["error"].to_numpy(float) > 0)
        if "gamma" in df:
            bad |= ~(df["gamma"].to_numpy(float) >= 0)
        if bad.any():
            warnings.warn(
                f"dropped {int(bad.sum())} of {len(df)} point observations with NaN "
                "value, time, position, error or gamma (or error <= 0, gamma < 0).",
                XDiffSRWarning,
                stacklevel=4,
            )
            df = df.loc[~bad]
        self.data = df.sort_values("time", kind="stable").reset_index(drop=True)

    def describe(self) -> str:
        return self.name or f"points({len(self.data)} obs)"

    def window(self, start, stop) -> PointObservations:
        t = self.data["time"].to_numpy()
        sel = (t >= start - self._tol.to_timedelta64()) & (t <= stop + self._tol.to_timedelta64())
        out = replace(self, data=self.data.loc[sel])
        return out

    def _block_at(self, t, prior) -> ObsBlock | None:
        times = self.data["time"].to_numpy()
        tol = self._tol.to_timedelta64()
        lo, hi = np.searchsorted(times, t - tol, "left"), np.searchsorted(times, t + tol, "right")
        df = self.data.iloc[lo:hi]
        if df.empty:
            return None
        df = _model_names(df, prior.variables)
        unknown = sorted(set(df["variable"]) - set(prior.variables))
        if unknown:
            raise ObservationError(
                f"observation variables {unknown} are not in the model (model variables: "
                f"{list(prior.variables)}); drop or rename them."
            )
        method = self.method or "bilinear"
        lat, lon = prior.grid.lat, prior.grid.lon
        H, W = prior.grid.shape
        keys = ["variable", "units"] if "units" in df else ["variable"]
        blocks, ys, vars_, idx, gams = [], [], [], [], []
        for key, g in df.groupby(keys, sort=False, dropna=False):
            name = key[0] if isinstance(key, tuple) else key
            c = prior.variables.index(name)
            P = point_weights(
                lat, lon, g["lat"].to_numpy(float), g["lon"].to_numpy(float), method=method
            )
            blocks.append(
                sp.csr_matrix(
                    (P.data, P.indices + c * H * W, P.indptr),
                    shape=(P.shape[0], len(prior.variables) * H * W),
                )
            )
            val = g["value"].to_numpy(float)
            if "units" in g and not pd.isna(g["units"].iloc[0]):
                val = convert_units(
                    val, g["units"].iloc[0], prior.units[name], name=f"{name} values"
                )
            ys.append(val)
            if self.sigma_y is None and "error" in g:
                vars_.append(g["error"].to_numpy(float) ** 2)
            else:
                vars_.append(self.variance_for(name, len(g)))
            idx.append(np.full(len(g), c))
            gams.append(g["gamma"].to_numpy(float) if "gamma" in g else np.full(len(g), self.gamma))
        parts = (sp.vstack(blocks).tocsr(), *map(np.concatenate, (ys, vars_, idx, gams)))
        check_superobs(self.superobs, self.superobs_rho, allow_auto=False)
        if self.superobs:  # one super-observation per model variable and cell
            parts = point_superobs(*parts, self.superobs_rho)
        return ObsBlock(*parts[:4], gamma=parts[4])


def _model_names(df: pd.DataFrame, variables) -> pd.DataFrame:
    """``df`` with variable names of other layouts (earth2studio ``u10m``) renamed to the model
    channel they denote (:func:`xdiffsr.names.parse_channel`)."""
    canon = {parse_channel(v): v for v in variables}
    alias = {
        n: canon[parse_channel(n)]
        for n in df["variable"].unique()
        if n not in variables and parse_channel(n) in canon
    }
    return df.assign(variable=df["variable"].replace(alias)) if alias else df


#: (method, model grid hash, obs grid hash) -> regridding matrix
_OPERATORS = ProcessCache("operators", "operator_hits")


def _grid_key(grid: Grid) -> str:
    h = hashlib.sha1(np.asarray(grid.lat, np.float64).tobytes())
    h.update(np.asarray(grid.lon, np.float64).tobytes())
    return h.hexdigest()


def operator_cache_stats() -> dict[str, int]:
    """This process's regridding-operator counters: ``operators`` built, ``operator_hits``."""
    return _OPERATORS.stats()


def clear_operator_cache() -> None:
    """Forget this process's regridding operators (and reset the counters)."""
    _OPERATORS.clear()


@dataclass
class GridObservations(Observations):
    """Gridded observations (a coarse analysis, a coarse model's forecast) on a regular lat/lon
    grid.

    The operator is the regridding from the model grid to the dataset's grid (conservative by
    default), applied per variable. Dataset variables must be model variables. A dataset without
    a time dimension is used at every target time. Missing values (NaN) are dropped per time.

    Super-observations (:mod:`xdiffsr.observations.superobs`): with ``superobs=None`` (default)
    a grid at or finer than the model grid is first averaged conservatively onto the model cells
    (one observation per covered cell, error variance ``(1 - rho) s^2 / n_eff + rho s^2`` for
    ``n_eff`` values of error std ``s`` per cell, ``rho = superobs_rho``); True always, False
    never.
    """

    kind = "grid"
    superobs: bool | None = None
    superobs_rho: float = DEFAULT_SUPEROBS_RHO

    def __post_init__(self):
        ds = self.data
        if isinstance(ds, xr.DataArray):
            ds = ds.to_dataset()
        if not isinstance(ds, xr.Dataset):
            raise ArgumentError(
                f"GridObservations needs an xarray Dataset, got {type(ds).__name__}."
            )
        self._check_options("0h")
        for name, da in ds.data_vars.items():
            if not is_real(da.dtype):
                raise ObservationError(
                    f"obs dataset variable {name!r} has dtype {da.dtype}, not real numbers; "
                    "convert it, e.g. ds[name].astype(float)."
                )
        self._grid = grid_of(ds, argname="obs dataset")
        self._time = find_time(ds, argname="obs dataset")
        extra = extra_dims(ds, argname="obs dataset")
        if extra:
            raise ObservationError(
                f"obs dataset has the dimension {extra[0]!r} besides time, latitude, longitude "
                f"and pressure level; select one value first, e.g. ds.sel({extra[0]}=...) or "
                f"ds.isel({extra[0]}=0) (one ensemble member: ds.sel(number=0)), or average it "
                f"(ds.mean({extra[0]!r}))."
            )
        if self._time is not None and not np.issubdtype(ds[self._time].dtype, np.datetime64):
            ds = ds.assign_coords({self._time: to_datetime64(ds[self._time].values)})
        self.data = grid_units(ds, self.units, self.assume_units)

    def flat(self, prior) -> xr.Dataset:
        """The data in the model's flat layout (:func:`xdiffsr.names.to_model_layout`): one
        (time, lat, lon) field per model variable it holds; refuses variables the model lacks."""
        key = ("flat", tuple(prior.variables))
        if key not in self._cache:
            flat = to_model_layout(
                self.data, prior.variables, argname="obs dataset", missing="skip"
            )
            used = {str(v.attrs.get("source_variable")) for v in flat.data_vars.values()}
            unknown = sorted(set(map(str, self.data.data_vars)) - used)
            if unknown:
                raise ObservationError(
                    f"obs dataset variables {unknown} are not in the model (model variables: "
                    f"{list(prior.variables)}); select the model variables, e.g. ds[[...]], or "
                    "give them under names of the lexicon (xdiffsr.names) with their levels."
                )
            self._cache.clear()
            self._cache[key] = flat
        return self._cache[key]

    def describe(self) -> str:
        H, W = self._grid.shape
        base = self.name or f"grid({H}x{W}, {', '.join(map(str, self.data.data_vars))})"
        return base + superobs_suffix(self.superobs, self.superobs_rho)

    def window(self, start, stop) -> GridObservations:
        if self._time is None:
            return self
        tol = self._tol.to_timedelta64()
        return replace(self, data=self.data.sel({self._time: slice(start - tol, stop + tol)}))

    @property
    def grid(self) -> Grid:
        """The grid of the observations (lat, lon as stored in the dataset)."""
        return self._grid

    def operator(self, prior) -> sp.csr_matrix:
        """Regridding matrix from the model grid of ``prior`` to this grid, shape (obs points,
        model points), built once per process for each (method, model grid, obs grid) and
        shared by every source and task (:func:`operator_cache_stats`)."""
        method = self.method or "conservative"
        key = (method, _grid_key(prior.grid), _grid_key(self._grid))
        return _OPERATORS.get(
            key,
            lambda: regrid_weights(
                prior.grid.lat, prior.grid.lon, self._grid.lat, self._grid.lon, method=method
            ).tocsr(),
        )

    def superobs_weights(self, prior) -> sp.csr_matrix | None:
        """Conservative averaging weights from this grid onto the model cells of ``prior``
        (model points, obs points) if this source uses super-observations there, else None;
        built once per process for each (model grid, obs grid)."""
        check_superobs(self.superobs, self.superobs_rho)
        use = self.superobs if self.superobs is not None else is_fine(self._grid, prior.grid)
        if not use:
            return None
        key = ("superobs", _grid_key(prior.grid), _grid_key(self._grid))
        return _OPERATORS.get(key, lambda: grid_averaging(self._grid, prior.grid))

    def _block_at(self, t, prior) -> ObsBlock | None:
        """The block at ``t`` (None if no field within the tolerance), super-observations if
        :meth:`superobs_weights` says so (:meth:`Observations.at_time`)."""
        ds = self.flat(prior)
        if self._time is not None:
            times = ds[self._time].values
            if times.size == 0:
                return None
            k = int(np.argmin(np.abs(times - t)))
            if abs(times[k] - t) > self._tol.to_timedelta64():
                return None
            ds = ds.isel({self._time: k})
        R = self.operator(prior)
        S = self.superobs_weights(prior)
        n_model = int(np.prod(prior.grid.shape))
        blocks, ys, vars_, idx = [], [], [], []
        for name in map(str, ds.data_vars):
            da = ds[name].transpose(self._grid.lat_name, self._grid.lon_name)
            val = convert_units(
                np.asarray(da.values, dtype=np.float64).ravel(),
                da.attrs.get("units", prior.units[name] or None),
                prior.units[name] or None,
                name=f"obs dataset variable {name!r}",
            )
            ok = np.isfinite(val)
            if not ok.all():
                warnings.warn(
                    f"dropped {int((~ok).sum())} NaN values of {name!r} at {t}.",
                    XDiffSRWarning,
                    stacklevel=4,
                )
            c = prior.variables.index(name)
            Rv, yv, vv = R[ok], val[ok], self.variance_for(name, int(ok.sum()))
            if S is not None:  # one super-observation per covered model cell
                Rv, yv, vv, _ = superobs_rows(S[:, ok], Rv, yv, vv, self.superobs_rho)
            blocks.append(
                sp.csr_matrix(
                    (Rv.data, Rv.indices + c * n_model, Rv.indptr),
                    shape=(Rv.shape[0], len(prior.variables) * n_model),
                )
            )
            ys.append(yv)
            vars_.append(vv)
            idx.append(np.full(yv.size, c))
        return ObsBlock(
            sp.vstack(blocks).tocsr(),
            np.concatenate(ys),
            np.concatenate(vars_),
            np.concatenate(idx),
        )


@dataclass
class CallableObservations(Observations):
    """Observations through any differentiable operator on the physical state.

    Parameters
    ----------
    data : xarray.DataArray
        Observed values with dims ``(time, obs)`` (any name for the second dim); NaN entries are
        dropped per time.
    operator : callable
        ``f(state) -> (B, n)`` with ``state`` the physical state tensor (B, C, H, W) in the order
        of ``model.variables``; must be differentiable with torch.
    sigma_y : float
        Error variance (squared units of ``data``); required.
    gamma : float
        ``Gamma`` in squared units of ``data`` (not scaled by a variable: the operator may mix
        variables).

    Notes
    -----
    Moment matching (``guidance="mmps"``) linearises a nonlinear operator at zero; use the
    paper's guidance for nonlinear operators.
    """

    operator: Any = None
    kind = "callable"

    def __post_init__(self):
        if not callable(self.operator):
            raise ArgumentError(f"operator={self.operator!r} must be callable.")
        if self.sigma_y is None or isinstance(self.sigma_y, Mapping):
            raise ArgumentError("CallableObservations needs sigma_y, one error variance.")
        self._check_options("0h")
        da = self.data
        if not isinstance(da, xr.DataArray) or da.ndim != 2 or not is_real(da.dtype):
            raise ArgumentError(
                f"CallableObservations data={type(da).__name__} must be a 2-D DataArray (time, "
                "obs) of real observed values."
            )
        self._time = find_time(da, argname="data")
        if self._time is None:
            raise ArgumentError("data needs a datetime 'time' dimension.")

    def error_keys(self, prior) -> None:
        """One error variance for every observation."""
        return None

    def describe(self) -> str:
        return self.name or f"callable({self.data.sizes})"

    def window(self, start, stop) -> CallableObservations:
        tol = self._tol.to_timedelta64()
        return replace(self, data=self.data.sel({self._time: slice(start - tol, stop + tol)}))

    def _block_at(self, t, prior) -> ObsBlock | None:
        times = self.data[self._time].values
        if times.size == 0:
            return None
        k = int(np.argmin(np.abs(times - t)))
        if abs(times[k] - t) > self._tol.to_timedelta64():
            return None
        y = np.asarray(self.data.isel({self._time: k}).values, dtype=np.float64)
        ok = np.isfinite(y)
        if not ok.any():
            return None
        keep = np.flatnonzero(ok) if not ok.all() else None
        f = self.operator

        def op(state):
            out = f(state)
            return out if keep is None else out[:, keep]

        return ObsBlock(
            None,
            y[ok],
            np.full(int(ok.sum()), float(self.sigma_y)),
            None,
            gamma=np.full(int(ok.sum()), float(self.gamma)),
            operator=op,
        )


def _is_sounding_frame(df: pd.DataFrame) -> bool:
    return "variable" not in df.columns and "pressure" in df.columns


def as_source(obj, prior=None, *, assume_units: bool = False) -> Observations:
    """Turn an ``obs`` entry of ``super_resolve`` into an :class:`Observations` source.

    DataFrames in tidy form become :class:`PointObservations`; earth2studio observation frames
    (an ``observation`` column) are converted by
    :func:`xdiffsr.observations.earth2studio.from_earth2studio`; IGRA sounding frames (from
    :func:`xdiffsr.io.igra.read_igra`) are first interpolated to the prior's pressure levels;
    Datasets become :class:`GridObservations`; sources pass through. ``assume_units`` is
    passed to the sources built here (values without units are in the model's units).
    """
    if isinstance(obj, GridObservations) and obj.superobs is None and prior is not None:
        # resolve automatic super-observations for this model (the provenance then says so)
        return replace(obj, superobs=is_fine(obj.grid, prior.grid))
    if isinstance(obj, Observations):
        return obj
    if isinstance(obj, pd.DataFrame):
        if is_earth2studio_frame(obj):  # observation column, earth2studio names, pres in Pa
            if prior is None:
                raise ArgumentError("earth2studio frames need the model to pick variables.")
            tidy = from_earth2studio(obj, list(prior.variables))
            return PointObservations(tidy, name=f"earth2studio({len(tidy)} obs)")
        if _is_sounding_frame(obj):
            if prior is None:
                raise ArgumentError("IGRA sounding frames need the model to pick pressure levels.")
            # a simulated frame carries the errors it was simulated with (osse.simulate_soundings)
            tidy = soundings_to_observations(obj, list(prior.variables),
                                             errors=obj.attrs.get("errors"))
            if "units" not in tidy:  # interpolated to the model's levels in the model's units
                tidy["units"] = tidy["variable"].map(prior.units).replace("", None)
            return PointObservations(
                tidy, name=f"igra({obj['station'].nunique()} stations)", assume_units=True
            )
        return PointObservations(obj, assume_units=assume_units)
    if isinstance(obj, xr.Dataset | xr.DataArray):
        return as_source(GridObservations(obj, assume_units=assume_units), prior)
    raise ArgumentError(
        f"obs entries must be DataFrames, xarray Datasets or xdiffsr.Observations, got "
        f"{type(obj).__name__}."
    )
