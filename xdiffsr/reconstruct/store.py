"""Reconstructions at scale: per-worker model caching and resumable streaming to zarr.

A year of 6-hourly states is a few hundred independent time chunks. Each chunk is one task that

1. resolves the model from a light handle (:class:`ModelRef`: a file's path, registry name and
   sha256) through a per-process cache, so the weights are read once per worker process and never
   travel in the task graph;
2. runs on the worker's own device (:func:`worker_device`: ``cuda:{local index}`` when CUDA is
   present, else the CPU);
3. sees only the observations of its time window (sliced on the client; lazily opened zarr inputs
   stay lazy and are read by the worker);
4. in :func:`reconstruct_to_zarr`, writes its block into the store with ``region=``, then the
   sha256 of each time's block (``xdiffsr_sha256``) and last marks its times complete in the
   ``xdiffsr_done`` array. A rerun verifies the marked chunks against their checksums, skips the
   good ones and redoes the others, so an interrupted or crashed run resumes without rewriting
   anything and a deleted or corrupted chunk is recomputed.

The run record (``xdiffsr_run``) holds the model, grid, sampler settings and a fingerprint of the
observations' content (values, errors, Gamma, method, tolerance, weight): resuming with anything
that changes the numbers is refused. A lock file beside the store (``<store>.xdiffsr-lock``,
:class:`~xdiffsr.reconstruct.integrity.StoreLock`), taken before anything is written, keeps a
second writer out while a run is going; a crashed run's lock is taken over by the next run.

The members of a time depend only on (seed, timestamp) (:func:`xdiffsr.reconstruct.member_seed`),
and each member on its own index (:func:`xdiffsr.reconstruct.member_seeds`), so the store is
identical for any chunk size, worker count or completion order (each batch holds the members of
one time unless ``batch_times=True``), and agrees to float rounding for any member batch size
(on one device type: CPU and CUDA random streams differ).

References
----------
.. [1] Dask distributed: futures, ``retries`` and ``as_completed``.
       https://distributed.dask.org/en/stable/futures.html
.. [2] xarray, writing to a region of a zarr store.
       https://docs.xarray.dev/en/stable/user-guide/io.html#appending-to-existing-zarr-stores
.. [3] Chakraborty et al. (2025), Multimodal atmospheric super-resolution with deep generative
       models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from xdiffsr.errors import ArgumentError, XDiffSRWarning
from xdiffsr.models.prior import Prior
from xdiffsr.models.reference import ModelRef, model_handle, model_ref
from xdiffsr.progress import progress_bar
from xdiffsr.reconstruct.integrity import (
    StoreLock,
    StoreLockedError,
    block_sha256,
    sources_content,
)
from xdiffsr.reconstruct.plan import Plan, check_output_memory, time_chunks
from xdiffsr.reconstruct.reconstruction import Reconstruction
from xdiffsr.reconstruct.settings import SamplerSettings
from xdiffsr.reconstruct.tasks import ChunkArgs, compute_chunk

__all__ = ["DONE", "SHA", "StoreLockedError", "reconstruct_to_zarr", "write_chunk"]

DONE = "xdiffsr_done"  #: uint8 per time, 1 once the time's chunk is written (written last)


RUN_ATTR = "xdiffsr_run"  #: JSON of the settings a store was created with
SHA = "xdiffsr_sha256"  #: uint64 (time, 4): sha256 of each time's float32 block, all variables
SHA_DIM = "xdiffsr_sha256_word"


@dataclass(frozen=True)
class _Target:
    store: Any
    storage_options: Mapping[str, Any] | None
    tname: str
    variables: tuple[str, ...]
    dims: tuple[str, str, str, str]  # (time, member, lat, lon) under the caller's names


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    return ctx


def _write_region(target: _Target, ds: xr.Dataset, i0: int, i1: int) -> None:
    ctx = _quiet()
    try:
        ds.to_zarr(
            target.store,
            region={target.tname: slice(i0, i1)},
            mode="r+",
            consolidated=False,
            storage_options=target.storage_options,
        )
    finally:
        ctx.__exit__(None, None, None)


def write_chunk(handle, args: ChunkArgs, target: _Target, i0: int, retries: int = 0) -> int:
    """Compute a chunk, write it into its region, then set its completion marks (last)."""
    for attempt in range(retries + 1):
        try:
            data = compute_chunk(handle, args)
            break
        except Exception:
            if attempt == retries:
                raise
    i1 = i0 + data.shape[0]
    dims = target.dims
    block = xr.Dataset({v: (dims, data[:, :, c]) for c, v in enumerate(target.variables)})
    _write_region(target, block, i0, i1)
    sha = xr.Dataset({SHA: ((target.tname, SHA_DIM), block_sha256(data))})
    _write_region(target, sha, i0, i1)
    _write_region(target, xr.Dataset({DONE: (target.tname, np.ones(i1 - i0, np.uint8))}), i0, i1)
    return i0


def _chunk_intact(target: _Target, i0: int, i1: int) -> bool:
    """Whether the stored block of times ``i0:i1`` matches the checksums written with it."""
    ds = _open(target.store, target.storage_options, consolidated=None, mask_and_scale=False)
    sel = {target.tname: slice(i0, i1)}
    data = np.stack([ds[v].isel(sel).values for v in target.variables], axis=2)
    return bool(np.array_equal(ds[SHA].isel(sel).values.astype(np.uint64), block_sha256(data)))


def _open(store, storage_options, **kw) -> xr.Dataset:
    ctx = _quiet()
    try:
        return xr.open_zarr(store, storage_options=storage_options, **kw)
    finally:
        ctx.__exit__(None, None, None)


def _store_exists(store, storage_options) -> bool:
    try:
        _open(store, storage_options, consolidated=None)
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return False
    except Exception as err:  # zarr's own "nothing here" errors
        if "not found" in str(err).lower() or "nothing" in str(err).lower():
            return False
        raise
    return True


def _grid_hash(lat, lon) -> str:
    h = hashlib.sha1(np.asarray(lat, np.float64).tobytes())
    h.update(np.asarray(lon, np.float64).tobytes())
    return h.hexdigest()


def _run_record(plan: Plan, prior: Prior, n_chunk: int, client=None) -> dict[str, Any]:
    return {
        "model": prior.fingerprint(),
        "model_name": prior.describe(),
        "variables": list(prior.variables),
        "grid": _grid_hash(plan.grid.lat, plan.grid.lon),
        # speed-only settings (batch size, memory budget, compile...) may change on resume
        "settings": plan.settings.record(),
        "weights": [float(x) for x in plan.weights],
        "sources": [s.describe() for s in plan.sources],
        "source_content": sources_content(plan.sources, client),
        "chunk": int(n_chunk),
    }


def _check_existing(existing: xr.Dataset, record: dict, plan: Plan, store) -> None:
    raw = existing.attrs.get(RUN_ATTR)
    if raw is None or DONE not in existing:
        raise ArgumentError(
            f"store={store!r} exists but was not created by xdiffsr.reconstruct_to_zarr; pass a "
            "new store, or overwrite=True to replace it."
        )
    old = json.loads(raw)
    # stores written before batch_times existed resume with its default (the same members to
    # float rounding; their remaining chunks become independent of the chunking)
    old.get("settings", {}).setdefault("batch_times", False)
    diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
    if diff:
        detail = "; ".join(f"{k}: store {old.get(k)!r}, now {record.get(k)!r}" for k in diff)
        what = (
            "different observations (values, errors or options: source_content) or settings"
            if "source_content" in diff else "different settings"
        )
        raise ArgumentError(
            f"store={store!r} was written with {what} ({detail}); rerun with the store's "
            "observations and settings to resume it, or pass a new store (or overwrite=True)."
        )
    stored = existing[plan.tname].values if plan.tname in existing else None
    if stored is None or not np.array_equal(stored.astype("datetime64[ns]"), plan.times):
        raise ArgumentError(
            f"store={store!r} holds other times than ds ({len(plan.times)} requested); resume "
            "with the same times, or pass a new store."
        )


def _create(target: _Target, rec: Reconstruction, record, n_chunk: int, overwrite: bool):
    import dask.array as da

    store, storage_options = target.store, target.storage_options

    plan, prior = rec.plan, rec.model
    T = len(plan.times)
    shape = (T, plan.settings.members, *prior.state_shape)
    zeros = da.zeros(shape, chunks=(n_chunk, *shape[1:]), dtype=np.float32)
    # the caller's names, coordinate attributes and history; times stay datetime64 in a store
    tmpl = rec.to_dataset(zeros, caller_times=False)
    tmpl[DONE] = (plan.tname, da.zeros(T, chunks=n_chunk, dtype=np.uint8))
    tmpl[DONE].attrs["long_name"] = "1 once this time's chunk is completely written"
    tmpl[SHA] = ((plan.tname, SHA_DIM), da.zeros((T, 4), chunks=(n_chunk, 4), dtype=np.uint64))
    tmpl[SHA].attrs["long_name"] = "sha256 of each time's float32 block, written before its mark"
    tmpl.attrs[RUN_ATTR] = json.dumps(record, allow_nan=False)
    enc = {v: {"chunks": (n_chunk, *shape[1:2], *shape[3:])} for v in prior.variables}
    enc[DONE] = {"chunks": (n_chunk,)}
    enc[SHA] = {"chunks": (n_chunk, 4)}
    ctx = _quiet()
    try:
        tmpl.to_zarr(
            store,
            mode="w" if overwrite else "w-",
            compute=False,
            consolidated=True,
            encoding=enc,
            storage_options=storage_options,
        )
    finally:
        ctx.__exit__(None, None, None)


def _pending(target: _Target, T: int, n_chunk: int, client=None) -> list[int]:
    """Starts of the chunks to (re)compute: those not marked complete, and those marked whose
    data no longer match their checksums (deleted chunk files, forged marks, corruption): their
    marks are cleared, with a warning naming their times."""
    ds = _open(target.store, target.storage_options, consolidated=None, mask_and_scale=False)
    done = ds[DONE].values
    starts = range(0, T, n_chunk)
    marked = [i0 for i0 in starts if (done[i0 : i0 + n_chunk] == 1).all()]
    bad = []
    if marked:
        import dask

        checks = [
            dask.delayed(_chunk_intact)(target, i0, min(i0 + n_chunk, T)) for i0 in marked
        ]
        ok = client.gather(client.compute(checks)) if client is not None else dask.compute(*checks)
        bad = [i0 for i0, good in zip(marked, ok, strict=True) if not good]
    if bad:
        times = [str(t)[:19] for i0 in bad for t in ds[target.tname].values[i0 : i0 + n_chunk]]
        warnings.warn(
            f"store={target.store!r}: times {times} were marked complete but their data are "
            "missing or not what was written (checksum mismatch); recomputing them.",
            XDiffSRWarning,
            stacklevel=3,
        )
        for i0 in bad:
            i1 = min(i0 + n_chunk, T)
            _write_region(
                target, xr.Dataset({DONE: (target.tname, np.zeros(i1 - i0, np.uint8))}), i0, i1
            )
    return sorted({i0 for i0 in starts if i0 not in marked} | set(bad))


def _default_client():
    import dask

    sched = dask.config.get("scheduler", None)
    if sched not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _progress(total: int, initial: int, enabled: bool):
    return progress_bar(
        total=total,
        initial=initial,
        unit="state",
        desc="xdiffsr",
        disable=not enabled,
        smoothing=0.1,
    )


def reconstruct_to_zarr(
    ds: xr.Dataset,
    obs: Sequence[Any],
    store: Any,
    weights: Sequence[float] | None = None,
    *,
    model: Prior | ModelRef | str | os.PathLike,
    chunks: Mapping[str, int] | int | None = None,
    device: str | torch.device | None = None,
    client: Any = None,
    progress: bool = True,
    retries: int = 2,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    force_unlock: bool = False,
    callback: Callable[[slice], Any] | None = None,
    settings: SamplerSettings | None = None,
    member_dim: str = "member",
    output_grid: str = "ds",
    assume_units: bool = False,
    **sampler_options: Any,
) -> xr.Dataset:
    """Reconstruct every time of ``ds`` into a zarr store, chunk by chunk, resumably.

    The store is created once (metadata, coordinates and provenance, chunked one time chunk per
    zarr chunk); then each pending time chunk is one task that computes its members, writes them
    with ``region=`` and finally sets its marks in the ``xdiffsr_done`` array (uint8 per time).
    Rerunning into the same store skips the chunks whose marks are all set and redoes the others
    (an interrupted write has data but no marks); completed chunks are never rewritten.

    Parameters
    ----------
    ds : xarray.Dataset
        Supplies the times (and optionally the output grid), as in :func:`xdiffsr.super_resolve`.
    obs, weights
        Observation sources and their weights, as in :func:`xdiffsr.super_resolve`. Sources are
        windowed per chunk on the client; lazily opened (dask-backed) datasets stay lazy and each
        task reads only its window.
    store : str, path, or zarr store
        Output: a local path, an fsspec URL (``"s3://..."``, ``"memory://..."``, with
        ``storage_options``) or a zarr store object reachable from the workers.
    model : Prior, ModelRef, str or path
        A registered model name (``"default"``), a model file, or a model from
        :func:`xdiffsr.load_model`: workers load the file once per process (its
        :class:`ModelRef`). An in-memory prior (``GaussianPrior``, an unsaved
        ``DiffusionModel``) is one task of the graph (a graph key) that each worker fetches
        once; if the workers holding it die, the scheduler rebuilds it from the graph.
    chunks : int or dict
        Times per task, ``{"time": n}`` (default: ds's own time chunks, else 1). Fixed by the
        store once created.
    device : str, optional
        ``None`` picks each worker's own GPU (:func:`xdiffsr.reconstruct.worker_device`), else
        the CPU.
    client : distributed.Client, optional
        Cluster to run on (default: the current client if one exists, else dask's configured
        scheduler: threads, processes or sync).
    progress : bool
        tqdm progress bar (notebook widget or terminal) counting written states.
    retries : int
        Times a failing chunk is retried (dask ``retries`` on a cluster; in-task otherwise).
        Workers lost mid-task are handled by the scheduler.
    storage_options : dict, optional
        fsspec options for URL stores.
    overwrite : bool
        Replace an existing store instead of resuming it (not while another run holds its
        lock).
    force_unlock : bool
        Remove the store's lock file first: for a lock that is not taken over by itself (a run
        killed on another host less than ``LOCK_STALE_S`` ago, a lock without holder
        information). Never while another run is still writing.
    callback : callable, optional
        Called on the client after each chunk is written and marked complete, with the slice of
        its time indices in ``ds`` (``slice(i0, i1)``), in completion order. An exception it
        raises stops the run (cancelling the pending chunks); the store can be resumed.
    settings : SamplerSettings, optional
        Sampler settings; ``**sampler_options`` change some of them.
    member_dim, output_grid, assume_units
        As in :func:`xdiffsr.super_resolve`: the store keeps the caller's latitude/longitude
        names and coordinate attributes, names the ensemble dimension ``member_dim`` and
        appends to the caller's ``history``; its times are datetime64.
    **sampler_options
        The sampler options of :func:`xdiffsr.super_resolve` (:class:`SamplerSettings`:
        ``members``, ``steps``, ``seed``, ``guidance``, ...). The speed options ``batch_size``,
        ``max_memory``, ``channels_last``, ``compile`` and ``checkpoint`` may change when a
        store is resumed; ``precision`` may not (bf16 changes the numbers).

    Returns
    -------
    xarray.Dataset
        The store, opened lazily (without the ``xdiffsr_done`` marks and checksums): dims
        (time, member, lat, lon), provenance attributes of :func:`xdiffsr.super_resolve`.

    Warns
    -----
    XDiffSRWarning
        Chunks marked complete whose data do not match their checksums (deleted chunk files,
        forged marks): named by time and recomputed. A lock left by a run that is gone (its
        process no longer runs on this host, or its heartbeat from another host is older than
        :data:`~xdiffsr.reconstruct.integrity.LOCK_STALE_S`): named and taken over.

    Raises
    ------
    StoreLockedError
        Another live run holds the store's lock (the file ``<store>.xdiffsr-lock`` beside a
        path, URL or fsspec-mapper store, holding the run's id, host, process and a heartbeat
        refreshed every :data:`~xdiffsr.reconstruct.integrity.LOCK_HEARTBEAT_S` seconds): two
        writers would interleave. The message names that run and says how to break a lock.
        Also raised mid-run if another run took this run's lock over as stale.
    ArgumentError
        An unknown or invalid sampler option; an existing store written with other settings
        (model, variables, grid, members, steps, seed, sampler options including
        ``precision``, weights, sources, chunk size), other observation values or errors, or
        other times; a store not made by this function; a store path that is a regular file.
    """
    settings = SamplerSettings.from_options(settings, **sampler_options)
    if isinstance(retries, bool) or int(retries) != retries or retries < 0:
        raise ArgumentError(f"retries={retries!r} must be an integer >= 0.")
    lock = StoreLock(store, storage_options, _store_exists)  # refuses a path that is a file
    ref = model_ref(model)  # None for an in-memory prior
    prior = model if isinstance(model, Prior) else ref.resolve("cpu")
    rec = Reconstruction(ds, obs, weights, model=prior, settings=settings, device=device,
                         member_dim=member_dim, output_grid=output_grid, assume_units=assume_units)
    plan = rec.plan
    n_chunk = time_chunks(ds, plan.tname, chunks) or 1
    check_output_memory(plan, prior, n_chunk)
    client = client or _default_client()
    record = _run_record(plan, prior, n_chunk, client)
    dims = (plan.tname, plan.member_dim, plan.grid.lat_name, plan.grid.lon_name)
    target = _Target(store, storage_options, plan.tname, prior.variables, dims)
    T = len(plan.times)
    create = functools.partial(_create, target, rec, record, n_chunk)
    with lock.held(force_unlock, overwrite, create):
        if not lock.created:
            _check_existing(_open(store, storage_options, consolidated=None), record, plan, store)
        todo = _pending(target, T, n_chunk, client)
        if todo:
            job = _Job(target, rec, ref, n_chunk, device, int(retries))
            runner = _run_distributed if client is not None else _run_local
            with _progress(T, T - sum(min(n_chunk, T - i) for i in todo), progress) as bar:

                def finished(i0: int) -> None:
                    lock.check()  # stop if another run took the lock over
                    i1 = min(i0 + n_chunk, T)
                    bar.update(i1 - i0)
                    if callback is not None:
                        callback(slice(i0, i1))

                runner(client, job, todo, finished)
    return _open(store, storage_options, consolidated=None).drop_vars([DONE, SHA])


@dataclass(frozen=True)
class _Job:
    """What the runners need besides the client and the pending chunks."""

    target: _Target
    rec: Reconstruction
    ref: ModelRef | None
    n_chunk: int
    device: Any
    retries: int

    def args(self, i0: int) -> ChunkArgs:
        return self.rec.window(self.rec.times[i0 : i0 + self.n_chunk], self.device)

    @property
    def prior(self) -> Prior:
        return self.rec.model


def _run_distributed(client, job: _Job, todo: list[int], finished: Callable[[int], None]):
    from dask.base import tokenize
    from distributed import as_completed

    handle = job.ref
    run = tokenize(job.target.store, job.rec.settings.as_dict(), list(todo), uuid.uuid4().hex)
    if handle is None:
        # a task holding the prior by value, not scattered data: if every worker holding its
        # result dies, the scheduler recomputes it from the graph instead of losing it
        handle = client.submit(
            _identity, job.prior, key=f"xdiffsr-prior-{run}", pure=False, retries=job.retries
        )
    futures = {}
    for i0 in todo:
        fut = client.submit(
            write_chunk,
            handle,
            job.args(i0),
            job.target,
            i0,
            key=f"xdiffsr-write-{run}-{i0}",
            retries=job.retries,
            pure=False,
        )
        futures[fut] = i0
    try:
        for fut in as_completed(list(futures)):
            fut.result()
            finished(futures[fut])
    finally:
        client.cancel([f for f in futures if not f.done()])


def _identity(x: Any) -> Any:
    return x


def _run_local(client, job: _Job, todo: list[int], finished: Callable[[int], None]):
    import dask
    from dask.callbacks import Callback

    handle = job.ref if job.ref is not None else model_handle(job.prior)
    starts = {}
    tasks = []
    for i0 in todo:
        key = f"xdiffsr-write-{dask.base.tokenize(job.target.store, i0, uuid.uuid4().hex)}"
        starts[key] = i0
        tasks.append(
            dask.delayed(write_chunk, pure=False)(
                handle, job.args(i0), job.target, i0, job.retries, dask_key_name=key
            )
        )

    class _Done(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in starts:
                finished(starts[key])

    with _Done():
        dask.compute(*tasks)
