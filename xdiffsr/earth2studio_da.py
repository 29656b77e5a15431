"""xdiffsr as an earth2studio data-assimilation model.

:class:`DiffSRAssimilation` wraps a prior (a trained diffusion model or a
:class:`~xdiffsr.GaussianPrior`) and its observation settings in the interface of
``earth2studio.models.da.base.AssimilationModel`` (earth2studio 0.19): ``__call__``,
``create_generator``, ``init_coords``, ``input_coords``, ``output_coords`` and ``to``. It takes
earth2studio observation frames (``time, lat, lon, observation, variable[, pres, station,
quality]``, :mod:`xdiffsr.observations.earth2studio`) and gridded ``xarray.DataArray`` fields in
earth2studio's layout (``time, variable, lat, lon``), and returns the posterior ensemble as
earth2studio returns fields: an ``xarray.DataArray`` with dims ``(ensemble, time, variable, lat,
lon)`` and earth2studio variable names (``t2m``, ``u10m``, ``t850``, ``z500``).

The protocol is structural (``typing.Protocol``): nothing here imports earth2studio, and the
class satisfies ``isinstance(model, AssimilationModel)`` wherever earth2studio is installed
(``pip install "xdiffsr[earth2studio]"``).

Examples
--------
>>> da_model = DiffSRAssimilation(prior, members=8)                 # doctest: +SKIP
>>> (ens,) = da_model(frame)                                         # doctest: +SKIP
>>> gen = da_model.create_generator(); gen.send(None)                # doctest: +SKIP
>>> for frame in frames:                                             # doctest: +SKIP
...     (ens,) = gen.send((frame,))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xdiffsr.errors import ObservationError
from xdiffsr.models.prior import Prior
from xdiffsr.observations import GridObservations, PointObservations
from xdiffsr.observations.earth2studio import (
    EARTH2STUDIO_SURFACE,
    EARTH2STUDIO_UPPER_AIR,
    from_earth2studio,
)
from xdiffsr.observations.vertical import parse_model_variable
from xdiffsr.reconstruct import super_resolve

__all__ = ["DiffSRAssimilation", "earth2studio_names"]

_TO_E2S = {m: e for e, m in EARTH2STUDIO_SURFACE.items()}


def earth2studio_names(variables) -> list[str]:
    """earth2studio's names of model variables (``u10`` -> ``u10m``; ``t850`` stays)."""
    return [_TO_E2S.get(v, v) for v in variables]


class DiffSRAssimilation:
    """A prior and its observation settings as an earth2studio assimilation model.

    Stateless: every call draws ``members`` posterior members at each requested time from the
    observations given to that call alone.

    Parameters
    ----------
    prior : Prior
        The model (its grid is the output grid).
    members, steps, seed, guidance
        Sampler settings of :func:`xdiffsr.super_resolve` (``guidance='mmps'`` is exact for a
        Gaussian prior).
    time_tolerance : str or Timedelta
        Frame rows within ``± time_tolerance`` of a requested time are used at that time.
    grid_sigma_y : float or mapping, optional
        Error variance of gridded DataArray inputs, per model variable (physical units
        squared); None: the package default.
    quality, vertical, errors
        How frames map to point observations (:func:`xdiffsr.observations.earth2studio.
        from_earth2studio`).
    device : str or torch.device
        Where the sampler runs (:meth:`to` changes it).
    **options
        Further sampler options of :func:`xdiffsr.super_resolve` (``cg_iters``, ``S_churn``...).
    """

    def __init__(
        self,
        prior: Prior,
        *,
        members: int = 8,
        steps: int = 18,
        seed: int = 0,
        guidance: str = "mmps",
        time_tolerance: str | pd.Timedelta = "30min",
        grid_sigma_y: float | Mapping[str, float] | None = None,
        quality: int | None = 0,
        vertical: str = "log-p",
        errors: Mapping[str, float] | None = None,
        device: str | torch.device = "cpu",
        **options: Any,
    ):
        self.prior = prior
        self.members, self.steps, self.seed, self.guidance = members, steps, seed, guidance
        self.time_tolerance = pd.Timedelta(time_tolerance)
        self.grid_sigma_y, self.options = grid_sigma_y, dict(options)
        self.frame_options = {"quality": quality, "vertical": vertical, "errors": errors}
        self.device = torch.device(device)
        self.variables = earth2studio_names(prior.variables)

    # --- the AssimilationModel interface -------------------------------------------------
    def init_coords(self) -> None:
        """No initial state: every call conditions the prior on its observations alone."""
        return None

    def input_coords(self) -> tuple[OrderedDict[str, np.ndarray]]:
        """The frame schema: ``time, lat, lon, observation`` (dynamic) and the accepted
        earth2studio ``variable`` names (surface names and upper-air quantities)."""
        return (OrderedDict({
            "time": np.empty(0, dtype="datetime64[ns]"),
            "lat": np.empty(0, dtype=np.float32),
            "lon": np.empty(0, dtype=np.float32),
            "observation": np.empty(0, dtype=np.float32),
            "variable": np.array(self.accepted_variables(), dtype=str),
        }),)

    def output_coords(
        self, input_coords: tuple, request_time: np.ndarray | None = None, **kwargs: Any
    ) -> tuple[OrderedDict[str, np.ndarray]]:
        """``(ensemble, time, variable, lat, lon)`` coordinates of the output for
        ``request_time``."""
        times = np.empty(0, "datetime64[ns]") if request_time is None else np.asarray(
            request_time, dtype="datetime64[ns]").reshape(-1)
        grid = self.prior.grid
        return (OrderedDict({
            "ensemble": np.arange(self.members),
            "time": times,
            "variable": np.array(self.variables, dtype=str),
            "lat": np.sort(grid.lat)[::-1].copy(),  # earth2studio: 90 -> -90, 0 -> 360
            "lon": np.sort(np.mod(grid.lon, 360.0)),
        }),)

    def to(self, device: str | torch.device) -> DiffSRAssimilation:
        """Run the sampler on ``device`` from now on; returns self."""
        self.device = torch.device(device)
        return self

    def __call__(self, *obs: pd.DataFrame | xr.DataArray | None) -> xr.DataArray:
        """Posterior ensemble at the requested times given frames and gridded fields.

        Parameters
        ----------
        *obs : DataFrame, DataArray or None
            earth2studio observation frames (requested times from ``attrs["request_time"]``,
            else the frame's distinct times) and fields with dims ``(time, variable, lat, lon)``
            on any regular grid; None entries are skipped.

        Returns
        -------
        xarray.DataArray
            ``(ensemble, time, variable, lat, lon)``, earth2studio variable names.

        Raises
        ------
        ObservationError
            Variables the prior does not have (both sets named), no requested time, or an input
            of another type.
        """
        frames = [o for o in obs if isinstance(o, pd.DataFrame)]
        fields = [o for o in obs if isinstance(o, xr.DataArray)]
        other = [type(o).__name__ for o in obs if o is not None and not isinstance(
            o, pd.DataFrame | xr.DataArray)]
        if other:
            raise ObservationError(
                f"obs: {other} are neither earth2studio frames (pandas DataFrame) nor fields "
                "(xarray DataArray)."
            )
        times = self._request_times(frames, fields)
        sources = [self._frame_source(f) for f in frames if len(f)]
        sources += [self._field_source(f) for f in fields]
        ens = super_resolve(
            xr.Dataset(coords={"time": times}), sources, model=self.prior, device=self.device,
            member_dim="ensemble", members=self.members, steps=self.steps, seed=self.seed,
            guidance=self.guidance, **self.options)
        return self._to_dataarray(ens, times)

    def create_generator(self) -> Generator[xr.DataArray | None, Any, None]:
        """A generator that receives observations with ``send`` (a tuple of frames and fields,
        or one of them) and yields the posterior ensemble of each; first ``send(None)``."""
        obs = yield None
        try:
            while True:
                args = obs if isinstance(obs, tuple) else (obs,)
                out = self(*args)
                obs = yield out
        except GeneratorExit:
            return

    # --- helpers -----------------------------------------------------------------------------
    def accepted_variables(self) -> list[str]:
        """earth2studio variables this prior can be conditioned on: its surface fields and the
        upper-air quantities (``t``, ``z``, ...) of its pressure levels."""
        names = [e for e, m in EARTH2STUDIO_SURFACE.items() if m in self.prior.variables]
        for q in EARTH2STUDIO_UPPER_AIR:
            if any(_quantity(v) == q for v in self.prior.variables):
                names.append(q)
        return names

    def _check_variables(self, found, kind: str, accepted) -> None:
        unknown = sorted(set(map(str, found)) - set(accepted))
        if unknown:
            raise ObservationError(
                f"obs: {kind} holds earth2studio variables {unknown} that the prior "
                f"{self.prior.name!r} does not have; it accepts {sorted(accepted)} (its "
                f"variables {list(self.prior.variables)}). Drop those rows, e.g. "
                f"frame[frame['variable'].isin({sorted(accepted)})], or use a prior with them."
            )

    def _request_times(self, frames, fields) -> np.ndarray:
        times = []
        for f in frames:
            rt = f.attrs.get("request_time")
            times.append(np.asarray(rt if rt is not None else f["time"].unique(),
                                    dtype="datetime64[ns]").reshape(-1))
        times += [np.asarray(f["time"].values, "datetime64[ns]").reshape(-1) for f in fields
                  if "time" in f.coords]
        out = np.unique(np.concatenate(times)) if times else np.empty(0, "datetime64[ns]")
        if out.size == 0:
            raise ObservationError(
                "obs: no requested time: give a frame with rows (or attrs['request_time']) or "
                "a field with a time coordinate."
            )
        return out

    def _frame_source(self, frame: pd.DataFrame) -> PointObservations:
        if "variable" in frame.columns:
            self._check_variables(frame["variable"].unique(), "the frame",
                                  self.accepted_variables())
        tidy = from_earth2studio(frame, self.prior.variables, **self.frame_options)
        return PointObservations(tidy, tolerance=self.time_tolerance)

    def _field_source(self, field: xr.DataArray) -> GridObservations:
        if "variable" not in field.dims:
            raise ObservationError(
                f"obs: a field with dims {field.dims} has no 'variable' dimension; give "
                "earth2studio fields (time, variable, lat, lon)."
            )
        self._check_variables(field["variable"].values, "a field", self.variables)
        ds = field.to_dataset("variable")
        ds = ds.rename({e: m for e, m in zip(self.variables, self.prior.variables, strict=True)
                        if e in ds.data_vars and e != m})
        for v in ds.data_vars:
            ds[v].attrs.setdefault("units", self.prior.units.get(str(v), ""))
        return GridObservations(ds, sigma_y=self.grid_sigma_y,
                                tolerance=self.time_tolerance)

    def _to_dataarray(self, ens: xr.Dataset, times: np.ndarray) -> xr.DataArray:
        grid = self.prior.grid
        da = ens[list(self.prior.variables)].to_array("variable")
        da = da.rename({grid.lat_name: "lat", grid.lon_name: "lon"}) if grid.lat_name != "lat" \
            else da
        da = da.assign_coords(lon=np.mod(da["lon"].values, 360.0)).sortby("lon")
        da = da.sortby("lat", ascending=False).transpose("ensemble", "time", "variable", "lat",
                                                         "lon")
        (coords,) = self.output_coords(self.input_coords(), request_time=times)
        return xr.DataArray(da.values, dims=list(coords), coords=coords,
                            attrs={"model": self.prior.name, "source": "xdiffsr"})

    def __repr__(self) -> str:
        return (f"<DiffSRAssimilation of {self.prior!r}: {self.members} members, "
                f"{self.steps} steps, guidance={self.guidance!r}, device={self.device}>")


def _quantity(variable: str) -> str | None:
    """The earth2studio upper-air quantity of a model variable (``t850`` -> ``t``)."""
    parsed = parse_model_variable(variable)
    return None if parsed is None else parsed[0]
