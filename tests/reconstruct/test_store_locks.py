"""Year runs that survive crashes and concurrent writers (issue 26).

The store's lock lives beside it (``<store>.xdiffsr-lock``), is taken before anything is written,
names its holder and carries a heartbeat. A killed client's lock is taken over by the next run,
which resumes the store; two writers started at once on a new store leave one complete,
verifiable store; opening a store never warns about the lock. Cross-process tests run Python
subprocesses on local paths; the lock logic itself is also tested on fsspec ``memory://``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import dask
import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import xdiffsr
from tests.conftest import tiny_model, tiny_observations
from xdiffsr.reconstruct import integrity
from xdiffsr.reconstruct import store as store_mod

ROOT = Path(__file__).resolve().parents[2]
_BOOT_FILE = Path("/proc/sys/kernel/random/boot_id")
BOOT = _BOOT_FILE.read_text().strip() if _BOOT_FILE.exists() else None  # as the lock records it
TIMES = pd.date_range("2021-01-01", periods=12, freq="6h")
KW = dict(members=2, steps=3, seed=5)  # the default (automatic) batch
N = 3  # times per chunk: 4 chunks

# A client in its own process: waits for a "go" file (so that two start at once), then runs the
# same call as _run below; with "kill" it SIGKILLs itself once two chunks are complete.
CHILD = """
import os, signal, sys, time
from pathlib import Path
import dask, pandas as pd, torch, xarray as xr
import xdiffsr
from tests.conftest import tiny_observations
model, store, mode, ready, go = sys.argv[1:6]
torch.set_num_threads(1)
times = pd.date_range("2021-01-01", periods=12, freq="6h")
done = []
def callback(chunk):
    done.append(chunk.start)
    if mode == "kill" and len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.01)
try:
    with dask.config.set(scheduler="sync"):
        xdiffsr.reconstruct_to_zarr(
            xr.Dataset(coords={"time": times}), tiny_observations(times), store, model=model,
            chunks={"time": 3}, progress=False, callback=callback, members=2, steps=3, seed=5)
except xdiffsr.StoreLockedError as err:
    print("LOCKED", err, flush=True)
    sys.exit(3)
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_model("tiny-locks").save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def serial(model_file):
    model = xdiffsr.load_model(model_file)
    return xr.Dataset(coords={"time": TIMES}).diffsr.super_resolve(
        tiny_observations(TIMES), model=model, **KW
    )


def _run(store, model_file, **kw):
    opts = dict(model=model_file, chunks={"time": N}, progress=False, **KW)
    opts.update(kw)
    return xdiffsr.reconstruct_to_zarr(
        xr.Dataset(coords={"time": TIMES}), tiny_observations(TIMES), store, **opts
    )


def _assert_equal(out, ref):
    for v in ("t850", "z500"):
        np.testing.assert_array_equal(out[v].values, ref[v].values, err_msg=v)


def _lock_file(path: Path) -> Path:
    return path.with_name(path.name + integrity.LOCK_SUFFIX)


def _start_clients(model_file, store: Path, modes: list[str], tmp: Path) -> list:
    """Start one client process per mode; release them together once all are ready."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    go = tmp / f"go-{uuid.uuid4().hex}"
    procs, ready = [], []
    for i, mode in enumerate(modes):
        ready.append(tmp / f"ready-{i}-{uuid.uuid4().hex}")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CHILD, str(model_file), str(store), mode, str(ready[-1]),
             str(go)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    deadline = time.time() + 240
    while not all(r.exists() for r in ready):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "no start"
        time.sleep(0.05)
    go.touch()
    return procs


def _open_without_warnings(store, **kw) -> None:
    """Open the store as a user would (consolidated or not, and zarr's own listing), with every
    warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(store, **kw)
        xr.open_zarr(store, consolidated=False, **kw)
        list(zarr.open_group(store, mode="r", **kw).members())


# ---------------------------------------------------------------------------------------------
# Crashes and concurrent writers, across processes (local stores)


@pytest.mark.slow
def test_killed_client_is_resumed_by_the_same_call(model_file, serial, tmp_path):
    path = tmp_path / "year.zarr"
    (proc,) = _start_clients(model_file, path, ["kill"], tmp_path)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err
    holder = json.loads(_lock_file(path).read_text())  # the dead client's lock is left ...
    assert holder["pid"] == proc.pid and holder["host"] == socket.gethostname()
    assert not (path / integrity.LOCK).exists()  # ... beside the store, not in it
    done = xr.open_zarr(path, mask_and_scale=False)[store_mod.DONE].values
    assert done.sum() == 2 * N
    _open_without_warnings(str(path))
    redone = []
    with pytest.warns(xdiffsr.XDiffSRWarning, match=f"taking over the lock.*{holder['run']}"):
        out = _run(str(path), model_file, callback=lambda c: redone.append(c.start))
    assert sorted(redone) == [i for i in range(0, 12, N) if not done[i]]  # resumed
    _assert_equal(out, serial)
    assert not _lock_file(path).exists()
    _open_without_warnings(str(path))


@pytest.mark.slow
def test_two_clients_starting_one_new_store_leave_one_complete_store(
    model_file, serial, tmp_path
):
    path = tmp_path / "year.zarr"
    procs = _start_clients(model_file, path, ["run", "run"], tmp_path)
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert 0 in codes and set(codes) <= {0, 3}, outs
    for p, (out, _), other in zip(procs, outs, procs[::-1], strict=True):
        if p.returncode == 3:  # refused, naming the run that holds the store
            assert "locked by another reconstruct_to_zarr run" in out
            assert f"process {other.pid} on host" in out
    redone = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to repair: every chunk verifies
        out = _run(str(path), model_file, callback=lambda c: redone.append(c.start))
    assert redone == []
    _assert_equal(out, serial)
    assert not _lock_file(path).exists()


# ---------------------------------------------------------------------------------------------
# The lock, in one process: memory:// and local stores


def _memory_store() -> str:
    return f"memory://xdiffsr-locks-{uuid.uuid4().hex}/year.zarr"


def _lock_path(store: str) -> str:
    return fsspec.core.url_to_fs(store)[1] + integrity.LOCK_SUFFIX


def _write_lock(store: str, **holder) -> dict:
    fs, _ = fsspec.core.url_to_fs(store)
    info = {"run": uuid.uuid4().hex, "host": socket.gethostname(), "boot": BOOT,
            "pid": os.getpid(), "started": time.time(), "heartbeat": time.time(), **holder}
    fs.pipe_file(_lock_path(store), json.dumps(info).encode())
    return info


def _held(store: str, created: list | None = None):
    lock = integrity.StoreLock(store, None, lambda s, o: False)
    created = [] if created is None else created
    return lock, lock.held(False, False, created.append)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: no such process any more
    return proc.pid


@pytest.mark.parametrize("where", ["memory", "local"])
def test_a_live_lock_refuses_naming_its_holder(where, tmp_path):
    store = _memory_store() if where == "memory" else str(tmp_path / "year.zarr")
    first, ctx = _held(store)
    with ctx:
        fs, root = fsspec.core.url_to_fs(store)
        assert fs.exists(_lock_path(store))  # beside the store ...
        assert not fs.exists(f"{root}/{integrity.LOCK}")  # ... not in it
        _, ctx2 = _held(store)
        with pytest.raises(xdiffsr.StoreLockedError, match=first.run_id) as err, ctx2:
            pass
        assert f"process {os.getpid()} on host {socket.gethostname()!r}" in str(err.value)
        assert store in str(err.value) and "force_unlock=True" in str(err.value)
    assert not fs.exists(_lock_path(store))  # released


@pytest.mark.parametrize(
    "holder, taken",
    [
        (dict(host="elsewhere", heartbeat=time.time() + 1e6), False),  # fresh (in the future)
        (dict(host="elsewhere", heartbeat=0.0), True),  # stale: no heartbeat since 1970
        (dict(pid="dead"), True),  # this host, its process gone
        ({}, False),  # this host, alive (this very process)
        (dict(pid_start="0"), True),  # this host, the pid reused by another process (Linux)
    ],
)
def test_locks_of_gone_holders_are_taken_over_with_a_warning(holder, taken):
    if holder.get("pid") == "dead":
        holder = {**holder, "pid": _dead_pid()}
    if "pid_start" in holder and not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("process start times are not known on this system")
    store = _memory_store()
    old = _write_lock(store, **holder)
    created = []
    lock, ctx = _held(store, created)
    if taken:
        with pytest.warns(xdiffsr.XDiffSRWarning, match=f"taking over the lock.*{old['run']}"):
            with ctx:
                assert json.loads(lock.fs.cat_file(lock.path))["run"] == lock.run_id
        assert created == [False]
    else:
        with pytest.raises(xdiffsr.StoreLockedError, match=old["run"]), ctx:
            pass
        assert created == []  # nothing was written
        assert json.loads(lock.fs.cat_file(lock.path))["run"] == old["run"]  # left in place


def test_force_unlock_breaks_any_lock_and_the_old_lock_inside_the_store(tmp_path):
    store = str(tmp_path / "year.zarr")
    (tmp_path / "year.zarr").mkdir()
    (tmp_path / "year.zarr" / integrity.LOCK).write_text('{"run": "older-version"}')
    _, ctx = _held(store)
    with pytest.raises(xdiffsr.StoreLockedError, match="older-version"), ctx:
        pass
    lock = integrity.StoreLock(store, None, lambda s, o: False)
    with lock.held(True, False, lambda overwrite: None):
        assert lock.fs.exists(lock.path)
    assert not (tmp_path / "year.zarr" / integrity.LOCK).exists()


def test_heartbeat_is_refreshed_and_a_takeover_stops_the_run(monkeypatch):
    monkeypatch.setattr(integrity, "LOCK_HEARTBEAT_S", 0.02)
    store = _memory_store()
    lock, ctx = _held(store)
    with ctx:
        beat0 = json.loads(lock.fs.cat_file(lock.path))["heartbeat"]
        deadline = time.time() + 10
        while json.loads(lock.fs.cat_file(lock.path))["heartbeat"] == beat0:
            assert time.time() < deadline, "the heartbeat was not refreshed"
            time.sleep(0.01)
        lock.check()  # still held
        other = _write_lock(store, host="elsewhere")  # another run judged it stale
        while lock.lost is None:
            assert time.time() < deadline, "the takeover was not noticed"
            time.sleep(0.01)
        with pytest.raises(xdiffsr.StoreLockedError, match=f"taken over.*{other['run']}"):
            lock.check()
    assert json.loads(lock.fs.cat_file(lock.path))["run"] == other["run"]  # not removed


def test_writers_starting_at_once_in_one_process_get_one_lock():
    """Threads racing for one memory:// lock (whose exclusive create is not atomic across
    threads): the read-back after the settle time leaves exactly one holder."""
    store = _memory_store()
    barrier = threading.Barrier(4)
    results = []

    def writer():
        _, ctx = _held(store)
        barrier.wait()
        try:
            with ctx:
                results.append("held")
                time.sleep(0.5)
        except xdiffsr.StoreLockedError:
            results.append("refused")

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["held", "refused", "refused", "refused"]


# ---------------------------------------------------------------------------------------------
# Whole runs on memory://


def test_memory_store_run_takes_over_a_stale_lock_and_opens_without_warnings(
    model_file, serial, monkeypatch
):
    monkeypatch.setattr(integrity, "LOCK_HEARTBEAT_S", 0.01)
    store = _memory_store()
    old = _write_lock(store, host="elsewhere", heartbeat=time.time() - integrity.LOCK_STALE_S - 5)
    beats = []

    def during(chunk):
        _open_without_warnings(store)  # the lock is held, and invisible to zarr
        beats.append(json.loads(fsspec.core.url_to_fs(store)[0].cat_file(_lock_path(store))))
        time.sleep(0.05)

    with (
        dask.config.set(scheduler="threads"),
        pytest.warns(xdiffsr.XDiffSRWarning, match=f"{old['run']}.*heartbeat is [0-9]+ s old"),
    ):
        out = _run(store, model_file, callback=during)
    assert len(beats) == 4 and len({b["run"] for b in beats}) == 1
    assert beats[-1]["heartbeat"] > beats[0]["heartbeat"]
    _assert_equal(out, serial)
    _open_without_warnings(store)
    assert not fsspec.core.url_to_fs(store)[0].exists(_lock_path(store))
