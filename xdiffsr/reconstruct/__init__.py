"""Reconstruction: settings, plan, sampling one time, the Dataset, dask tasks, the zarr store."""

from xdiffsr.reconstruct.api import super_resolve
from xdiffsr.reconstruct.reconstruction import Reconstruction
from xdiffsr.reconstruct.sample import member_seed, member_seeds, sample_time
from xdiffsr.reconstruct.settings import SAMPLER_DEFAULTS, SamplerSettings
from xdiffsr.reconstruct.store import reconstruct_to_zarr
from xdiffsr.reconstruct.tasks import cache_stats, clear_cache, worker_device

__all__ = [
    "SAMPLER_DEFAULTS",
    "Reconstruction",
    "SamplerSettings",
    "cache_stats",
    "clear_cache",
    "member_seed",
    "member_seeds",
    "reconstruct_to_zarr",
    "sample_time",
    "super_resolve",
    "worker_device",
]
