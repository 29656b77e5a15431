"""Integrity of year runs: what the observations are, what was written, who is writing.

* :func:`sources_content`: a fingerprint of the observation sources' content (data values,
  error variances, Gamma, method, tolerance, weight) for the run record, so that a store is
  never resumed with other observations;
* :func:`block_sha256`: the per-time checksums written with the completion marks and verified
  on resume;
* :class:`StoreLock`: a lock file in the store, created exclusively, so that two writers cannot
  interleave.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xdiffsr.errors import ArgumentError, StoreLockedError

LOCK = "xdiffsr.lock"  #: lock file inside a path or URL store, holding the writing run's id
_HASH_ROWS = 64  #: rows (first axis) per hashed block of observation arrays


def block_sha256(data: np.ndarray) -> np.ndarray:
    """The checksums of a block (time, member, C, H, W): per time, the sha256 of the float32
    bytes of each variable's (member, H, W) field in variable order, as 4 little-endian uint64."""
    out = np.empty((data.shape[0], 4), np.uint64)
    for t in range(data.shape[0]):
        h = hashlib.sha256()
        for c in range(data.shape[2]):
            h.update(np.ascontiguousarray(data[t, :, c], np.float32).tobytes())
        out[t] = np.frombuffer(h.digest(), "<u8")
    return out


def _json_value(x) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _json_value(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if x is None or isinstance(x, str | bool):
        return x
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def _array_bytes(block: np.ndarray) -> bytes:
    block = np.asarray(block)
    if block.dtype.kind == "M":
        block = block.astype("datetime64[ns]")
    if block.dtype.kind in "OUS":
        return "\x00".join(map(str, block.ravel())).encode()
    return np.ascontiguousarray(block).tobytes()


def _block_digest(block: np.ndarray) -> str:
    return hashlib.sha256(_array_bytes(block)).hexdigest()


def _variable_digests(var: xr.Variable) -> list:
    """Digests of ``var`` in blocks of :data:`_HASH_ROWS` rows (the same for any dask chunking):
    strings for in-memory data, ``dask.delayed`` digests for lazy data (read where they run)."""
    data = var.data
    if data.ndim == 0 or data.shape[0] == 0:
        return [_block_digest(np.asarray(var.values))]
    if var.chunks is None:
        arr = np.asarray(data)
        return [_block_digest(arr[i : i + _HASH_ROWS]) for i in range(0, len(arr), _HASH_ROWS)]
    import dask

    canon = data.rechunk({0: _HASH_ROWS, **{k: -1 for k in range(1, data.ndim)}})
    return [dask.delayed(_block_digest)(b) for b in canon.to_delayed().ravel()]


def _data_parts(data) -> list:
    """Everything that identifies the content of a source's data, lazily where it is lazy."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        rows = pd.util.hash_pandas_object(data, index=False).to_numpy()
        return [list(map(str, data.columns)), list(map(str, data.dtypes)), _block_digest(rows)]
    if isinstance(data, xr.DataArray):
        data = data.to_dataset(name=str(data.name))
    if isinstance(data, xr.Dataset):
        parts: list = []
        for name in sorted(map(str, data.variables)):
            var = data.variables[name]
            parts += [name, list(var.dims), list(var.shape), str(var.dtype)]
            parts += _variable_digests(var)
        return parts
    return [type(data).__name__, _block_digest(np.asarray(data))]


def sources_content(sources: Sequence[Any], client=None) -> list[dict[str, Any]]:
    """Per source: what changes its numbers (error variances, Gamma, method, tolerance, weight)
    and the sha256 of its data values. Lazy data are hashed blockwise by dask (on ``client``
    when given), without loading them on the client."""
    import dask

    parts = [_data_parts(s.data) for s in sources]
    lazy = [
        (i, j) for i, p in enumerate(parts) for j, x in enumerate(p)
        if dask.is_dask_collection(x)
    ]
    if lazy:
        todo = [parts[i][j] for i, j in lazy]
        done = client.gather(client.compute(todo)) if client is not None else dask.compute(*todo)
        for (i, j), digest in zip(lazy, done, strict=True):
            parts[i][j] = digest
    out = []
    for s, p in zip(sources, parts, strict=True):
        op = getattr(s, "operator", None)
        out.append({
            "type": type(s).__name__,
            "sigma_y": _json_value(s.sigma_y),
            "gamma": _json_value(s.gamma),
            "method": s.method,
            "tolerance": None if s.tolerance is None else str(s.tolerance),
            "weight": _json_value(s.weight),
            "operator": None if not callable(op) else getattr(op, "__qualname__", repr(op)),
            "data_sha256": hashlib.sha256(json.dumps(p).encode()).hexdigest(),
        })
    return out


class StoreLock:
    """The store's lock file (path and URL stores; a zarr store object is not locked).

    :meth:`held` creates the store if needed (or replaces it with ``overwrite``), takes the lock
    with an exclusive create (fsspec mode ``"xb"``) holding a run id, and removes it on exit if
    it still holds that id, after success and on error alike.
    """

    def __init__(self, store, storage_options, exists: Callable[[Any, Any], bool]):
        self.store, self.storage_options, self._exists = store, storage_options, exists
        self.run_id = uuid.uuid4().hex
        self.created = False
        self.fs = self.path = None
        if isinstance(store, str | os.PathLike):
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(os.fspath(store), **(storage_options or {}))
            if self.fs.isfile(root):
                raise ArgumentError(
                    f"store={os.fspath(store)!r} is an existing regular file, not a zarr store; "
                    "pass the path of a new or existing zarr store (a directory), or remove "
                    "the file."
                )
            self.path = root.rstrip("/") + "/" + LOCK

    def _take(self, exclusive: bool) -> None:
        info = json.dumps({"run": self.run_id, "pid": os.getpid(), "host": os.uname().nodename})
        if not exclusive:
            self.fs.pipe_file(self.path, info.encode())
            return
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(info.encode())
        except FileExistsError:
            try:
                holder = self.fs.cat_file(self.path).decode()
            except (OSError, UnicodeDecodeError):
                holder = "unreadable"
            raise StoreLockedError(
                f"store={os.fspath(self.store)!r} is locked by another reconstruct_to_zarr run "
                f"({holder}); two writers on one store would interleave. Wait for that run to "
                "end; if it is dead (a stale lock left by a killed process), rerun with "
                f"force_unlock=True, or delete {self.path!r}."
            ) from None

    def _holds(self) -> bool:
        try:
            return json.loads(self.fs.cat_file(self.path))["run"] == self.run_id
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @contextlib.contextmanager
    def held(self, force: bool, overwrite: bool, create: Callable[[bool], None]):
        """Create (if missing, or ``overwrite``) and lock the store for the ``with`` block."""
        if self.fs is None:
            self.created = overwrite or not self._exists(self.store, self.storage_options)
            if self.created:
                create(overwrite)
            yield
            return
        if force and self.fs.exists(self.path):
            self.fs.rm_file(self.path)
        if overwrite:
            self._take(exclusive=True)  # a live run's lock is respected: overwrite needs it too
            create(True)  # mode "w" removes everything, the lock included
            self._take(exclusive=False)
            self.created = True
        else:
            if not self._exists(self.store, self.storage_options):
                try:
                    create(False)
                    self.created = True
                except FileExistsError:  # another writer created it just now
                    pass
            self._take(exclusive=True)
        try:
            yield
        finally:
            if self._holds():
                self.fs.rm_file(self.path)
