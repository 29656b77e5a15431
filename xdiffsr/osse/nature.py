"""Nature run of the OSSE: a Held & Suarez (1994) climate simulated with ``dinosaur``.

The run starts from an isothermal atmosphere at rest with a seeded surface-pressure perturbation,
discards a spin-up, then writes 13 variables every ``output_every`` to a zarr store, chunk by chunk,
saving the spectral model state next to the store after each chunk so that an interrupted run
continues bit for bit.

References
----------
.. [1] Held, I. M. and Suarez, M. J. (1994). A proposal for the intercomparison of the dynamical
   cores of atmospheric general circulation models. *Bull. Amer. Meteor. Soc.*, 75, 1825-1830.
.. [2] Rasp, S. et al. (2020). WeatherBench: a benchmark data set for data-driven weather
   forecasting. *J. Adv. Model. Earth Syst.*, 12, e2020MS002203 (the 2.8125 deg, 64 x 128 grid).
.. [3] CF Conventions 1.8, standard name table.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError, ModelError
from xdiffsr.grid import find_latlon
from xdiffsr.osse._dycore import (
    LEVELS_HPA,
    VARIABLES,
    Dycore,
    DycoreConfig,
    get_dycore,
    variable_attrs,
)
from xdiffsr.progress import progress_bar
from xdiffsr.regrid import cell_areas

__all__ = [
    "EPOCH",
    "branch_nature_run",
    "check_mass_conservation",
    "global_mean_surface_pressure",
    "held_suarez_check",
    "nature_run",
    "restart_path",
]

#: Time stamp of the first output after spin-up (an arbitrary, documented epoch).
EPOCH = pd.Timestamp("2000-01-01T00:00")


def restart_path(store: str | os.PathLike) -> Path:
    """Path of the restart file kept next to a nature-run zarr store: ``<store>.restart.npz``."""
    p = Path(store)
    return p.with_name(p.name + ".restart.npz")


def _interval_minutes(output_every: str | pd.Timedelta) -> float:
    try:
        minutes = pd.Timedelta(output_every).total_seconds() / 60
    except (ValueError, TypeError) as exc:
        raise ArgumentError(
            f"output_every: cannot parse {output_every!r} as a time interval; use e.g. '6h'"
        ) from exc
    if minutes <= 0:
        raise ArgumentError(f"output_every: must be positive, got {output_every!r}")
    return minutes


def _n_intervals(days: float, minutes: float, name: str) -> int:
    n = days * 1440 / minutes
    if not np.isfinite(n) or n < 0 or abs(n - round(n)) > 1e-6:
        raise ArgumentError(
            f"{name}: {days!r} days is not a non-negative whole number of output intervals "
            f"({minutes:g} min); round it"
        )
    return round(n)


# ----------------------------------------------------------------------------- restart files
def _save_restart(
    path: Path, dycore: Dycore, state, intervals: int, written: int, meta: dict[str, Any]
) -> None:
    """Write the restart file atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        intervals=intervals,
        written=written,
        meta=json.dumps(meta, sort_keys=True),
        **dycore.state_to_numpy(state),
    )
    os.replace(tmp, path)


def _read_restart(path: Path, meta: dict[str, Any]):
    """Arrays, intervals done and times written of a restart file made with ``meta``."""
    with np.load(path) as f:
        saved = json.loads(str(f["meta"]))
        if saved != meta:
            diff = {
                k: (saved.get(k), meta.get(k))
                for k in set(saved) | set(meta)
                if saved.get(k) != meta.get(k)
            }
            raise ArgumentError(
                f"store: the run at {path.name} was made with another configuration "
                f"(saved, requested): {diff}; use the same arguments or a new store"
            )
        return {k: f[k] for k in f.files}, int(f["intervals"]), int(f["written"])


def _truncate_store(store: Path, n_times: int) -> None:
    """Cut every time-dimensioned array of the store to ``n_times`` (undo a partial append)."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    for _, arr in group.arrays():
        dims = getattr(arr.metadata, "dimension_names", None) or arr.attrs.get("_ARRAY_DIMENSIONS")
        if dims and dims[0] == "time" and arr.shape[0] > n_times:
            arr.resize((n_times, *arr.shape[1:]))


# ------------------------------------------------------------------------------------ output
def _to_dataset(
    dycore: Dycore, fields: list[dict], times: pd.DatetimeIndex, attrs: dict[str, Any]
) -> xr.Dataset:
    data = {
        name: (
            ("time", "lat", "lon"),
            np.stack([np.asarray(f[name]) for f in fields]),
            variable_attrs(name),
        )
        for name in dycore.config.variables
    }
    coords = {
        "time": ("time", times, {"standard_name": "time", "axis": "T"}),
        "lat": (
            "lat",
            dycore.lat,
            {
                "standard_name": "latitude",
                "units": "degrees_north",
                "long_name": "latitude",
                "axis": "Y",
            },
        ),
        "lon": (
            "lon",
            dycore.lon,
            {
                "standard_name": "longitude",
                "units": "degrees_east",
                "long_name": "longitude",
                "axis": "X",
            },
        ),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _global_attrs(config: DycoreConfig, spinup_days: float, output_every: str) -> dict[str, Any]:
    import dinosaur

    return {
        "title": "xdiffsr OSSE nature run: Held-Suarez (1994) dry dynamical core",
        "source": f"dinosaur {getattr(dinosaur, '__version__', '?')} primitive equations on "
        f"sigma levels, T{config.truncation}, {config.layers} equidistant layers",
        "Conventions": "CF-1.8",
        "truncation": config.truncation,
        "layers": config.layers,
        "dt_minutes": config.dt_minutes,
        "seed": config.seed,
        "initial_perturbation_pa": config.perturbation_pa,
        "orography": "flat",
        "spinup_days": spinup_days,
        "output_every": str(output_every),
        "epoch": f"{EPOCH.isoformat()} = end of spin-up",
        "grid": f"{config.output_nlat} x {config.output_nlon} equiangular cell centres, "
        "latitude ascending, longitude from 0",
        "vertical_interpolation": "linear in log-pressure from sigma levels; geopotential "
        "integrated hydrostatically (flat orography)",
        "references": "Held & Suarez (1994), BAMS 75, 1825-1830",
    }


def nature_run(
    store: str | os.PathLike,
    *,
    days: float | None = None,
    years: float | None = None,
    spinup_days: float = 300,
    truncation: int = 42,
    layers: int = 20,
    dt_minutes: float = 20.0,
    seed: int = 0,
    output_every: str = "6h",
    chunk_days: float = 10,
    resume: bool = True,
    progress: bool = True,
    mass_rtol: float = 5e-3,
) -> xr.Dataset:
    """Run (or continue) the Held-Suarez nature run and return the zarr store, opened lazily.

    Parameters
    ----------
    store : path
        Local zarr store to write. Its restart file is ``<store>.restart.npz``.
    days, years : float
        Length of the written record after spin-up (give exactly one; a year is 365 days). A
        store that already holds more times is returned whole.
    spinup_days : float
        Days integrated and discarded before the first output (>= 300 for a spun-up climate).
    truncation : int
        Triangular spectral truncation of the model (42: T42, Gaussian grid 64 x 128).
    layers : int
        Number of equidistant sigma layers.
    dt_minutes : float
        Model time step; must divide ``output_every`` (20 min is stable at T42, 30 at T21).
    seed : int
        Seed of the random location of the initial surface-pressure perturbation.
    output_every : str
        Output interval (pandas timedelta string).
    chunk_days : float
        Days integrated between appends to the store (and restart-file writes).
    resume : bool
        Continue an existing run in ``store`` (extending it if ``days`` asks for more). If False
        and the store or its restart file exists, an error is raised instead of overwriting.
    progress : bool
        Show a tqdm progress bar over output intervals (spin-up included).
    mass_rtol : float
        Tolerated relative deviation of the global-mean surface pressure from 1000 hPa; a larger
        one raises :class:`~xdiffsr.errors.ModelError` (it signals inexact spectral transforms).

    Returns
    -------
    xarray.Dataset
        Lazily opened store: ``t850 t500 t250 u850 ... z250`` and ``sp`` with dims (time, lat, lon)
        on the 2.8125 deg grid (lat ascending from -88.59375, lon from 0), CF attributes; time
        from :data:`EPOCH` every ``output_every``.

    References
    ----------
    .. [1] Held & Suarez (1994); Rasp et al. (2020), WeatherBench (grid).
    """
    if (days is None) == (years is None):
        raise ArgumentError(
            f"days/years: give exactly one run length, got days={days!r}, years={years!r}"
        )
    days = float(days if days is not None else 365.0 * years)
    minutes = _interval_minutes(output_every)
    n_out = _n_intervals(days, minutes, "days")
    n_spin = _n_intervals(spinup_days, minutes, "spinup_days")
    n_chunk = _n_intervals(chunk_days, minutes, "chunk_days")
    if n_chunk < 1:
        raise ArgumentError(f"chunk_days: must be at least one output interval, got {chunk_days!r}")
    config = DycoreConfig(truncation=truncation, layers=layers, dt_minutes=dt_minutes, seed=seed)
    config.validate()
    steps = config.steps_per(minutes)

    store = Path(store)
    restart = restart_path(store)
    if not resume and (store.exists() or restart.exists()):
        raise ArgumentError(
            f"store: {store} (or its restart file) already exists; pass resume=True to continue "
            "it or remove it to start again"
        )
    meta = {**config.asdict(), "spinup_days": float(spinup_days), "output_minutes": minutes}
    saved = _read_restart(restart, meta) if restart.exists() else None
    dycore = get_dycore(config, steps)
    state, intervals, written = _start(dycore, store, restart, saved)
    _integrate(
        dycore,
        state,
        store,
        restart,
        intervals,
        written,
        n_spin,
        n_out,
        n_chunk,
        meta,
        _global_attrs(config, spinup_days, output_every),
        minutes,
        progress,
        mass_rtol,
    )
    return xr.open_zarr(store, consolidated=False)[list(VARIABLES)]


def _start(dycore: Dycore, store: Path, restart: Path, saved) -> tuple[Any, int, int]:
    """Model state, intervals integrated and times written to continue from."""
    if saved is None:
        if store.exists():
            raise ArgumentError(
                f"store: {store} exists but has no restart file {restart.name}; it was not "
                "written by nature_run (or the file was removed): use a new store"
            )
        return dycore.initial_state(), 0, 0
    arrays, intervals, written = saved
    if store.exists():
        _truncate_store(store, written)
    elif written:
        raise ModelError(
            f"store: {store} is missing but its restart file says {written} times were "
            f"written; remove {restart} to start again"
        )
    return dycore.state_from_numpy(arrays), intervals, written


def branch_nature_run(
    source: str | os.PathLike,
    store: str | os.PathLike,
    *,
    days: float,
    extra_temperature_levels: tuple[int, ...] = (),
    chunk_days: float = 10,
    progress: bool = True,
    mass_rtol: float = 5e-3,
) -> xr.Dataset:
    """Continue the nature run of ``source`` into a new store, with more output.

    The model state of ``source``'s restart file (after its last written time) is integrated
    ``days`` further with the same configuration; the new store's times follow ``source``'s,
    and temperature is also diagnosed at ``extra_temperature_levels`` (hPa, as ``t<hPa>``):
    e.g. the full column that satellite-like observations integrate, where the nature run
    stores three levels. ``source`` is not changed; ``store`` resumes like a nature run.

    Parameters
    ----------
    source : path
        Zarr store of a :func:`nature_run` (its restart file ``<source>.restart.npz`` is read).
    store : path
        New zarr store (restart file ``<store>.restart.npz``).
    days : float
        Days to integrate after ``source``'s last time.
    extra_temperature_levels : tuple of int
        Extra pressure levels (hPa) of temperature, besides 850, 500 and 250.
    chunk_days, progress, mass_rtol
        As in :func:`nature_run`.

    Returns
    -------
    xarray.Dataset
        The new store, opened lazily: the 13 variables of :func:`nature_run` and the extra
        temperatures.
    """
    src_restart = restart_path(Path(source))
    if not src_restart.exists():
        raise ArgumentError(
            f"source: {source} has no restart file {src_restart.name}; branch from a store "
            "written by nature_run"
        )
    with np.load(src_restart) as f:
        src_meta = json.loads(str(f["meta"]))
        src_arrays = {k: f[k] for k in f.files}
    fields = {f.name for f in dataclasses.fields(DycoreConfig)}
    config = DycoreConfig(
        **{k: v for k, v in src_meta.items() if k in fields and k != "extra_temperature_levels"},
        extra_temperature_levels=tuple(int(p) for p in extra_temperature_levels),
    )
    config.validate()
    minutes = float(src_meta["output_minutes"])
    first = int(src_arrays["written"])
    meta = {**config.asdict(), "spinup_days": src_meta["spinup_days"], "output_minutes": minutes,
            "branched_from": str(Path(source).resolve()), "branch_first": first}
    n_out = first + _n_intervals(float(days), minutes, "days")
    n_chunk = _n_intervals(chunk_days, minutes, "chunk_days")
    if n_chunk < 1:
        raise ArgumentError(f"chunk_days: must be at least one output interval, got {chunk_days!r}")
    store = Path(store)
    restart = restart_path(store)
    dycore = get_dycore(config, config.steps_per(minutes))
    if restart.exists():  # resume the branch
        arrays, intervals, written = _read_restart(restart, meta)
        if store.exists():
            _truncate_store(store, written - first)
        state = dycore.state_from_numpy(arrays)
    elif store.exists():
        raise ArgumentError(f"store: {store} exists without a restart file; use a new store")
    else:
        state = dycore.state_from_numpy(src_arrays)
        intervals, written = int(src_arrays["intervals"]), first
    n_spin = intervals - written  # spin-up of the source, done
    attrs = _global_attrs(config, float(src_meta["spinup_days"]), f"{minutes:g}min")
    attrs |= {"branched_from": str(source), "extra_temperature_levels":
              [int(p) for p in config.extra_temperature_levels]}
    _integrate(dycore, state, store, restart, intervals, written, n_spin, n_out, n_chunk, meta,
               attrs, minutes, progress, mass_rtol, first=first)
    return xr.open_zarr(store, consolidated=False)[list(config.variables)]


def _integrate(
    dycore,
    state,
    store,
    restart,
    intervals,
    written,
    n_spin,
    n_out,
    n_chunk,
    meta,
    attrs,
    minutes,
    progress,
    mass_rtol,
    first: int = 0,
) -> None:
    """Integrate and append outputs ``written .. n_out - 1`` (the store's first is ``first``)."""
    bar = progress_bar(
        total=n_spin + n_out,
        initial=min(intervals, n_spin + n_out),
        unit="interval",
        desc="nature run",
        disable=not progress,
    )
    if not restart.exists():  # a restart file exists whenever the store does
        _save_restart(restart, dycore, state, intervals, written, meta)
    try:
        while intervals < n_spin:  # spin-up, saved every chunk
            for _ in range(min(n_chunk, n_spin - intervals)):
                state = dycore.advance(state)
                intervals += 1
                bar.update(1)
            _save_restart(restart, dycore, state, intervals, 0, meta)
        while written < n_out:  # invariant: `state` is the state of output number `written`
            _check_mass(dycore, state, mass_rtol)
            m = min(n_chunk, n_out - written)
            fields = []
            for _ in range(m):
                fields.append(dycore.diagnose(state))
                state = dycore.advance(state)
                bar.update(1)
            times = EPOCH + pd.to_timedelta(np.arange(written, written + m) * minutes, unit="min")
            ds = _to_dataset(dycore, fields, pd.DatetimeIndex(times), attrs)
            if written == first:
                enc = {v: {"chunks": (m, *ds[v].shape[1:])} for v in ds.data_vars}
                ds.to_zarr(store, mode="w", encoding=enc, consolidated=False)
            else:
                ds.to_zarr(store, append_dim="time", consolidated=False)
            written += m
            intervals += m
            _save_restart(restart, dycore, state, intervals, written, meta)
    finally:
        bar.close()


def _check_mass(dycore: Dycore, state, rtol: float) -> None:
    mean = dycore.global_mean_surface_pressure(state)
    if abs(mean / 1e5 - 1) > rtol:
        raise ModelError(
            f"nature run: global-mean surface pressure is {mean / 100:.2f} hPa instead of "
            f"1000 hPa (relative error above mass_rtol={rtol}); the spectral transforms are "
            f"inexact on backend {dycore.backend!r}"
        )


# ----------------------------------------------------------------------------------- checks
def global_mean_surface_pressure(ds: xr.Dataset) -> xr.DataArray:
    """Area-weighted global mean of ``sp`` (Pa) per time, a measure of the atmosphere's mass.

    Parameters
    ----------
    ds : Dataset
        With ``sp`` (time, lat, lon) on a regular grid.

    Returns
    -------
    DataArray, shape (time,)
    """
    if "sp" not in ds:
        raise ArgumentError(f"ds: needs a surface pressure variable 'sp', has {list(ds.data_vars)}")
    lat, lon = find_latlon(ds, "ds")
    area = xr.DataArray(cell_areas(lat.values, lon.values), dims=(lat.dims[0], lon.dims[0]))
    return ds["sp"].weighted(area).mean((lat.dims[0], lon.dims[0]))


def check_mass_conservation(
    ds: xr.Dataset, *, reference_pa: float = 1e5, rtol: float = 2e-3
) -> xr.DataArray:
    """Check that the global-mean surface pressure stays at ``reference_pa``.

    The dry mass of the atmosphere is ``mean(sp) * 4 pi a^2 / g``, so a constant global-mean surface
    pressure is mass conservation. Held-Suarez runs start at 1000 hPa.

    Parameters
    ----------
    ds : Dataset
        Nature-run output with ``sp`` (time, lat, lon).
    reference_pa : float
        Expected global mean in Pa.
    rtol : float
        Tolerated relative deviation at any time.

    Returns
    -------
    DataArray, shape (time,)
        The global-mean surface pressure (Pa).

    Raises
    ------
    ModelError
        If the deviation exceeds ``rtol`` at some time.
    """
    mean = global_mean_surface_pressure(ds).compute()
    dev = float(np.abs(mean / reference_pa - 1).max())
    if not np.isfinite(dev) or dev > rtol:
        raise ModelError(
            f"ds: the global-mean surface pressure deviates from {reference_pa:g} Pa by "
            f"{dev:.3%} (> rtol={rtol:g}): mass is not conserved"
        )
    return mean


def held_suarez_check(ds: xr.Dataset, *, time_dim: str = "time") -> pd.DataFrame:
    """Jet maxima of the time- and zonal-mean zonal wind, per hemisphere.

    Held & Suarez (1994, Fig. 2) find westerly jets of about 30 m/s near 250 hPa around 45 deg in
    each hemisphere, and a time- and zonal-mean temperature falling from ~300 K at the equatorial
    surface to ~260 K near the poles at 850 hPa.

    Parameters
    ----------
    ds : Dataset
        With ``u850, u500, u250`` and ``t850`` (time, lat, lon).

    Returns
    -------
    DataFrame
        Index ``hemisphere`` (north, south); columns ``speed`` (m/s), ``latitude`` (deg, absolute),
        ``pressure`` (hPa) of the maximum over latitude and the three levels, and
        ``t850_equator_minus_pole`` (K, mean temperature of |lat| < 10 minus |lat| > 70).
    """
    names = [f"u{p}" for p in LEVELS_HPA]
    missing = [n for n in [*names, "t850"] if n not in ds]
    if missing:
        raise ArgumentError(f"ds: missing variables {missing}; pass a nature-run Dataset")
    avg = [d for d in (time_dim, "lon") if d in ds.dims]
    u = xr.concat(
        [ds[n].mean(avg) for n in names], dim=pd.Index(list(LEVELS_HPA), name="pressure")
    ).compute()
    t = ds["t850"].mean(avg).compute()
    rows = {}
    for hemi, sel in (("north", u.lat > 0), ("south", u.lat < 0)):
        uh = u.where(sel, drop=True)
        i_p, i_lat = np.unravel_index(int(np.argmax(uh.values)), uh.shape)
        lat = uh.lat.values
        band = t.where(sel, drop=True)
        dt = float(
            band.where(np.abs(band.lat) < 10).mean() - band.where(np.abs(band.lat) > 70).mean()
        )
        rows[hemi] = {
            "speed": float(uh.values[i_p, i_lat]),
            "latitude": abs(float(lat[i_lat])),
            "pressure": float(uh.pressure.values[i_p]),
            "t850_equator_minus_pole": dt,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("hemisphere")
