"""Sampling the members of one time, and of a run of times, on one device."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

from xdiffsr.core.guidance import Guidance, batch_guidances, build_guidance
from xdiffsr.core.guidance.jf import JF_CG_ITERS
from xdiffsr.core.memory import auto_budget, cuda_peak_probe, fit_batch_size, host_batch_size
from xdiffsr.core.runtime import with_network_options
from xdiffsr.core.sampler import heun_sampler, randn
from xdiffsr.core.schedule import karras_sigmas
from xdiffsr.core.zonal import ZonalFilter
from xdiffsr.errors import ArgumentError, XDiffSRWarning
from xdiffsr.models.prior import Prior
from xdiffsr.observations.likelihood import likelihoods
from xdiffsr.observations.sources import ObsBlock, Observations
from xdiffsr.reconstruct.settings import SamplerSettings


def member_seed(seed: int, time: np.datetime64) -> int:
    """Seed of the members at ``time``: derived from the global seed and the timestamp only, so
    results do not depend on chunking, workers or order.

    Every bit of ``seed`` (an integer >= 0 of any size) is used: a seed below ``2**32`` gives
    the entropy ``[seed, time high word, time low word]``; a larger one appends its higher
    32-bit words and their count, so no two seeds share a stream.

    Raises
    ------
    ArgumentError
        A negative or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ArgumentError(f"seed={seed!r} must be an integer >= 0.")
    seed = int(seed)
    ns = int(np.datetime64(time, "ns").astype(np.int64))
    high = [(seed >> s) & 0xFFFFFFFF for s in range(32, seed.bit_length(), 32)]
    words = [seed & 0xFFFFFFFF, (ns >> 32) & 0xFFFFFFFF, ns & 0xFFFFFFFF]
    ss = np.random.SeedSequence(words + high + [len(high)] if high else words)
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


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


def observation_blocks(
    prior: Prior, sources: Sequence[Observations], time: np.datetime64
) -> list[ObsBlock | None]:
    """Each source's observation block at ``time`` (None where it has none): built once per
    (time, source) and shared by the guidance and the diagnostics."""
    return [src.at_time(time, prior) for src in sources]


def denoiser_at(
    prior: Prior,
    sources: Sequence[Observations],
    weights: Sequence[float],
    time: np.datetime64,
    device,
    settings: SamplerSettings,
    network: torch.nn.Module | None = None,
    blocks: Sequence[ObsBlock | None] | None = None,
) -> tuple[torch.nn.Module, list[int]]:
    """The (guided) denoiser at ``time`` with the network options of ``settings`` (or around
    ``network``, the prior denoiser with them, shared by the times of a run), and the number
    of observations each source contributed. ``blocks``: each source's block at ``time``
    (:func:`observation_blocks`), built here if not given."""
    if blocks is None:
        blocks = observation_blocks(prior, sources, time)
    counts = [0 if b is None else b.n_obs for b in blocks]
    used = [(b, w) for b, w in zip(blocks, weights) if b is not None and b.n_obs and w > 0]
    den = network if network is not None else _network(prior, device, settings)
    liks = likelihoods(used, prior, device)
    if settings.guidance != "none" and liks:  # a row of the guidance table
        options = {**settings.as_dict(), "jf_cg_iters": JF_CG_ITERS}
        den = build_guidance(settings.guidance, den, liks, options,
                             lambda: prior.covariance(device))
    return den, counts


def _network(prior: Prior, device, settings: SamplerSettings) -> torch.nn.Module:
    """The prior denoiser on ``device`` with the network options of ``settings``."""
    return with_network_options(prior.denoiser(device), **settings.network_options())


def truncation_of(prior: Prior, settings: SamplerSettings) -> int | None:
    """The zonal truncation of ``settings`` (None: the prior's own, :attr:`Prior.
    zonal_truncation`; 0: none), checked against the prior: a pixel prior on a global grid."""
    n = prior.zonal_truncation if settings.zonal_truncation is None else settings.zonal_truncation
    if not n:
        return None
    if prior.sample_shape != prior.state_shape or not prior.grid.is_global:
        why = ("its samples are latents, not latitude-longitude states"
               if prior.sample_shape != prior.state_shape else "its grid is not global")
        raise ArgumentError(f"zonal_truncation={n!r} band-limits the denoiser's output along "
                            f"full latitude circles; the prior {prior.name!r} cannot take it "
                            f"({why}): use zonal_truncation=0.")
    return int(n)


def projection_of(prior: Prior, settings: SamplerSettings) -> ZonalFilter | None:
    """The projection of the sampler's denoised states (:func:`truncation_of`), or None."""
    n = truncation_of(prior, settings)
    return ZonalFilter(np.asarray(prior.grid.lat), n) if n else None


def churn_of(prior: Prior, settings: SamplerSettings) -> float:
    """The stochastic churn of ``settings`` (None: the prior's own, :attr:`Prior.S_churn`)."""
    return float(prior.S_churn if settings.S_churn is None else settings.S_churn)


def _sigmas(prior: Prior, settings: SamplerSettings) -> torch.Tensor:
    return karras_sigmas(
        settings.steps,
        sigma_min=settings.sigma_min or prior.sigma_min,
        sigma_max=settings.sigma_max or prior.sigma_max,
    )


def batch_size_for(den, prior: Prior, device, settings: SamplerSettings,
                   rows: int | None = None) -> int:
    """Rows (members, of one time or of several) per network batch.

    ``rows`` is the most worth batching: the members of one time (the default) or, in a run of
    several times, the members of all of them. ``batch_size``, if given, caps it, and is lowered
    to what fits ``max_memory`` on a CUDA device (probed at batch 1 and 2, extrapolated
    linearly). ``batch_size=None`` is automatic: on other devices than CUDA (the CPU, where
    large guided batches are slower per member)
    :func:`~xdiffsr.core.memory.host_batch_size`; on CUDA the members of one time, or with
    several times as many rows as fit ``max_memory`` (``"auto"`` if unset: filling batches
    across times must know the memory it may use).
    """
    members = settings.members
    rows = members if rows is None else max(int(rows), members)
    device = torch.device(device)
    max_memory = settings.max_memory
    if settings.batch_size is None and device.type != "cuda":
        cap = host_batch_size(rows, guided=isinstance(den, Guidance))
    elif settings.batch_size is None:
        cap = rows if (max_memory is not None or rows > members) else members
        max_memory = "auto" if max_memory is None and rows > members else max_memory
    else:
        cap = min(rows, settings.batch_size)
    if max_memory is None:
        return cap
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
    sigma = _probe_sigma(den, _sigmas(prior, settings))
    return fit_batch_size(cuda_peak_probe(den, prior.sample_shape, device, sigma), budget, cap)


def _probe_sigma(den, sigmas: torch.Tensor) -> float:
    """The noise level the memory probe runs at: the guidance's
    (:meth:`~xdiffsr.core.guidance.base.Guidance.probe_sigma`), else the first."""
    return den.probe_sigma(sigmas) if isinstance(den, Guidance) else float(sigmas[0])


def draw_members(
    den,
    prior: Prior,
    time: np.datetime64 | Sequence[np.datetime64],
    device,
    settings: SamplerSettings,
    batch: int,
    callback: Callable | None = None,
) -> np.ndarray:
    """Normalised members (rows, *prior.sample_shape), float64, sampled ``batch`` rows at a
    time (a latent prior's members are latents: :meth:`Prior.to_state` decodes them).

    ``time`` is one time (rows are its members) or several (rows are the members of the first
    time, then of the second, ...: ``den`` a :func:`~xdiffsr.core.likelihood.batch_guidances`
    over them, one batch of all the rows). Every member keeps its own generator, so its draw
    does not depend on the batch it is in.
    """
    members = settings.members
    times = [time] if np.ndim(time) == 0 else list(time)
    gens = [g for t in times for g in _member_generators(settings.seed, t, members, device)]
    if len(times) > 1 and batch < len(gens):
        raise ArgumentError(f"{len(times)} times of {members} members need one batch of "
                            f"{len(gens)} rows, got batch={batch}.")
    sigmas = _sigmas(prior, settings)
    project = projection_of(prior, settings)
    out = np.empty((len(gens), *prior.sample_shape), dtype=np.float64)
    for b0 in range(0, len(gens), batch):
        g = gens[b0 : b0 + batch]
        rows = slice(b0, b0 + len(g))
        latents = randn((len(g), *prior.sample_shape), g, device)
        cb = None if callback is None else (lambda d, rows=rows: callback({**d, "members": rows}))
        with torch.no_grad():
            x = heun_sampler(
                den,
                latents,
                sigmas,
                S_churn=churn_of(prior, settings),
                S_tmin=settings.S_tmin,
                S_tmax=settings.S_tmax,
                S_noise=settings.S_noise,
                corrector_guidance=settings.corrector_guidance,
                generator=g,
                callback=cb,
                project=project,
            )
        out[rows] = x.double().cpu().numpy()
    return out


def sample_time(
    prior: Prior,
    sources: Sequence[Observations],
    weights: Sequence[float],
    time: np.datetime64,
    *,
    device,
    settings: SamplerSettings | None = None,
    callback: Callable | None = None,
    **sampler_options: Any,
) -> tuple[np.ndarray, list[int]]:
    """Posterior members at one time, shape (members, C, H, W) in physical units, and the number
    of observations each source contributed.

    The sampler settings are ``settings`` updated with ``sampler_options`` (any field of
    :class:`SamplerSettings`, validated by :meth:`SamplerSettings.from_options`). Members are
    drawn ``batch_size`` at a time (fitted to ``max_memory`` on CUDA; automatic if None, see
    :func:`batch_size_for`); each has its own
    generator (:func:`member_seeds`), so the members do not depend on the batching. The
    callback (of :func:`xdiffsr.core.sampler.heun_sampler`) is called after every step; its
    dict gains ``"members"``, the slice of members of the current batch.
    """
    settings = SamplerSettings.from_options(settings, **sampler_options)
    den, counts = denoiser_at(prior, sources, weights, time, device, settings)
    batch = batch_size_for(den, prior, device, settings)
    x = draw_members(den, prior, time, device, settings, batch, callback)
    return prior.to_state(x, device), counts


def steps_per_time(prior: Prior, settings: SamplerSettings) -> int:
    """Sampler steps (callback calls) of one batch of members at one time."""
    return int(_sigmas(prior, settings).numel()) - 1


def _warn_missing(t, counts: Sequence[int], srcs: Sequence[Observations], n_sources: int) -> None:
    if sum(counts) == 0 and n_sources:
        warnings.warn(
            f"no observations at {t}: members are prior samples.", XDiffSRWarning, stacklevel=3
        )
    for s, n in zip(srcs, counts):
        if n == 0 and n_sources > 1:
            warnings.warn(
                f"source {s.describe()} has no observation at {t}; that time "
                "runs with the other sources.",
                XDiffSRWarning,
                stacklevel=3,
            )


def run_times(
    prior: Prior,
    srcs: Sequence[Observations],
    weights: Sequence[float],
    times: np.ndarray,
    *,
    device,
    settings: SamplerSettings,
    ilat: np.ndarray | None = None,
    ilon: np.ndarray | None = None,
    n_sources: int | None = None,
    progress: Callable[[float], Any] | None = None,
    blocks: Sequence[Sequence[ObsBlock | None]] | None = None,
) -> np.ndarray:
    """Members at each of ``times``: float32 array (time, member, C, H, W) on the output grid
    (model grid permuted by ``ilat``, ``ilon``; the model grid if they are None). Warns about
    times without observations (``n_sources``: the sources of the whole run, default
    ``len(srcs)``). ``blocks[k]``: the sources' blocks at ``times[k]``
    (:func:`observation_blocks`), built here if not given.

    By default each batch holds members of one time, so the members of a time do not depend
    on the other times of the run (bit for bit, however a year run is chunked). With
    ``settings.batch_times`` batches are filled across times as well as members: when a batch
    holds more rows than there are members (:func:`batch_size_for` over all the rows of the run),
    consecutive times of the same kind of denoiser share one network batch, each row guided by
    its own time's observations (:func:`~xdiffsr.core.likelihood.batch_guidances`); members
    are the same as sampled time by time (each has its own generator; float rounding of other
    batch shapes aside).

    ``progress``, if given, is called after every sampler step with the number of times' steps
    it completes (1 when a batch is the members of one time; ``batch / members`` or several
    times otherwise), so that the calls of a time add up to :func:`steps_per_time` (e.g. a
    tqdm bar's ``update``).
    """
    members = settings.members
    out = np.empty((len(times), members, *prior.state_shape), dtype=np.float32)
    batches: dict[str, int] = {}  # rows per batch, fitted once per kind of denoiser
    pending: list[tuple[int, np.datetime64, Any, list[int]]] = []  # times of one batch

    def flush() -> None:
        ks, ts, dens, counts = zip(*pending)
        kind = type(dens[0]).__name__
        cb = None if progress is None else _step_counter(progress, members)
        if len(ts) == 1:
            x = draw_members(dens[0], prior, ts[0], device, settings, batches[kind], cb)
        else:
            den = batch_guidances(dens, [members] * len(ts))
            x = draw_members(den, prior, ts, device, settings, len(ts) * members, cb)
        x = prior.to_state(x, device).reshape(len(ts), members, *prior.state_shape)
        for k, t, c, xk in zip(ks, ts, counts, x):
            _warn_missing(t, c, srcs, n_sources)
            out[k] = xk if ilat is None else xk[:, :, ilat][:, :, :, ilon]
        pending.clear()

    n_sources = len(srcs) if n_sources is None else n_sources
    network = _network(prior, device, settings)
    for k, t in enumerate(times):
        den, counts = denoiser_at(prior, srcs, weights, t, device, settings, network,
                                  None if blocks is None else blocks[k])
        kind = type(den).__name__
        if kind not in batches:
            rows = members * len(times) if settings.batch_times else members
            batches[kind] = batch_size_for(den, prior, device, settings, rows)
        per_batch = max(1, batches[kind] // members)  # times per batch
        if pending and (type(pending[0][2]).__name__ != kind or len(pending) >= per_batch):
            flush()
        pending.append((k, t, den, counts))
    if pending:
        flush()
    return out


def _step_counter(progress: Callable[[float], Any], members: int) -> Callable[[dict], None]:
    def step(info: dict) -> None:
        rows = info["members"]
        n = rows.stop - rows.start
        progress(1 if n == members else n / members)

    return step
