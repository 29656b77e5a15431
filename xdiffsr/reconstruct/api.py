"""``super_resolve``: posterior ensembles of the high-resolution state, eager or lazy over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from xdiffsr.models.prior import Prior
from xdiffsr.models.reference import ModelRef, model_handle
from xdiffsr.reconstruct.output import _to_dataset
from xdiffsr.reconstruct.plan import Plan, _plan, _time_chunks
from xdiffsr.reconstruct.sample import run_times
from xdiffsr.reconstruct.tasks import chunk_task_args, compute_chunk


def super_resolve(
    ds: xr.Dataset,
    obs: Sequence[Any],
    weights: Sequence[float] | None = None,
    *,
    model: Prior,
    members: int = 8,
    steps: int = 18,
    seed: int = 0,
    device: str | torch.device | None = None,
    guidance: str = "sda",
    lambda_g: float = 1.0,
    clip: float | None = None,
    cg_iters: int = 10,
    S_churn: float = 0.0,
    S_tmin: float = 0.0,
    S_tmax: float = float("inf"),
    S_noise: float = 1.0,
    corrector_guidance: bool = True,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    batch_size: int | None = None,
    max_memory: int | float | str | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool | str = False,
    checkpoint: bool = False,
    chunks: Mapping[str, int] | int | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Posterior ensemble of the high-resolution state at the times of ``ds``.

    See :meth:`xdiffsr.accessor.DiffSRAccessor.super_resolve` for the parameters. With
    ``chunks`` (or a dask-backed ``ds``) the result is lazy: one task per time chunk, which
    receives a light reference to the model (resolved once per worker process, see
    :mod:`xdiffsr.parallel`) and only the observations of its time window.
    """
    sampler = dict(
        lambda_g=lambda_g,
        clip=clip,
        cg_iters=cg_iters,
        S_churn=S_churn,
        S_tmin=S_tmin,
        S_tmax=S_tmax,
        S_noise=S_noise,
        corrector_guidance=corrector_guidance,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        batch_size=batch_size,
        max_memory=max_memory,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        checkpoint=checkpoint,
    )
    plan = _plan(ds, obs, weights, model, members, steps, seed, guidance, sampler)
    n_chunk = _time_chunks(ds, plan.tname, chunks)
    if n_chunk is None:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        data = run_times(
            model,
            plan.sources,
            plan.weights,
            plan.times,
            device=dev,
            settings=plan.settings,
            ilat=plan.ilat,
            ilon=plan.ilon,
            n_sources=len(plan.sources),
        )
    else:
        data = _lazy(plan, model, device, n_chunk)
    return _to_dataset(
        data, plan.times, plan.tname, plan.grid, model, plan.sources, plan.weights, plan.settings
    )


def _lazy(plan: Plan, model: Prior, device, n_chunk: int):
    """Dask array (time, member, C, H, W): one task per time chunk.

    Each task gets a light handle of the model (:func:`xdiffsr.parallel.model_handle`: a file
    reference resolved through a per-process cache, or one shared graph key for in-memory
    priors), the sources windowed to its times, and resolves its device on the worker.
    """
    import dask
    import dask.array as da
    from dask.base import tokenize

    handle = model_handle(model)
    shape = (plan.settings["members"], *model.state_shape)
    ident = handle.token if isinstance(handle, ModelRef) else handle.key
    base = tokenize(ident, plan.settings, plan.weights, plan.ilat, plan.ilon, str(device))
    parts = []
    for i0 in range(0, len(plan.times), n_chunk):
        tc = plan.times[i0 : i0 + n_chunk]
        args = chunk_task_args(plan, tc, device)
        name = f"xdiffsr-chunk-{tokenize(base, args.token())}"
        part = dask.delayed(compute_chunk, pure=True)(handle, args, dask_key_name=name)
        parts.append(da.from_delayed(part, (len(tc), *shape), dtype=np.float32))
    return da.concatenate(parts, axis=0)
