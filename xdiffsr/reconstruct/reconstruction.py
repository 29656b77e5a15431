"""A reconstruction built once (the habit of xESMF's ``Regridder``): target times and grid,
sources, weights, model and sampler settings validated together, then sampled, turned into a
Dataset and diagnosed as often as needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from xdiffsr.models.prior import Prior
from xdiffsr.reconstruct.diagnostics import result_diagnostics
from xdiffsr.reconstruct.output import to_dataset
from xdiffsr.reconstruct.plan import Plan, make_plan
from xdiffsr.reconstruct.sample import batch_size_for, denoiser_at, draw_members, run_times
from xdiffsr.reconstruct.settings import SamplerSettings
from xdiffsr.reconstruct.tasks import ChunkArgs, chunk_task_args

__all__ = ["Reconstruction"]


class Reconstruction:
    """Posterior ensembles of ``target``'s times from observation sources, built once.

    Validates everything :func:`xdiffsr.super_resolve` takes (the sources, one weight each, the
    times and output grid of ``target``, the sampler settings) when it is built; then
    :meth:`sample` draws the members, :meth:`to_dataset` turns them into the result Dataset
    and :meth:`diagnostics` computes the observation-space diagnostics. ``super_resolve`` is
    ``Reconstruction(...)``, ``sample``, ``diagnostics`` and ``to_dataset``.

    Parameters
    ----------
    target : xarray.Dataset
        The times to reconstruct (a datetime coordinate) and optionally the output grid.
    obs : list
        Observation sources (anything :func:`xdiffsr.super_resolve` takes).
    weights : list of float, optional
        One weight per source (default: each source's ``weight`` or 1).
    model : Prior
        The prior.
    settings : SamplerSettings, optional
        Sampler settings; ``**sampler_options`` change some of them.
    member_dim, output_grid, assume_units
        As in :func:`xdiffsr.super_resolve`.

    Examples
    --------
    >>> rec = Reconstruction(target, [points, coarse], model=prior, members=4)  # doctest: +SKIP
    >>> rec                                                                     # doctest: +SKIP
    Reconstruction of 2 time(s) 2021-01-01T00:00 .. 2021-01-01T06:00 ...
    >>> ens = rec.to_dataset(rec.sample(device="cpu"))                          # doctest: +SKIP
    """

    def __init__(self, target: xr.Dataset, obs: Sequence[Any] = (),
                 weights: Sequence[float] | None = None, *, model: Prior,
                 settings: SamplerSettings | None = None, member_dim: str = "member",
                 output_grid: str = "ds", assume_units: bool = False, **sampler_options: Any):
        settings = SamplerSettings.from_options(settings, **sampler_options)
        self.model = model
        self.plan: Plan = make_plan(target, obs, weights, model, settings, member_dim=member_dim,
                                    output_grid=output_grid, assume_units=assume_units)

    @property
    def settings(self) -> SamplerSettings:
        return self.plan.settings

    @property
    def times(self) -> np.ndarray:
        """The target times (datetime64[ns])."""
        return self.plan.times

    @property
    def sources(self) -> list:
        return self.plan.sources

    @property
    def weights(self) -> list[float]:
        return self.plan.weights

    def __repr__(self) -> str:
        t = self.times
        span = (f"{np.datetime_as_string(t[0], 'm')} .. {np.datetime_as_string(t[-1], 'm')}"
                if len(t) else "none")
        s = self.settings
        lines = [f"Reconstruction of {len(t)} time(s) {span}",
                 f"  model:    {self.model.describe()}",
                 f"  grid:     {self.plan.grid.shape[0]} x {self.plan.grid.shape[1]} "
                 f"({self.plan.grid.lat_name}, {self.plan.grid.lon_name})",
                 f"  sampler:  {s.members} members, {s.steps} steps, guidance {s.guidance!r}, "
                 f"seed {s.seed}"]
        lines += [f"  source:   {src.describe()} (weight {w:g})"
                  for src, w in zip(self.sources, self.weights)] or ["  sources:  none"]
        return "\n".join(lines)

    def denoiser(self, time: np.datetime64, device) -> tuple[torch.nn.Module, list[int]]:
        """The (guided) denoiser at ``time`` on ``device``, and each source's observation count
        there."""
        return denoiser_at(self.model, self.sources, self.weights, time, device, self.settings)

    def batch_size(self, denoiser: torch.nn.Module, device, rows: int | None = None) -> int:
        """Rows per network batch for ``denoiser`` on ``device`` (``batch_size``,
        ``max_memory`` or automatic; ``rows``: the rows worth batching, default the members)."""
        return batch_size_for(denoiser, self.model, device, self.settings, rows)

    def draw(self, denoiser: torch.nn.Module, time, device, batch: int,
             callback: Callable | None = None) -> np.ndarray:
        """Normalised members (members, *sample shape) of ``time`` with ``denoiser`` (its own or
        another, e.g. a benchmark's), ``batch`` rows at a time."""
        return draw_members(denoiser, self.model, time, device, self.settings, batch, callback)

    def sample(self, times: Sequence[np.datetime64] | None = None, *, device=None,
               progress: Callable[[float], Any] | None = None) -> np.ndarray:
        """Members (time, member, C, H, W), float32, physical units, on the output grid.

        ``times``: all the target times by default; ``device``: CUDA when available, else the
        CPU; ``progress``: called after every sampler step (see
        :func:`xdiffsr.reconstruct.sample.run_times`).
        """
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        times = self.times if times is None else np.asarray(times, dtype="datetime64[ns]")
        return run_times(self.model, self.sources, self.weights, times, device=dev,
                         settings=self.settings, ilat=self.plan.ilat, ilon=self.plan.ilon,
                         n_sources=len(self.sources), progress=progress)

    def diagnostics(self, data, *, stacklevel: int = 1) -> xr.Dataset:
        """Observation-space diagnostics (time, source) of the members ``data`` of
        :meth:`sample` (all times), and the warnings of inconsistent sources (attributed to
        the caller ``stacklevel`` frames up)."""
        p = self.plan
        return result_diagnostics(self.model, p.sources, p.weights, p.times, p.tname, data,
                                  p.ilat, p.ilon, stacklevel=stacklevel + 3)

    def to_dataset(self, data, *, diagnostics: xr.Dataset | None = None) -> xr.Dataset:
        """The result Dataset of the members ``data`` (all times; numpy or dask) under the
        caller's names, with CF and provenance attributes and the ``diagnostics``."""
        p = self.plan
        return to_dataset(data, p.times, p.tname, p.grid, self.model, p.sources, p.weights,
                          p.settings, diagnostics=diagnostics, **p.output_options())

    def window(self, times: np.ndarray, device=None) -> ChunkArgs:
        """What the dask task of ``times`` needs: the sources windowed to them, the weights,
        settings and output permutation (:func:`xdiffsr.reconstruct.tasks.compute_chunk`)."""
        return chunk_task_args(self.plan, times, device)
