"""A year-like run with dask: per-worker model cache, streaming to zarr, resume, clusters.

A tiny random-weight SongUNet prior on the 8 x 16 grid (t850, z500), 24 six-hourly times, point
observations of t850 and a coarse z500 field. The reference is always the serial eager
``super_resolve``: every store must equal it element for element.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import uuid
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xdiffsr
from tests.conftest import (
    TINY_LAT,
    TINY_LON,
    smooth_covariance,
    tiny_model,
    tiny_observations,
)
from xdiffsr.reconstruct import integrity, tasks
from xdiffsr.reconstruct import store as store_mod

LAT, LON = TINY_LAT, TINY_LON
TIMES = pd.date_range("2021-01-01", periods=24, freq="6h")
# batch_size=members: one time per batch, so stores written with any chunking equal the serial
# run bit for bit (batches filled across times agree to float rounding:
# test_filled_batches_agree_across_chunkings)
KW = dict(members=2, steps=3, seed=5, batch_size=2)
N = 3  # times per chunk: 8 chunks


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = tiny_model("tiny-parallel")
    return model.save(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _obs(times=TIMES):
    return tiny_observations(times)


def _target(times=TIMES):
    return xr.Dataset(coords={"time": times})


@pytest.fixture(scope="module")
def serial(model_file):
    model = xdiffsr.load_model(model_file)
    return _target().diffsr.super_resolve(_obs(), model=model, **KW)


def _assert_equal(store_ds, ref):
    for v in ("t850", "z500"):  # the states (not the eager run's diagnostics)
        np.testing.assert_array_equal(store_ds[v].values, ref[v].values, err_msg=v)
    np.testing.assert_array_equal(store_ds["time"].values, ref["time"].values)


def lock_file(store: Path) -> Path:
    """The lock file of a local store: a sibling, outside the zarr hierarchy."""
    return store.with_name(store.name + integrity.LOCK_SUFFIX)


def _done(store, **kw):
    return xr.open_zarr(store, mask_and_scale=False, **kw)[store_mod.DONE].values


def test_lazy_graph_carries_a_reference_not_the_weights(model_file, serial):
    tasks.clear_cache()
    # open on the device the tasks will use (CUDA on a GPU machine), so they hit the cache
    model = xdiffsr.open_model(model_file, device=str(tasks.worker_device()))
    lazy = _target().diffsr.super_resolve(_obs(), model=model, chunks={"time": N}, **KW)
    graph = dict(lazy["t850"].data.__dask_graph__())
    blob = pickle.dumps(graph)
    assert b"tiny-parallel" not in blob  # the model's header and weights are not in the graph
    assert len(blob) < os.path.getsize(model_file) / 2
    with dask.config.set(scheduler="sync"):
        _assert_equal(lazy.compute(), serial)
    # 8 chunk tasks, one model load (open_model) and 8 cache hits
    assert tasks.cache_stats()["loads"] == 1 and tasks.cache_stats()["hits"] >= 8
    # each task got only its window of the observations: the graph holds them about once, not
    # once per task (8 tasks)
    assert len(blob) < 3 * len(pickle.dumps(_obs()))


def _gaussian_prior():
    mean = xr.Dataset(
        {
            "t850": (("lat", "lon"), np.full((8, 16), 270.0), {"units": "K"}),
            "z500": (("lat", "lon"), np.full((8, 16), 54000.0), {"units": "m2 s-2"}),
        },
        coords={
            "lat": ("lat", LAT, {"units": "degrees_north"}),
            "lon": ("lon", LON, {"units": "degrees_east"}),
        },
    )
    K = smooth_covariance(8, 16, length=1.5, nugget=1e-2, periodic=True)
    cov = np.kron(np.diag([25.0, 160000.0]), K)
    return xdiffsr.GaussianPrior(mean, cov)


def test_filled_batches_agree_across_chunkings(model_file, serial):
    """With batches filled across times (``batch_times=True``) and the automatic batch (4 guided
    rows on the CPU: two times of 2 members), chunks of 3 times group times differently from
    the serial run (pairs cut at chunk edges): the members agree to float rounding, not bit for
    bit."""
    model = xdiffsr.load_model(model_file)
    kw = {**KW, "batch_size": None, "batch_times": True}
    eager = _target().diffsr.super_resolve(_obs(), model=model, **kw)
    lazy = _target().diffsr.super_resolve(_obs(), model=model, chunks={"time": N}, **kw)
    with dask.config.set(scheduler="sync"):
        lazy = lazy.compute()
    for v in ("t850", "z500"):
        ref = serial[v].values  # time by time
        scale = np.abs(ref).max()
        for out in (eager, lazy):
            assert np.abs(out[v].values - ref).max() <= 1e-5 * scale, v


@pytest.mark.parametrize("where", ["local", "memory"])
def test_members_do_not_depend_on_the_chunking(model_file, serial, tmp_path, where):
    """The default (automatic) batch, chunks of 1, 3, 4 and all 8 times, threads: every store
    equals the time-by-time run bit for bit (issue 26: batches filled across times made the
    members depend on the chunk edges)."""
    kw = {**KW, "batch_size": None}
    times = TIMES[:8]
    runs = [(1, {}), (N, {}), (4, {}), (8, {}), (4, {"batch_size": 4})]
    if where == "memory":
        runs = [(1, {}), (4, {})]
    with dask.config.set(scheduler="threads"):
        for n, extra in runs:
            name = f"c{n}-{len(extra)}-{uuid.uuid4().hex}.zarr"
            store = str(tmp_path / name) if where == "local" else f"memory://xdiffsr/{name}"
            out = _run(store, times, model=model_file, chunks={"time": n}, **{**kw, **extra})
            _assert_equal(out, serial.sel(time=times))
            assert '"batch_times": false' in out.attrs["sampler"]  # recorded


def test_in_memory_prior_is_one_shared_key():
    prior = _gaussian_prior()
    lazy = _target().diffsr.super_resolve(_obs(), model=prior, chunks={"time": 4}, **KW)
    keys = [str(k) for k in dict(lazy["t850"].data.__dask_graph__())]
    assert sum(k.startswith("xdiffsr-prior-") for k in keys) == 1
    eager = _target().diffsr.super_resolve(_obs(), model=prior, **KW)
    with dask.config.set(scheduler="threads"):
        _assert_equal(lazy.compute(), eager)


def test_worker_device():
    assert tasks.worker_device("cpu") == torch.device("cpu")
    assert tasks.worker_device("cuda:1") == torch.device("cuda", 1)
    if not torch.cuda.is_available():
        assert tasks.worker_device(None) == torch.device("cpu")


class _Stop(Exception):
    pass


def test_interrupt_then_resume_equals_one_run(model_file, serial, tmp_path):
    store = str(tmp_path / "year.zarr")
    finished = []

    def stop_after_three(chunk):
        assert chunk.stop - chunk.start == N
        finished.append(chunk.start)
        if len(finished) == 3:
            raise _Stop

    with dask.config.set(scheduler="sync"), pytest.raises(_Stop):
        xdiffsr.reconstruct_to_zarr(
            _target(), _obs(), store, model=model_file, chunks={"time": N}, progress=False,
            callback=stop_after_three, **KW
        )
    done = _done(store)
    assert done.sum() == 3 * N and all(done[i : i + N].all() for i in finished)
    # a chunk whose data was written but not its marks (a write cut short) must be redone
    junk = next(i for i in range(0, 24, N) if i not in finished)
    xr.Dataset(
        {
            v: (("time", "member", "lat", "lon"), np.zeros((N, 2, 8, 16), np.float32))
            for v in ("t850", "z500")
        }
    ).to_zarr(store, region={"time": slice(junk, junk + N)}, mode="r+", consolidated=False)
    files = {
        p: p.stat().st_mtime_ns
        for i in finished
        for v in ("t850", "z500", store_mod.DONE)
        for p in (tmp_path / "year.zarr" / v / "c").rglob("*")
        if p.is_file() and p.relative_to(tmp_path / "year.zarr" / v / "c").parts[0] == str(i // N)
    }
    assert len(files) == 9
    with dask.config.set(scheduler="threads"):
        out = xdiffsr.reconstruct_to_zarr(
            _target(), _obs(), store, model=model_file, chunks={"time": N}, progress=False,
            callback=lambda chunk: finished.append(chunk.start), **KW
        )
    assert sorted(finished[3:]) == [i for i in range(0, 24, N) if i not in finished[:3]]
    assert {p: p.stat().st_mtime_ns for p in files} == files  # nothing complete was rewritten
    assert _done(store).all() and store_mod.DONE not in out
    _assert_equal(out, serial)
    # rerunning a complete store runs nothing
    finished.clear()
    xdiffsr.reconstruct_to_zarr(
        _target(), _obs(), store, model=model_file, chunks={"time": N}, progress=False, **KW
    )
    assert finished == []


def test_resume_with_other_settings_is_refused(model_file, tmp_path):
    store = str(tmp_path / "s.zarr")
    times = TIMES[:4]
    kw = dict(model=model_file, chunks={"time": 2}, progress=False, members=2, steps=2)
    with dask.config.set(scheduler="sync"):
        xdiffsr.reconstruct_to_zarr(_target(times), _obs(), store, seed=1, **kw)
        with pytest.raises(xdiffsr.ArgumentError, match="seed"):
            xdiffsr.reconstruct_to_zarr(_target(times), _obs(), store, seed=2, **kw)
        with pytest.raises(xdiffsr.ArgumentError, match="other times"):
            xdiffsr.reconstruct_to_zarr(_target(TIMES[:6]), _obs(), store, seed=1, **kw)
        xr.Dataset({"x": ("t", [1])}).to_zarr(tmp_path / "other.zarr")
        with pytest.raises(xdiffsr.ArgumentError, match="not created by"):
            xdiffsr.reconstruct_to_zarr(
                _target(times), _obs(), str(tmp_path / "other.zarr"), seed=1, **kw
            )


def test_memory_stores_for_input_and_output(model_file, serial):
    """fsspec ``memory://`` zarr: a lazily opened coarse field in, the ensemble out."""
    pts, coarse = _obs()
    coarse.chunk(time=1).to_zarr("memory://xdiffsr-in.zarr", mode="w")
    lazy_in = xr.open_zarr("memory://xdiffsr-in.zarr")
    assert lazy_in["z500"].chunks is not None
    with dask.config.set(scheduler="threads"):
        out = xdiffsr.reconstruct_to_zarr(
            _target(),
            [pts, lazy_in],
            "memory://xdiffsr-out.zarr",
            model=model_file,
            chunks={"time": N},
            progress=False,
            overwrite=True,
            **KW,
        )
    _assert_equal(out, serial)
    _assert_equal(xr.open_zarr("memory://xdiffsr-out.zarr"), serial)


@pytest.mark.slow
def test_processes_scheduler(model_file, serial, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one torch thread per spawned process
    with dask.config.set(scheduler="processes", num_workers=2):
        out = xdiffsr.reconstruct_to_zarr(
            _target(TIMES[:6]),
            _obs(),
            str(tmp_path / "p.zarr"),
            model=model_file,
            chunks={"time": N},
            progress=False,
            **KW,
        )
    _assert_equal(out, serial.isel(time=slice(0, 6)))


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.mark.slow
def test_local_cluster_equals_serial_and_loads_once_per_worker(
    model_file, serial, client, tmp_path
):
    store = str(tmp_path / "c.zarr")
    out = xdiffsr.reconstruct_to_zarr(
        _target(TIMES[:12]),
        _obs(),
        store,
        model=model_file,
        chunks={"time": N},
        client=client,
        progress=False,
        **KW,
    )
    _assert_equal(out, serial.isel(time=slice(0, 12)))
    stats = client.run(tasks.cache_stats)
    assert len(stats) == 2
    # each worker read the file once (a worker that ran no chunk read nothing) ...
    assert all(s["loads"] <= 1 for s in stats.values())
    assert sum(s["loads"] + s["hits"] for s in stats.values()) == 12 // N
    # ... and built the regridding operator once
    assert all(s["operators"] <= 1 for s in stats.values())
    # the lazy path runs on the cluster too, with the same members
    lazy = _target(TIMES[12:]).diffsr.super_resolve(
        _obs(), model=xdiffsr.open_model(model_file), chunks={"time": 4}, **KW
    )
    _assert_equal(lazy.compute(), serial.isel(time=slice(12, 24)))


@pytest.mark.slow
def test_cluster_members_do_not_depend_on_the_chunking(model_file, serial, client, tmp_path):
    """The default batch on a 2-worker LocalCluster, chunks of 4: the serial run bit for bit."""
    out = xdiffsr.reconstruct_to_zarr(
        _target(TIMES[:12]), _obs(), str(tmp_path / "c4.zarr"), model=model_file,
        chunks={"time": 4}, client=client, progress=False, **{**KW, "batch_size": None},
    )
    _assert_equal(out, serial.isel(time=slice(0, 12)))


@pytest.mark.slow
def test_killed_worker_still_yields_a_complete_store(
    model_file, serial, client, tmp_path
):
    store = str(tmp_path / "k.zarr")
    times = TIMES[6:18]
    killed = []

    def kill_one(chunk):
        if not killed:
            addr = sorted(client.scheduler_info()["workers"])[0]
            killed.append(addr)
            pid = client.run(os.getpid, workers=[addr])[addr]
            os.kill(pid, signal.SIGKILL)  # the nanny restarts it; its tasks are rescheduled

    out = xdiffsr.reconstruct_to_zarr(
        _target(times),
        _obs(),
        store,
        model=model_file,
        chunks={"time": 2},
        client=client,
        progress=False,
        callback=kill_one,
        **KW,
    )
    assert killed
    assert _done(store).all()
    _assert_equal(out, serial.sel(time=times))


def _run(store, times=TIMES[:12], obs=None, **kw):
    opts = dict(model=kw.pop("model", None), chunks={"time": N}, progress=False, **KW)
    opts.update(kw)
    return xdiffsr.reconstruct_to_zarr(
        _target(times), _obs() if obs is None else obs, store, **opts
    )


def test_forged_marks_and_deleted_chunks_are_recomputed(model_file, serial, tmp_path):
    path = tmp_path / "f.zarr"
    store = str(path)
    first = []

    def stop_after_two(chunk):
        first.append(chunk.start)
        if len(first) == 2:
            raise _Stop

    with dask.config.set(scheduler="sync"):
        with pytest.raises(_Stop):
            _run(store, model=model_file, callback=stop_after_two)
        # forge the marks of the chunks never computed, delete a computed chunk's data
        xr.Dataset({store_mod.DONE: ("time", np.ones(12, np.uint8))}).to_zarr(
            store, region={"time": slice(0, 12)}, mode="r+", consolidated=False
        )
        shutil.rmtree(path / "t850" / "c" / str(first[0] // N))
        assert _done(store).all()
        redone = []
        with pytest.warns(xdiffsr.XDiffSRWarning, match="checksum") as rec:
            out = _run(store, model=model_file, callback=lambda c: redone.append(c.start))
    assert sorted(redone) == sorted({0, N, 2 * N, 3 * N} - {first[1]})
    msg = str(rec[0].message)
    kept = str(TIMES[first[1]].isoformat())
    assert str(TIMES[first[0]].isoformat()) in msg and kept not in msg  # names the times
    _assert_equal(out, serial.isel(time=slice(0, 12)))
    # corrupt values under a valid mark: recomputed too; an intact store is left alone
    with dask.config.set(scheduler="sync"):
        xr.Dataset(
            {"z500": (("time", "member", "lat", "lon"), np.zeros((N, 2, 8, 16), np.float32))}
        ).to_zarr(store, region={"time": slice(0, N)}, mode="r+", consolidated=False)
        redone.clear()
        with pytest.warns(xdiffsr.XDiffSRWarning, match="checksum"):
            out = _run(store, model=model_file, callback=lambda c: redone.append(c.start))
        assert redone == [0]
        _assert_equal(out, serial.isel(time=slice(0, 12)))
        redone.clear()
        _run(store, model=model_file, callback=lambda c: redone.append(c.start))
        assert redone == []


def test_other_observation_values_or_errors_are_refused(model_file, tmp_path):
    store = str(tmp_path / "o.zarr")
    times = TIMES[:2]
    pts, coarse = _obs(times)
    kw = dict(model=model_file, chunks={"time": 2}, progress=False, members=2, steps=2)
    with dask.config.set(scheduler="sync"):
        xdiffsr.reconstruct_to_zarr(_target(times), [pts, coarse], store, **kw)
        moved = pts.copy()
        moved.loc[3, "value"] += 0.5  # one value differs: same count, same description
        for obs in (
            [moved, coarse],
            [pts, coarse + 1.0],
            [pts, xdiffsr.GridObservations(coarse, sigma_y=4.0)],
            [pts, xdiffsr.GridObservations(coarse, gamma=2.0)],
            [xdiffsr.PointObservations(pts, tolerance="1h"), coarse],
        ):
            with pytest.raises(xdiffsr.ArgumentError, match="source_content"):
                xdiffsr.reconstruct_to_zarr(_target(times), obs, store, **kw)
        # the same values, lazily opened and chunked otherwise: the same content, resumed
        xdiffsr.reconstruct_to_zarr(_target(times), [pts, coarse.chunk(time=1)], store, **kw)


def test_two_writers_cannot_interleave(model_file, serial, tmp_path):
    path = tmp_path / "w.zarr"
    store = str(path)
    second = []

    def start_a_second_writer(chunk):
        if not second:
            with pytest.raises(store_mod.StoreLockedError, match="force_unlock") as err:
                _run(store, model=model_file)
            second.append(str(err.value))

    with dask.config.set(scheduler="sync"):
        out = _run(store, model=model_file, callback=start_a_second_writer)
        assert store in second[0] and "locked" in second[0]
        assert not lock_file(path).exists()  # released at the end ...
        _assert_equal(out, serial.isel(time=slice(0, 12)))
        with pytest.raises(_Stop):

            def stop(chunk):
                raise _Stop

            _run(str(tmp_path / "e.zarr"), model=model_file, callback=stop)
        assert not lock_file(tmp_path / "e.zarr").exists()  # ... and on error
        # a lock without holder information is refused, then broken with force_unlock=True
        lock_file(tmp_path / "e.zarr").write_text('{"run": "dead"}')
        with pytest.raises(store_mod.StoreLockedError, match="dead"):
            _run(str(tmp_path / "e.zarr"), model=model_file)
        with pytest.raises(store_mod.StoreLockedError):
            _run(str(tmp_path / "e.zarr"), model=model_file, overwrite=True)
        out = _run(str(tmp_path / "e.zarr"), model=model_file, force_unlock=True)
    _assert_equal(out, serial.isel(time=slice(0, 12)))


def test_store_path_that_is_a_file_is_refused(model_file, tmp_path):
    path = tmp_path / "year.zarr"
    path.write_text("not a store")
    with pytest.raises(xdiffsr.ArgumentError, match="regular file") as err:
        _run(str(path), model=model_file)
    assert str(path) in str(err.value)
    assert path.read_text() == "not a store"


def _prior_holders(dask_scheduler=None):
    return sorted(
        {ws.address for k, ts in dask_scheduler.tasks.items()
         if str(k).startswith("xdiffsr-prior-") for ws in ts.who_has}
    )


@pytest.mark.slow
def test_killing_the_workers_holding_an_in_memory_prior(client, tmp_path):
    prior = _gaussian_prior()
    times = TIMES[:8]
    with dask.config.set(scheduler="sync"):
        ref = _target(times).diffsr.super_resolve(_obs(), model=prior, **KW)
    killed = []

    def kill_prior_holders(chunk):
        if not killed:
            holders = client.run_on_scheduler(_prior_holders)
            assert holders  # the prior is a task result held by some workers
            pids = client.run(os.getpid, workers=holders)
            for addr in holders:
                os.kill(pids[addr], signal.SIGKILL)  # every replica is lost
            killed.extend(holders)

    out = xdiffsr.reconstruct_to_zarr(
        _target(times), _obs(), str(tmp_path / "g.zarr"), model=prior, chunks={"time": 2},
        client=client, progress=False, callback=kill_prior_holders, **KW,
    )
    assert killed
    assert _done(str(tmp_path / "g.zarr")).all()
    _assert_equal(out, ref)


def test_store_keeps_the_callers_names_and_history(model_file, tmp_path):
    """A target on the model grid named latitude/longitude (descending latitudes) and an ensemble
    dimension named ``number``: the store uses the caller's names and order, like super_resolve,
    and appends to the caller's history."""
    model = xdiffsr.load_model(model_file)
    lat, lon = model.grid.lat[::-1], model.grid.lon
    times = TIMES[:2]
    ds = xr.Dataset(
        coords={
            "time": times,
            "latitude": ("latitude", lat, {"standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"standard_name": "longitude"}),
        },
        attrs={"history": "made by hand"},
    )
    with dask.config.set(scheduler="sync"):
        out = xdiffsr.reconstruct_to_zarr(
            ds, _obs(times), str(tmp_path / "named.zarr"), model=model_file, chunks=1,
            progress=False, member_dim="number", **KW,
        )
    ref = ds.diffsr.super_resolve(_obs(times), model=model, member_dim="number", **KW)
    v = model.variables[0]
    assert out[v].dims == ("time", "number", "latitude", "longitude")
    np.testing.assert_array_equal(out["latitude"].values, lat)
    np.testing.assert_allclose(out[v].values, ref[v].values, rtol=1e-5, atol=1e-5)
    assert out.attrs["history"].startswith("made by hand")
