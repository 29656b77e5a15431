"""Integrity of year runs: what the observations are, what was written, who is writing.

* :func:`sources_content`: a fingerprint of the observation sources' content (data values,
  error variances, Gamma, method, tolerance, weight) for the run record, so that a store is
  never resumed with other observations;
* :func:`block_sha256`: the per-time checksums written with the completion marks and verified
  on resume;
* :class:`StoreLock`: a lock file beside the store (``<store>.xdiffsr-lock``), created
  exclusively before anything is written, that names its holder and carries a heartbeat, so
  that two writers cannot interleave and a crashed run's lock does not block the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xdiffsr.errors import ArgumentError, StoreLockedError, XDiffSRWarning

LOCK_SUFFIX = ".xdiffsr-lock"  #: the lock file is the store's path with this suffix (a sibling)
LOCK = "xdiffsr.lock"  #: the lock file inside the store of xdiffsr before issue 26 (honoured)
LOCK_HEARTBEAT_S = 30.0  #: seconds between refreshes of a held lock's heartbeat
LOCK_STALE_S = 600.0  #: a lock of another host whose heartbeat is older than this is stale
LOCK_SETTLE_S = 0.2  #: seconds before a new lock is read back on other than local file systems
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


def _boot_id() -> str | None:
    """This machine's boot id (Linux), so that a host name reused by another machine, or a
    reboot, is not taken for the same running system."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """An identity of the running process ``pid``: its start time in clock ticks on Linux
    (a reused pid has another), ``""`` where unknown; None if no such process runs (a zombie,
    killed but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def _utc(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(t)))


class StoreLock:
    """The lock of a path, URL or fsspec-mapper store (a zarr store object is not locked).

    The lock file is a sibling of the store, ``<store>`` + :data:`LOCK_SUFFIX` (outside the zarr
    hierarchy: opening the store never sees it). It is created exclusively (fsspec mode
    ``"xb"``) before anything is written, then read back to verify it holds this run's id (on
    object stores after :data:`LOCK_SETTLE_S`). It names its holder: run id, host, boot id,
    process id and start, and a heartbeat time that a thread refreshes every
    :data:`LOCK_HEARTBEAT_S` seconds while the run holds it.

    A lock found in place is taken over, with an :class:`~xdiffsr.errors.XDiffSRWarning` naming
    the old run, when its holder is gone: on this host (same host name and boot id) when its
    process no longer runs; on another host when its heartbeat is older than
    :data:`LOCK_STALE_S` seconds (clocks are assumed to agree to well within it). Any other lock
    (a live holder, or a lock without holder information) raises
    :class:`~xdiffsr.errors.StoreLockedError` naming the holder. The lock file of xdiffsr
    before issue 26 (:data:`LOCK` inside the store) is refused the same way.
    """

    def __init__(
        self,
        store: Any,
        storage_options: Mapping[str, Any] | None,
        exists: Callable[[Any, Any], bool],
    ):
        self.store, self.storage_options, self._exists = store, storage_options, exists
        self.run_id = uuid.uuid4().hex
        self.created = False
        self.lost: dict | None = None  # the holder that took the lock over, if one did
        self.fs = self.path = self.legacy = None
        self._local = False
        self._stop = threading.Event()
        self._started = time.time()
        root = None
        if isinstance(store, str | os.PathLike):
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(os.fspath(store), **(storage_options or {}))
            if self.fs.isfile(root):
                raise ArgumentError(
                    f"store={os.fspath(store)!r} is an existing regular file, not a zarr store; "
                    "pass the path of a new or existing zarr store (a directory), or remove "
                    "the file."
                )
        elif hasattr(store, "fs") and isinstance(getattr(store, "root", None), str):
            self.fs, root = store.fs, store.root  # an fsspec mapper
        if root is not None:
            root = root.rstrip("/")
            self.path, self.legacy = root + LOCK_SUFFIX, root + "/" + LOCK
            self._local = "file" in self.fs.protocol or "local" in self.fs.protocol

    @property
    def name(self) -> str:
        """The store as the messages name it."""
        return os.fspath(self.store) if isinstance(self.store, str | os.PathLike) else repr(
            self.store
        )

    def _info(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "host": socket.gethostname(),
            "boot": _boot_id(),
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "started": self._started,
            "heartbeat": time.time(),
        }

    def _create_exclusive(self, content: bytes) -> bool:
        if self._local:
            self.fs.makedirs(self.path.rsplit("/", 1)[0] or "/", exist_ok=True)
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(content)
        except FileExistsError:
            return False
        return True

    def _read(self) -> tuple[bytes | None, dict | None]:
        """The lock file's bytes (None if there is none) and its holder (None if unreadable,
        after retrying for a second: a lock being written is empty for a moment)."""
        raw = b""
        for _ in range(20):
            try:
                raw = self.fs.cat_file(self.path)
            except FileNotFoundError:
                return None, None
            try:
                holder = json.loads(raw)
                return raw, holder if isinstance(holder, dict) else None
            except (ValueError, UnicodeDecodeError):
                time.sleep(0.05)
        return raw, None

    def _holds(self) -> bool:
        try:
            return self._read()[1]["run"] == self.run_id
        except (OSError, KeyError, TypeError):
            return False

    def _describe(self, holder: dict | None, raw: bytes | None) -> str:
        if not holder:
            return f"lock content {raw!r}"
        parts = [f"run {holder.get('run')!r}"]
        try:
            if "pid" in holder and "host" in holder:
                parts.append(f"process {holder['pid']} on host {holder['host']!r}")
            if "started" in holder:
                parts.append(f"started {_utc(holder['started'])}")
            if "heartbeat" in holder:
                parts.append(f"heartbeat {time.time() - float(holder['heartbeat']):.0f} s ago")
        except (TypeError, ValueError, OverflowError):
            parts.append(f"lock content {raw!r}")
        return ", ".join(parts)

    def _gone(self, holder: dict | None) -> str | None:
        """Why the holder of ``holder`` is gone, or None if it may be alive."""
        try:
            pid, host, beat = int(holder["pid"]), holder["host"], float(holder["heartbeat"])
        except (TypeError, KeyError, ValueError):
            return None  # no holder information: only force_unlock breaks it
        if host == socket.gethostname() and holder.get("boot") == _boot_id():
            start = _process_start(pid)
            if start is None:
                return f"its process {pid} no longer runs on this host ({host})"
            if start and holder.get("pid_start") and start != holder["pid_start"]:
                return f"its process {pid} ended (the pid now belongs to another process)"
            return None
        age = time.time() - beat
        if age > LOCK_STALE_S:
            return (
                f"its heartbeat is {age:.0f} s old, more than LOCK_STALE_S = {LOCK_STALE_S:g} s "
                "(xdiffsr.reconstruct.integrity)"
            )
        return None

    def _locked(self, holder: dict | None, raw: bytes | None, why: str = "") -> StoreLockedError:
        return StoreLockedError(
            f"store={self.name!r} is locked by another reconstruct_to_zarr run "
            f"({self._describe(holder, raw)}){why}; two writers on one store would interleave. "
            "Wait for that run to end, then rerun the same call (it resumes the store, or finds "
            "it complete). A lock is taken over by itself once its process is gone (same host) "
            f"or its heartbeat is older than {LOCK_STALE_S:g} s (another host); if that run is "
            f"dead, rerun with force_unlock=True, or delete {self.path!r}."
        )

    def _break(self, raw: bytes) -> None:
        """Remove the stale lock ``raw``: moved to a name of this run's (one mover wins on a
        local file system), and put back if it turns out to be a newer, live lock."""
        claim = f"{self.path}.{self.run_id}"
        try:
            self.fs.mv(self.path, claim)
        except FileNotFoundError:
            return  # another run removed it first
        moved = self.fs.cat_file(claim)
        if moved != raw:  # someone took the lock between our read and the move
            self._create_exclusive(moved)
        self.fs.rm_file(claim)

    def _acquire(self) -> None:
        """Take the lock (exclusive create, then verify), taking over a dead holder's."""
        for _ in range(5):
            if self._create_exclusive(json.dumps(self._info()).encode()):
                if not self._local:
                    time.sleep(LOCK_SETTLE_S)
                raw, holder = self._read()
                if holder is not None and holder.get("run") == self.run_id:
                    return
                raise self._locked(holder, raw, ", which took the lock at the same moment")
            raw, holder = self._read()
            if raw is None:
                continue  # released in the meantime
            why = self._gone(holder)
            if why is None:
                raise self._locked(holder, raw)
            warnings.warn(
                f"store={self.name!r}: taking over the lock of another reconstruct_to_zarr "
                f"run ({self._describe(holder, raw)}): {why}. The store is resumed: its "
                "complete chunks are verified, the others redone.",
                XDiffSRWarning,
                stacklevel=5,
            )
            self._break(raw)
        raw, holder = self._read()
        raise self._locked(holder, raw, ", contested by several runs")

    def _beat(self) -> None:
        """Refresh the heartbeat until stopped; note a takeover in :attr:`lost`."""
        tmp = f"{self.path}.{self.run_id}.beat"
        while not self._stop.wait(LOCK_HEARTBEAT_S):
            try:
                raw, holder = self._read()
                if holder is None or holder.get("run") != self.run_id:
                    gone = "none: the lock file was removed" if raw is None else repr(raw)
                    self.lost = holder or {"run": gone}
                    return
                self.fs.pipe_file(tmp, json.dumps(self._info()).encode())
                self.fs.mv(tmp, self.path)  # a rename on local file systems: never half-written
            except OSError:
                continue  # a transient error of the file system: the next beat retries

    def check(self) -> None:
        """Raise if another run has taken this run's lock over (its heartbeat was stale).

        Raises
        ------
        StoreLockedError
            Naming the run that holds the lock now.
        """
        if self.lost is not None:
            raise StoreLockedError(
                f"store={self.name!r}: this run's lock was taken over by another run "
                f"({self._describe(self.lost, None)}), which judged it stale (no heartbeat for "
                f"{LOCK_STALE_S:g} s: was this process suspended?); this run stops. Let the "
                "other run finish, then rerun the call to verify the store."
            )

    def _unlock(self) -> None:
        for path in (self.path, self.legacy):
            if self.fs.exists(path):
                self.fs.rm_file(path)

    def _refuse_legacy(self) -> None:
        if self.fs.exists(self.legacy):
            raw = self.fs.cat_file(self.legacy)
            raise StoreLockedError(
                f"store={self.name!r} holds the lock file of an earlier xdiffsr version "
                f"({self.legacy!r}: {raw!r}), left by a run that is still writing or was "
                "killed; wait for that run to end, or if it is dead rerun with "
                f"force_unlock=True, or delete {self.legacy!r}."
            )

    @contextlib.contextmanager
    def held(
        self, force: bool, overwrite: bool, create: Callable[[bool], None]
    ) -> Iterator[None]:
        """Lock the store for the ``with`` block, then create it if missing (or replace it
        with ``overwrite``); the lock is released on exit, after success and on error alike.

        ``force`` removes any lock first (``force_unlock``). Locks whose holder is gone are
        taken over with a warning; live ones raise :class:`StoreLockedError`.
        """
        if self.fs is None:
            self.created = overwrite or not self._exists(self.store, self.storage_options)
            if self.created:
                create(overwrite)
            yield
            return
        if force:
            self._unlock()
        self._refuse_legacy()
        self._acquire()
        beat = threading.Thread(target=self._beat, name="xdiffsr-lock-heartbeat", daemon=True)
        beat.start()
        try:
            self.created = overwrite or not self._exists(self.store, self.storage_options)
            if self.created:
                create(overwrite)
            yield
        finally:
            self._stop.set()
            beat.join()
            if self._holds():
                self.fs.rm_file(self.path)
