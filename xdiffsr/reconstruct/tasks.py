"""One time chunk as a task: device choice, observations windowed and read, the model resolved.

Models and regridding operators are built once per process by their own caches
(:func:`xdiffsr.load_model`, :meth:`xdiffsr.GridObservations.operator`); :func:`cache_stats`
reports both.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from xdiffsr.models.reference import resolve_handle
from xdiffsr.models.registry import clear_model_cache, model_cache_stats
from xdiffsr.observations.sources import (
    Observations,
    clear_operator_cache,
    operator_cache_stats,
)
from xdiffsr.reconstruct.plan import Plan
from xdiffsr.reconstruct.sample import run_times
from xdiffsr.reconstruct.settings import SamplerSettings


def cache_stats() -> dict[str, int]:
    """This process's cache counters (call on workers with ``client.run(cache_stats)``):
    ``loads`` and ``hits`` of the model cache, ``operators`` built and ``operator_hits``."""
    return {**model_cache_stats(), **operator_cache_stats()}


def clear_cache() -> None:
    """Forget the cached models and operators of this process (and reset the counters)."""
    clear_model_cache()
    clear_operator_cache()


def _local_gpu_index() -> int:
    n = max(torch.cuda.device_count(), 1)
    if "dask_cuda" in sys.modules:  # dask-cuda pins each worker's GPU first in CUDA_VISIBLE_DEVICES
        return 0
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return 0
    try:
        return int(name) % n  # LocalCluster names its workers 0, 1, ...
    except (TypeError, ValueError):
        return 0


def worker_device(device: str | torch.device | None = None) -> torch.device:
    """The device a task runs on.

    An explicit device with an index (``"cuda:1"``, ``"cpu"``) is used as given. Otherwise CUDA
    when available, on the worker's own GPU: index 0 under dask-cuda (which lists each worker's
    GPU first in ``CUDA_VISIBLE_DEVICES``), else the LocalCluster worker number modulo the visible
    device count; indices are relative to ``CUDA_VISIBLE_DEVICES``.
    """
    if device is not None:
        dev = torch.device(device)
        if dev.type != "cuda" or dev.index is not None:
            return dev
    elif not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", _local_gpu_index())


def _is_lazy(data) -> bool:
    return (
        isinstance(data, xr.Dataset | xr.DataArray)
        and data.chunks is not None
        and any(
            True for _ in (data.chunks.values() if isinstance(data, xr.Dataset) else data.chunks)
        )
    )


class ChunkArgs:
    """Everything a chunk task needs besides the model (a plain class: dask does not traverse
    it, so lazily opened observation slices travel as small graphs and are read by the task)."""

    def __init__(
        self, times, srcs, weights, settings: SamplerSettings, ilat, ilon, device, n_sources
    ):
        self.times = times
        self.srcs = srcs
        self.weights = weights
        self.settings = settings
        self.ilat, self.ilon = ilat, ilon
        self.device = None if device is None else str(device)
        self.n_sources = n_sources

    def token(self) -> str:
        from dask.base import tokenize

        return tokenize(  # a source's token covers all its fields (__dask_tokenize__)
            self.times, self.srcs, self.weights, self.settings.as_dict(), self.ilat, self.ilon,
            self.device,
        )


def chunk_task_args(plan: Plan, times: np.ndarray, device) -> ChunkArgs:
    """The arguments of the task of ``times`` (sources windowed to them on the client)."""
    srcs = [s.window(times[0], times[-1]) for s in plan.sources]
    return ChunkArgs(
        times, srcs, plan.weights, plan.settings, plan.ilat, plan.ilon, device, len(plan.sources)
    )


def _materialise(srcs: Sequence[Observations]) -> list[Observations]:
    """Read lazily opened (dask-backed) observation slices here, with the synchronous scheduler
    (no nested submission to a cluster)."""
    import dask

    out = []
    for s in srcs:
        if _is_lazy(s.data):
            s = copy.copy(s)
            with dask.config.set(scheduler="sync"):
                s.data = s.data.compute()
        out.append(s)
    return out


def compute_chunk(handle, args: ChunkArgs) -> np.ndarray:
    """Run one time chunk on this worker: float32 array (time, member, C, H, W)."""
    dev = worker_device(args.device)
    prior = resolve_handle(handle, dev)
    srcs = _materialise(args.srcs)
    return run_times(
        prior,
        srcs,
        args.weights,
        args.times,
        device=dev,
        settings=args.settings,
        ilat=args.ilat,
        ilon=args.ilon,
        n_sources=args.n_sources,
    )
