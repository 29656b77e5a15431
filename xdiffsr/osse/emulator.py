"""The coarse dynamical core as a forecast emulator (the role LUCIE plays in the paper).

The same Held & Suarez (1994) core as the nature run, at T21 on the 32 x 64 (5.625 deg) grid,
started from pressure-level fields (a coarsened truth or a reconstruction), producing forecasts
every 6 h up to 7 days. :func:`xdiffsr.evaluation.cycling.sequential_experiment` cycles it with a
reconstruction step.

References
----------
.. [1] Chakraborty, D. et al. (2025). Multimodal atmospheric super-resolution with deep generative
   models (the sequential experiment with the LUCIE emulator).
.. [2] Held, I. M. and Suarez, M. J. (1994). *Bull. Amer. Meteor. Soc.*, 75, 1825-1830.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import cell_centre_grid, find_latlon, latlon_dataset
from xdiffsr.osse._dycore import LEVELS_HPA, VARIABLES, DycoreConfig, get_dycore, variable_attrs
from xdiffsr.regrid import regrid_weights

__all__ = ["COARSE_GRID", "Emulator", "cell_centre_grid", "coarse_grid", "coarsen"]

#: ``(nlat, nlon)`` of the paper's low-resolution data: 11.25-degree cells, the one definition of
#: the coarse grid (:func:`xdiffsr.grid.cell_centre_grid`: latitudes -84.375 ... 84.375,
#: longitudes 0, 11.25, ..., 348.75) used by ``xdiffsr demo``, ``xdiffsr evaluate`` and the
#: sequential experiment's restarts.
COARSE_GRID: tuple[int, int] = (16, 32)


def coarse_grid(nlat: int = COARSE_GRID[0], nlon: int = COARSE_GRID[1]) -> xr.Dataset:
    """Empty Dataset on the ``nlat x nlon`` cell-centre grid (default: :data:`COARSE_GRID`).

    The grid :func:`coarsen` maps to: latitudes and longitudes of
    :func:`xdiffsr.grid.cell_centre_grid` with CF attributes.
    """
    return latlon_dataset(*cell_centre_grid(nlat, nlon))


def _latlon(ds: xr.Dataset) -> tuple[str, str, np.ndarray, np.ndarray]:
    """Names (dimensions) and values of the latitude and longitude of ``ds``."""
    lat, lon = find_latlon(ds, "ds")
    return (
        str(lat.dims[0]),
        str(lon.dims[0]),
        np.asarray(lat.values, float),
        np.asarray(lon.values, float),
    )


def _regrid(ds: xr.Dataset, lat: np.ndarray, lon: np.ndarray, method: str) -> xr.Dataset:
    """Apply :func:`xdiffsr.regrid.regrid_weights` to every (.., lat, lon) variable of ``ds``."""
    lat_dim, lon_dim, src_lat, src_lon = _latlon(ds)
    w = regrid_weights(src_lat, src_lon, lat, lon, method, backend="builtin")

    def apply(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-2] * x.shape[-1])
        return np.asarray(w @ flat.T).T.reshape(*x.shape[:-2], lat.size, lon.size)

    out = xr.apply_ufunc(
        apply,
        ds,
        input_core_dims=[[lat_dim, lon_dim]],
        output_core_dims=[["lat_out", "lon_out"]],
        dask="parallelized",
        output_dtypes=[float],
        dask_gufunc_kwargs={"output_sizes": {"lat_out": lat.size, "lon_out": lon.size}},
        keep_attrs=True,
    )
    out = out.rename(lat_out=lat_dim, lon_out=lon_dim).assign_coords(
        {lat_dim: lat, lon_dim: lon}
    )
    for c in (lat_dim, lon_dim):
        out[c].attrs = ds[c].attrs
    return out


def coarsen(ds: xr.Dataset, nlat: int = COARSE_GRID[0], nlon: int = COARSE_GRID[1]) -> xr.Dataset:
    """Conservatively coarsen gridded fields to the ``nlat x nlon`` cell-centre grid.

    The default 16 x 32 (11.25 deg) grid is the paper's low-resolution analysis.

    Parameters
    ----------
    ds : Dataset
        Variables with trailing dims (lat, lon) on a regular global grid.
    nlat, nlon : int
        Target grid size (see :func:`xdiffsr.grid.cell_centre_grid`); default
        :data:`COARSE_GRID`.

    Returns
    -------
    Dataset
        Same variables on the coarse grid (latitude ascending).
    """
    lat, lon = cell_centre_grid(nlat, nlon)
    return _regrid(ds, lat, lon, "conservative")


class Emulator:
    """Coarse Held-Suarez core that forecasts from pressure-level fields.

    Parameters
    ----------
    truncation : int
        Spectral truncation (21: T21, Gaussian model grid 32 x 64).
    layers : int
        Number of equidistant sigma layers.
    dt_minutes : float
        Time step (30 min is stable at T21).
    output_grid : (int, int)
        ``(nlat, nlon)`` of the equiangular output grid; (32, 64) is 5.625 deg.

    Notes
    -----
    The initial state is built from the 13 variables: temperature and winds are interpolated
    linearly in log-pressure between 850, 500 and 250 hPa onto the sigma levels of each column;
    below 850 hPa temperature is extrapolated along the 850-500 hPa gradient, above 250 hPa it
    is held at its 250 hPa value, and winds are held constant beyond the end levels. Geopotential
    is not used (the model diagnoses it hydrostatically from temperature).
    """

    def __init__(
        self,
        *,
        truncation: int = 21,
        layers: int = 20,
        dt_minutes: float = 30.0,
        output_every: str = "6h",
        output_grid: tuple[int, int] = (32, 64),
    ):
        self.config = DycoreConfig(
            truncation=truncation,
            layers=layers,
            dt_minutes=dt_minutes,
            output_nlat=output_grid[0],
            output_nlon=output_grid[1],
        )
        self.config.validate()
        self.every = pd.Timedelta(output_every)
        self.dycore = get_dycore(
            self.config, self.config.steps_per(self.every.total_seconds() / 60)
        )

    # --------------------------------------------------------------------------- state
    def state_from_dataset(self, ds: xr.Dataset):
        """Spectral model state from one time of the 13 variables, shape (lat, lon) each."""
        import jax.numpy as jnp
        from dinosaur import spherical_harmonic

        missing = [v for v in VARIABLES if v not in ds and not v.startswith("z")]
        if missing:
            raise ArgumentError(f"init: missing variables {missing}; pass the 13 OSSE variables")
        dy = self.dycore
        grid = dy.coords.horizontal
        glon, sin_lat = grid.nodal_axes
        ds = _regrid(ds, np.rad2deg(np.arcsin(sin_lat)), np.rad2deg(glon), "bilinear")
        ps = np.asarray(ds["sp"], float)  # (lat, lon)
        sigma_p = dy.coords.vertical.centers[:, None, None] * ps  # Pa, (L, lat, lon)
        logp = np.log(sigma_p)
        xp = np.log(np.array(LEVELS_HPA[::-1], float) * 100.0)  # ascending: 250, 500, 850

        def column(q: str, extrapolate_down: bool) -> np.ndarray:
            f = np.stack([np.asarray(ds[f"{q}{p}"], float) for p in LEVELS_HPA[::-1]])
            i = np.clip(np.searchsorted(xp, logp) - 1, 0, 1)
            w = (logp - xp[i]) / (xp[i + 1] - xp[i])
            w = np.clip(w, 0.0, None if extrapolate_down else 1.0)
            f0 = np.take_along_axis(f, i, 0)
            return f0 + w * (np.take_along_axis(f, i + 1, 0) - f0)

        sc = dy.scales
        temp = column("t", True) / sc["k"] - dy.ref_temps[:, None, None]
        u, v = column("u", False) / sc["ms"], column("v", False) / sc["ms"]
        t_ = lambda a: jnp.asarray(np.swapaxes(a, -1, -2), jnp.float32)  # noqa: E731  (lon, lat)
        vort, div = spherical_harmonic.uv_nodal_to_vor_div_modal(grid, t_(u), t_(v))
        return dy.state_cls(
            vorticity=vort,
            divergence=div,
            temperature_variation=grid.to_modal(t_(temp)),
            log_surface_pressure=grid.to_modal(t_(np.log(ps / sc["pa"])[None])),
        )

    # ------------------------------------------------------------------------ forecast
    def forecast(
        self, init: xr.Dataset, *, lead_days: float = 7, every: str | None = None
    ) -> xr.Dataset:
        """Forecasts from each time of ``init``.

        Parameters
        ----------
        init : Dataset
            The 13 variables (``z*`` optional), dims (time, lat, lon) or (lat, lon), any regular
            global grid.
        lead_days : float
            Longest lead time.
        every : str, optional
            Output interval; a multiple of the emulator's ``output_every`` (default: equal).

        Returns
        -------
        Dataset
            Variables with dims (init_time, lead_time, lat, lon) on the output grid; coordinate
            ``valid_time`` = init_time + lead_time. Lead time 0 is the initial state as the
            emulator represents it (after T21 truncation).
        """
        every_td = pd.Timedelta(every) if every is not None else self.every
        k = every_td / self.every
        if k < 1 or k != int(k):
            raise ArgumentError(
                f"every: {every!r} is not a multiple of the emulator's output interval "
                f"{self.every}; build Emulator(output_every=...) accordingly"
            )
        n_lead = int(pd.Timedelta(days=lead_days) / every_td)
        if n_lead < 0:
            raise ArgumentError(f"lead_days: must be non-negative, got {lead_days!r}")
        if "time" not in init.dims:
            init = init.expand_dims(time=[np.datetime64("NaT", "ns")])
        runs = []
        for it in range(init.sizes["time"]):
            state = self.state_from_dataset(init.isel(time=it))
            fields = []
            for j in range(n_lead + 1):
                fields.append(self.dycore.diagnose(state))
                if j < n_lead:
                    for _ in range(int(k)):
                        state = self.dycore.advance(state)
            runs.append({v: np.stack([np.asarray(f[v]) for f in fields]) for v in VARIABLES})
        leads = pd.to_timedelta(np.arange(n_lead + 1) * every_td)
        dims = ("init_time", "lead_time", "lat", "lon")
        data = {v: (dims, np.stack([r[v] for r in runs]), variable_attrs(v)) for v in VARIABLES}
        ds = xr.Dataset(
            data,
            coords={
                "init_time": init["time"].values,
                "lead_time": leads,
                "lat": (
                    "lat",
                    self.dycore.lat,
                    {"standard_name": "latitude", "units": "degrees_north"},
                ),
                "lon": (
                    "lon",
                    self.dycore.lon,
                    {"standard_name": "longitude", "units": "degrees_east"},
                ),
            },
        )
        ds = ds.assign_coords(valid_time=ds.init_time + ds.lead_time)
        ds.attrs = {
            "title": "xdiffsr OSSE emulator forecast (Held-Suarez dynamical core)",
            "truncation": self.config.truncation,
            "layers": self.config.layers,
            "dt_minutes": self.config.dt_minutes,
        }
        return ds
