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
from xdiffsr.observations.sources import ObsBlock
from xdiffsr.reconstruct.diagnostics import result_diagnostics, to_model_grid
from xdiffsr.reconstruct.output import to_dataset
from xdiffsr.reconstruct.plan import Plan, check_device, make_plan
from xdiffsr.reconstruct.sample import (
    batch_size_for,
    denoiser_at,
    draw_members,
    observation_blocks,
    run_times,
)
from xdiffsr.reconstruct.settings import SamplerSettings
from xdiffsr.reconstruct.tasks import ChunkArgs, chunk_task_args

__all__ = ["Reconstruction"]


class Reconstruction:
    """Posterior ensembles of ``target``'s times from observation sources, built once.

    Validates everything :func:`xdiffsr.super_resolve` takes (the sources, one weight each, the
    times and output grid of ``target``, the sampler settings) when it is built; then
    :meth:`sample` draws the members, :meth:`to_dataset` turns them into the result Dataset
    and :meth:`diagnostics` computes the observation-space diagnostics; :meth:`run` does all
    three, building each (time, source) observation block once for the guidance and the
    diagnostics and permuting the members into the output grid once. ``super_resolve`` is
    ``Reconstruction(...).run()``; :func:`xdiffsr.reconstruct_to_zarr` writes the tasks of
    :meth:`window` into a store.

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
    device : str or torch.device, optional
        Where to sample by default (CUDA when available, else the CPU); ``precision='auto'``
        is resolved for it (recorded in the provenance as bf16 or fp32).
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
                 settings: SamplerSettings | None = None, device=None,
                 member_dim: str = "member", output_grid: str = "ds",
                 assume_units: bool = False, **sampler_options: Any):
        self.device = _device(check_device(device, lazy=True))
        settings = SamplerSettings.from_options(settings, **sampler_options)
        settings = settings.for_device(self.device)  # precision 'auto' -> bf16 or fp32 here
        self.model = model
        self.plan: Plan = make_plan(target, obs, weights, model, settings, member_dim=member_dim,
                                    output_grid=output_grid, assume_units=assume_units)

    def _on(self, device) -> torch.device:
        return self.device if device is None else torch.device(device)

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
                 f"seed {s.seed}, {s.precision} on {self.device}"]
        lines += [f"  source:   {src.describe()} (weight {w:g})"
                  for src, w in zip(self.sources, self.weights)] or ["  sources:  none"]
        return "\n".join(lines)

    def blocks(self, time: np.datetime64) -> list[ObsBlock | None]:
        """Each source's observation block at ``time`` (None where it has none)."""
        return observation_blocks(self.model, self.sources, time)

    def denoiser(self, time: np.datetime64, device,
                 blocks: list[ObsBlock | None] | None = None) -> tuple[torch.nn.Module, list[int]]:
        """The (guided) denoiser at ``time`` on ``device`` (from ``blocks``, those of
        :meth:`blocks`, if given), and each source's observation count there."""
        return denoiser_at(self.model, self.sources, self.weights, time, device, self.settings,
                           blocks=blocks)

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

        ``times``: all the target times by default; ``device``: the reconstruction's
        (:attr:`device`) by default; ``progress``: called after every sampler step (see
        :func:`xdiffsr.reconstruct.sample.run_times`).
        """
        times = self.times if times is None else np.asarray(times, dtype="datetime64[ns]")
        return run_times(self.model, self.sources, self.weights, times, device=self._on(device),
                         settings=self.settings, ilat=self.plan.ilat, ilon=self.plan.ilon,
                         progress=progress)

    def run(self, *, device=None, progress: Callable[[float], Any] | None = None,
            stacklevel: int = 1) -> xr.Dataset:
        """The result Dataset of every target time with its diagnostics (what
        :func:`xdiffsr.super_resolve` returns): each (time, source) block is built once for
        the guidance and the diagnostics, the members are sampled and diagnosed on the model
        grid and permuted into the output grid once. Warnings as :meth:`diagnostics`."""
        p = self.plan
        blocks = [self.blocks(t) for t in p.times]
        members = run_times(self.model, p.sources, p.weights, p.times, device=self._on(device),
                            settings=p.settings, progress=progress, blocks=blocks)
        diag = result_diagnostics(self.model, p.sources, p.weights, p.times, p.tname, members,
                                  blocks=blocks, stacklevel=stacklevel + 3)
        return self.to_dataset(members[..., p.ilat, :][..., p.ilon], diagnostics=diag)

    def diagnostics(self, data, *, stacklevel: int = 1) -> xr.Dataset:
        """Observation-space diagnostics (time, source) of the members ``data`` of
        :meth:`sample` (all times, output grid), and the warnings of inconsistent sources
        (attributed to the caller ``stacklevel`` frames up)."""
        p = self.plan
        members = to_model_grid(np.asarray(data), p.ilat, p.ilon)
        return result_diagnostics(self.model, p.sources, p.weights, p.times, p.tname, members,
                                  stacklevel=stacklevel + 3)

    def to_dataset(self, data, *, diagnostics: xr.Dataset | None = None,
                   caller_times: bool = True) -> xr.Dataset:
        """The result Dataset of the members ``data`` (all times; numpy or dask) under the
        caller's names, with CF and provenance attributes and the ``diagnostics``; its times
        are the target's own values (e.g. cftime dates), or datetime64 with
        ``caller_times=False`` (a zarr store's)."""
        p = self.plan
        options = p.output_options()
        if not caller_times:
            options["time_values"] = None
        return to_dataset(data, p.times, p.tname, p.grid, self.model, p.sources, p.weights,
                          p.settings, diagnostics=diagnostics, **options)

    def window(self, times: np.ndarray, device=None) -> ChunkArgs:
        """What the dask task of ``times`` needs: the sources windowed to them, the weights,
        settings and output permutation (:func:`xdiffsr.reconstruct.tasks.compute_chunk`)."""
        return chunk_task_args(self.plan, times, device)


def _device(device) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
