"""``super_resolve``: posterior ensembles of the high-resolution state, eager or lazy over time."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import xarray as xr

from .core.likelihood import GaussianLikelihood, MMPSGuidance, ScoreGuidance
from .core.memory import auto_budget, cuda_peak_probe, fit_batch_size, parse_memory
from .core.operators import CallableOperator, SparseOperator
from .core.runtime import check_network_options, with_network_options
from .core.sampler import heun_sampler, randn
from .core.schedule import karras_sigmas
from .errors import ArgumentError, XDiffSRWarning
from .grid import Grid, find_time, grid_of, to_datetime64
from .observations import Observations, as_source
from .prior import Prior

GUIDANCES = ("sda", "mmps", "none")
#: Settings of how the network runs (:func:`xdiffsr.core.runtime.with_network_options`).
NETWORK_SETTINGS = ("precision", "channels_last", "compile", "checkpoint")
#: Settings that change speed and memory only (the members agree to float rounding): left out
#: of the ``sampler`` attribute and of the settings a zarr store must match to be resumed.
#: ``precision`` changes the numbers, so it is recorded and checked.
SPEED_SETTINGS = ("batch_size", "max_memory", "channels_last", "compile", "checkpoint")
#: Defaults of the keyword options of :func:`super_resolve` beyond the main ones
#: (``**sampler_options`` of the accessor and of :func:`xdiffsr.parallel.reconstruct_to_zarr`).
SAMPLER_DEFAULTS: dict[str, Any] = dict(
    lambda_g=1.0,
    clip=None,
    cg_iters=10,
    S_churn=0.0,
    S_tmin=0.0,
    S_tmax=float("inf"),
    S_noise=1.0,
    corrector_guidance=True,
    sigma_min=None,
    sigma_max=None,
    batch_size=None,
    max_memory=None,
    precision="fp32",
    channels_last=False,
    compile=False,
    checkpoint=False,
)


def member_seed(seed: int, time: np.datetime64) -> int:
    """Seed of the members at ``time``: derived from the global seed and the timestamp only, so
    results do not depend on chunking, workers or order."""
    ns = int(np.datetime64(time, "ns").astype(np.int64))
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, (ns >> 32) & 0xFFFFFFFF, ns & 0xFFFFFFFF])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def _likelihoods(blocks: list[tuple[Any, float, float]], prior: Prior, device) -> list:
    """Fold the prior's normalisation into each source's operator: M(x) = A (center + scale x)."""
    C, H, W = prior.state_shape
    s = np.repeat(prior.scale, H * W)
    c = np.repeat(prior.center, H * W)
    scale_t = torch.as_tensor(prior.scale, dtype=torch.float32, device=device).reshape(1, C, 1, 1)
    center_t = torch.as_tensor(prior.center, dtype=torch.float32, device=device).reshape(1, C, 1, 1)
    out = []
    for block, gamma, weight in blocks:
        if block.operator is not None:  # callable on the physical state
            f = block.operator
            op = CallableOperator(lambda x, f=f: f(center_t + scale_t * x), (C, H, W))
            gam = block.gamma
        else:
            A = block.matrix @ sp.diags(s)
            op = SparseOperator(A, (C, H, W), offset=block.matrix @ c).to(device)
            # Gamma is dimensionless: in units of the prior variance of the observed variable
            g = gamma if block.gamma is None else block.gamma
            gam = g * prior.scale[block.var_index] ** 2
        y = torch.as_tensor(block.y, dtype=torch.float32)
        lik = GaussianLikelihood(y, op, sigma_y=block.variance, gamma=gam, weight=weight)
        out.append(lik.to(device))
    return out


def member_seeds(seed: int, time: np.datetime64, members: int) -> list[int]:
    """Seed of each member at ``time``: the children of ``SeedSequence(member_seed(seed, time))``
    (numpy's ``spawn``), so member ``m`` depends only on (seed, timestamp, m), not on the ensemble
    size or on how the members are batched."""
    children = np.random.SeedSequence(member_seed(seed, time)).spawn(int(members))
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for c in children]


def _member_generators(seed: int, time, members: int, device) -> list[torch.Generator]:
    """One torch generator per member: its latent noise and then its churn noise."""
    return [
        torch.Generator(device=device).manual_seed(s) for s in member_seeds(seed, time, members)
    ]


def _denoiser_at(
    prior: Prior,
    sources: Sequence[Observations],
    weights: Sequence[float],
    time: np.datetime64,
    device,
    settings: Mapping[str, Any],
) -> tuple[torch.nn.Module, list[int]]:
    """The (guided) denoiser at ``time`` with the network options of ``settings``, and the number
    of observations each source contributed."""
    blocks, counts = [], []
    for src, w in zip(sources, weights):
        block = src.at_time(time, prior)
        counts.append(0 if block is None else block.n_obs)
        if block is not None and block.n_obs and w > 0:
            blocks.append((block, src.gamma, w))
    net_opts = {k: settings[k] for k in NETWORK_SETTINGS if k in settings}
    den = with_network_options(prior.denoiser(device), **net_opts)
    liks = _likelihoods(blocks, prior, device)
    guidance = settings["guidance"]
    if guidance == "sda" and liks:
        den = ScoreGuidance(den, liks, lambda_g=settings["lambda_g"], clip=settings["clip"])
    elif guidance == "mmps" and liks:
        den = MMPSGuidance(
            den, liks, cg_iters=settings["cg_iters"], lambda_g=settings["lambda_g"]
        )
    return den, counts


def _sigmas(prior: Prior, settings: Mapping[str, Any]) -> torch.Tensor:
    return karras_sigmas(
        settings["steps"],
        sigma_min=settings["sigma_min"] or prior.sigma_min,
        sigma_max=settings["sigma_max"] or prior.sigma_max,
    )


def _batch_size(den, prior: Prior, device, settings: Mapping[str, Any]) -> int:
    """Members per network batch: ``batch_size`` (all members if None), lowered to what fits
    ``max_memory`` on a CUDA device (probed at batch 1 and 2, extrapolated linearly)."""
    members = settings["members"]
    cap = min(members, settings.get("batch_size") or members)
    max_memory = settings.get("max_memory")
    if max_memory is None:
        return cap
    device = torch.device(device)
    if device.type != "cuda":
        if max_memory != "auto":
            warnings.warn(
                f"max_memory={max_memory!r} applies to CUDA devices; on {device} the batch is "
                f"{cap} member(s) (set batch_size to bound it).",
                XDiffSRWarning,
                stacklevel=3,
            )
        return cap
    budget = auto_budget(device) if max_memory == "auto" else int(max_memory)
    sigma = float(_sigmas(prior, settings)[0])
    return fit_batch_size(cuda_peak_probe(den, prior.state_shape, device, sigma), budget, cap)


def _draw(
    den,
    prior: Prior,
    time: np.datetime64,
    device,
    settings: Mapping[str, Any],
    batch: int,
    callback: Callable | None = None,
) -> np.ndarray:
    """Normalised members (members, C, H, W), float64, sampled ``batch`` members at a time."""
    members = settings["members"]
    gens = _member_generators(settings["seed"], time, members, device)
    sigmas = _sigmas(prior, settings)
    out = np.empty((members, *prior.state_shape), dtype=np.float64)
    for b0 in range(0, members, batch):
        g = gens[b0 : b0 + batch]
        rows = slice(b0, b0 + len(g))
        latents = randn((len(g), *prior.state_shape), g, device)
        cb = None if callback is None else (lambda d, rows=rows: callback({**d, "members": rows}))
        with torch.no_grad():
            x = heun_sampler(
                den,
                latents,
                sigmas,
                S_churn=settings["S_churn"],
                S_tmin=settings["S_tmin"],
                S_tmax=settings["S_tmax"],
                S_noise=settings["S_noise"],
                corrector_guidance=settings["corrector_guidance"],
                generator=g,
                callback=cb,
            )
        out[rows] = x.double().cpu().numpy()
    return out


def sample_time(
    prior: Prior,
    sources: Sequence[Observations],
    weights: Sequence[float],
    time: np.datetime64,
    *,
    members: int,
    steps: int,
    seed: int,
    device,
    guidance: str,
    lambda_g: float,
    clip: float | None,
    cg_iters: int,
    S_churn: float,
    S_tmin: float,
    S_tmax: float,
    S_noise: float,
    corrector_guidance: bool,
    sigma_min: float | None,
    sigma_max: float | None,
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool | str = False,
    checkpoint: bool = False,
    callback: Callable | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Posterior members at one time, shape (members, C, H, W) in physical units, and the number
    of observations each source contributed.

    Members are drawn ``batch_size`` at a time (fitted to ``max_memory`` on CUDA); each has its
    own generator (:func:`member_seeds`), so the members do not depend on the batching. The
    callback's dict gains ``"members"``, the slice of members of the current batch.
    """
    settings = dict(
        members=members,
        steps=steps,
        seed=seed,
        guidance=guidance,
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
    den, counts = _denoiser_at(prior, sources, weights, time, device, settings)
    batch = _batch_size(den, prior, device, settings)
    x = _draw(den, prior, time, device, settings, batch, callback)
    return prior.denormalise(x), counts


def _check_weights(weights, n: int, sources: Sequence[Observations]) -> list[float]:
    if weights is None:
        return [1.0 if s.weight is None else float(s.weight) for s in sources]
    w = list(np.atleast_1d(np.asarray(weights, dtype=float)))
    if len(w) != n:
        raise ArgumentError(
            f"weights has {len(w)} values for {n} obs sources; give one weight per entry of obs."
        )
    if any(not np.isfinite(x) or x < 0 for x in w):
        raise ArgumentError(f"weights={weights!r} must be finite and >= 0.")
    return w


def _output_grid(ds: xr.Dataset, prior: Prior) -> tuple[Grid, tuple[np.ndarray, np.ndarray]]:
    """The grid of ``ds`` if it carries one (same points as the model, any order/convention)."""
    try:
        target = grid_of(ds, argname="ds")
    except Exception:  # no lat/lon in ds: the model grid
        H, W = prior.grid.shape
        return prior.grid, (np.arange(H), np.arange(W))
    perm = prior.grid.permutation_to(target)
    if perm is None:
        from .errors import CoordinateError

        raise CoordinateError(
            f"ds has a {target.shape[0]}x{target.shape[1]} lat/lon grid that is not the model's "
            f"{prior.grid.shape[0]}x{prior.grid.shape[1]} grid; pass a Dataset with only a time "
            "coordinate (the result is on the model grid) or regrid the result afterwards."
        )
    return target, perm


def run_times(
    prior: Prior,
    srcs: Sequence[Observations],
    weights: Sequence[float],
    times: np.ndarray,
    *,
    device,
    settings: Mapping[str, Any],
    ilat: np.ndarray,
    ilon: np.ndarray,
    n_sources: int,
) -> np.ndarray:
    """Members at each of ``times``: float32 array (time, member, C, H, W) on the output grid
    (model grid permuted by ``ilat``, ``ilon``). Warns about times without observations."""
    members = settings["members"]
    out = np.empty((len(times), members, *prior.state_shape), dtype=np.float32)
    batches: dict[str, int] = {}  # fitted once per kind of denoiser (guided or not)
    for k, t in enumerate(times):
        den, counts = _denoiser_at(prior, srcs, weights, t, device, settings)
        kind = type(den).__name__
        if kind not in batches:
            batches[kind] = _batch_size(den, prior, device, settings)
        x = prior.denormalise(_draw(den, prior, t, device, settings, batches[kind]))
        if sum(counts) == 0 and n_sources:
            warnings.warn(
                f"no observations at {t}: members are prior samples.",
                XDiffSRWarning,
                stacklevel=2,
            )
        for s, n in zip(srcs, counts):
            if n == 0 and n_sources > 1:
                warnings.warn(
                    f"source {s.describe()} has no observation at {t}; that time "
                    "runs with the other sources.",
                    XDiffSRWarning,
                    stacklevel=2,
                )
        out[k] = x[:, :, ilat][:, :, :, ilon]
    return out


@dataclass
class Plan:
    """Everything a reconstruction needs besides the prior: validated sources, weights, times,
    output grid and sampler settings (shared by the eager, lazy and zarr paths)."""

    times: np.ndarray
    tname: str
    sources: list[Observations]
    weights: list[float]
    grid: Grid
    ilat: np.ndarray
    ilon: np.ndarray
    settings: dict[str, Any]


def _check_batch_size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ArgumentError(
            f"batch_size={value!r} must be a positive integer (members per network batch), or "
            "None for all members in one batch."
        )
    return int(value)


def _plan(
    ds: xr.Dataset,
    obs: Sequence[Any],
    weights: Sequence[float] | None,
    model: Prior,
    members: int,
    steps: int,
    seed: int,
    guidance: str,
    sampler: Mapping[str, Any],
) -> Plan:
    """Validate the arguments of :func:`super_resolve` and gather them in a :class:`Plan`."""
    if not isinstance(model, Prior):
        raise ArgumentError(
            f"model={model!r} is not an xdiffsr prior; pass xdiffsr.load_model(...) or an "
            "xdiffsr.GaussianPrior."
        )
    if guidance not in GUIDANCES:
        raise ArgumentError(f"guidance={guidance!r}; choose one of {GUIDANCES}.")
    for name, val in (("members", members), ("steps", steps)):
        if int(val) != val or val < 1:
            raise ArgumentError(f"{name}={val!r} must be a positive integer.")
    if isinstance(obs, pd.DataFrame | xr.Dataset | Observations):
        obs = [obs]
    sources = [as_source(o, model) for o in obs]
    w = _check_weights(weights, len(sources), sources)
    tname = find_time(ds, argname="ds")
    if tname is None:
        raise ArgumentError(
            "ds has no datetime time coordinate; it supplies the times to "
            "reconstruct (e.g. xr.Dataset(coords={'time': times}))."
        )
    times = to_datetime64(ds[tname].values)
    grid, (ilat, ilon) = _output_grid(ds, model)
    sampler = {**SAMPLER_DEFAULTS, **sampler}
    network = check_network_options(**{k: sampler[k] for k in NETWORK_SETTINGS})
    settings = dict(
        members=int(members),
        steps=int(steps),
        seed=int(seed),
        guidance=guidance,
        lambda_g=float(sampler["lambda_g"]),
        clip=sampler["clip"],
        cg_iters=int(sampler["cg_iters"]),
        S_churn=float(sampler["S_churn"]),
        S_tmin=float(sampler["S_tmin"]),
        S_tmax=float(sampler["S_tmax"]),
        S_noise=float(sampler["S_noise"]),
        corrector_guidance=bool(sampler["corrector_guidance"]),
        sigma_min=sampler["sigma_min"],
        sigma_max=sampler["sigma_max"],
        batch_size=_check_batch_size(sampler["batch_size"]),
        max_memory=parse_memory(sampler["max_memory"], "max_memory"),
        **network,
    )
    return Plan(times, tname, sources, w, grid, np.asarray(ilat), np.asarray(ilon), settings)


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


def _time_chunks(ds: xr.Dataset, tname: str, chunks) -> int | None:
    if chunks is not None:
        n = chunks.get(tname, chunks.get("time")) if isinstance(chunks, Mapping) else chunks
        if n is None or int(n) != n or int(n) < 1:
            raise ArgumentError(f"chunks={chunks!r}: give {{'{tname}': n}} with n >= 1.")
        return int(n)
    sizes = ds.chunksizes.get(tname) if ds.chunks else None
    return int(sizes[0]) if sizes else None


def _lazy(plan: Plan, model: Prior, device, n_chunk: int):
    """Dask array (time, member, C, H, W): one task per time chunk.

    Each task gets a light handle of the model (:func:`xdiffsr.parallel.model_handle`: a file
    reference resolved through a per-process cache, or one shared graph key for in-memory
    priors), the sources windowed to its times, and resolves its device on the worker.
    """
    import dask
    import dask.array as da
    from dask.base import tokenize

    from .parallel import ModelRef, chunk_task_args, compute_chunk, model_handle

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


def _to_dataset(data, times, tname, grid: Grid, prior: Prior, sources, weights, settings):
    lat_name, lon_name = "lat", "lon"
    coords = {
        tname: (tname, times),
        "member": ("member", np.arange(data.shape[1])),
        lat_name: (
            lat_name,
            grid.lat,
            {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
        ),
        lon_name: (
            lon_name,
            grid.lon,
            {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
        ),
    }
    data_vars = {}
    for c, v in enumerate(prior.variables):
        attrs = {
            k: val
            for k, val in prior.attrs.get(v, {}).items()
            if k in ("standard_name", "long_name", "units")
        }
        attrs["units"] = prior.units[v] or attrs.get("units", "")
        data_vars[v] = ((tname, "member", lat_name, lon_name), data[:, :, c], attrs)
    ds = xr.Dataset(data_vars, coords=coords)
    ds[tname].attrs.update({"standard_name": "time", "axis": "T"})
    ds["member"].attrs.update({"long_name": "ensemble member", "standard_name": "realization"})
    ds.attrs.update(
        {
            "title": "xdiffsr posterior ensemble",
            "Conventions": "CF-1.8",
            "model": prior.describe(),
            "sampler": json.dumps(
                {k: v for k, v in settings.items() if k not in SPEED_SETTINGS}, default=str
            ),
            "sources": json.dumps([s.describe() for s in sources]),
            "weights": json.dumps([float(x) for x in weights]),
            **grid.describe(),
            "history": f"{pd.Timestamp.now('UTC'):%Y-%m-%dT%H:%M:%SZ} xdiffsr.super_resolve",
        }
    )
    return ds
