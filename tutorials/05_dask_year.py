# %% [markdown]
# # A year with dask: lazy results, zarr stores and resuming
#
# A year of 6-hourly states is 1,460 independent reconstructions. `xdiffsr` runs them as one dask
# task per time chunk on any scheduler and streams the members into a zarr store with
# `xdiffsr.reconstruct.reconstruct_to_zarr`, which a rerun resumes (see the
# [year guide](../year.md)). In this tutorial you will
#
# 1. open an observation source lazily and build a lazy (dask-backed) reconstruction;
# 2. start a small `distributed` cluster and write a store with `reconstruct_to_zarr`;
# 3. interrupt the run, rerun it, and see that it only does what is missing, and that a third run
#    does nothing;
# 4. open the store with `xr.open_zarr` and check that its members equal an eager run's.
#
# To keep it to a minute on 2 CPU cores the "year" is the two held-out states of the OSSE
# (`xdiffsr/data/osse-heldout.nc`, 2003-12-30 00Z and 12Z, one time per task), and the default
# model draws **one member with 4 sampler steps** per time: the mechanics are those of a real
# year, the numbers are not worth scoring. Everything is written to a temporary folder.

# %%
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from distributed import Client, LocalCluster

import xdiffsr
from xdiffsr.evaluation.demo import load_heldout, load_stations, observe
from xdiffsr.reconstruct import reconstruct_to_zarr

start = time.perf_counter()
tmp = Path(tempfile.mkdtemp(prefix="xdiffsr-year-"))
truth = load_heldout()
coarse, sondes = observe(truth, load_stations(), seed=0)  # 16 x 32 fields and radiosondes
coarse.to_netcdf(tmp / "coarse.nc")
coarse_lazy = xr.open_dataset(tmp / "coarse.nc", chunks={"time": 1})  # dask-backed, not read
times = xr.Dataset(coords={"time": truth.time.values})  # the times to reconstruct
model = xdiffsr.load_model("default")
SAMPLER = dict(members=1, steps=4, seed=0)
print(f"{times.sizes['time']} times; coarse source is lazy: {coarse_lazy.t850.chunks is not None}")

# %% [markdown]
# ## A lazy reconstruction
#
# With `chunks={"time": 1}` `super_resolve` returns at once a Dataset whose variables are dask
# arrays: one task per time chunk, nothing sampled yet. `.compute()`, `.to_zarr()` or a plot
# would run it on the current scheduler. (Lazy results carry no `obs_*` diagnostics.)

# %%
t0 = time.perf_counter()
lazy = times.diffsr.super_resolve([sondes, coarse_lazy], model=model, chunks={"time": 1},
                                  **SAMPLER)
print(f"built in {time.perf_counter() - t0:.2f} s, nothing computed")
lazy.t850.data

# %% [markdown]
# ## A store, written by a cluster
#
# A `LocalCluster` with one worker thread in this process (`processes=False`) stands in for a
# real cluster (dask-cuda's `LocalCUDACluster`, dask-gateway, ...); `reconstruct_to_zarr` uses
# the client it is given. The model travels to the workers as a reference to its file, each
# worker loads it once.
#
# To show resuming we interrupt the first run: the `callback`, called after each time chunk is
# written and marked complete, raises after the first one, as a killed job would stop.

# %%
cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                       dashboard_address=None)
client = Client(cluster)
store = tmp / "reconstruction.zarr"
obs = [sondes, coarse_lazy]


class Interrupted(Exception):
    """Raised by the callback to stop the first run after one chunk."""


def stop_after_first_chunk(done: slice) -> None:
    print(f"  chunk of times {done.start}..{done.stop - 1} written")
    raise Interrupted


t0 = time.perf_counter()
try:
    reconstruct_to_zarr(times, obs, store, model=model, chunks={"time": 1}, client=client,
                        progress=False, callback=stop_after_first_chunk, **SAMPLER)
except Interrupted:
    print(f"run 1 interrupted after {time.perf_counter() - t0:.1f} s")
print("completion marks:", xr.open_zarr(store).xdiffsr_done.values)

# %% [markdown]
# `xdiffsr_done` marks each completed time; the interrupted run left one done. Rerunning the
# same call verifies the completed chunk against its checksums and computes only the missing
# one; a third run finds nothing to do:

# %%
written = []
for run in (2, 3):
    t0 = time.perf_counter()
    result = reconstruct_to_zarr(times, obs, store, model=model, chunks={"time": 1},
                                 client=client, progress=False, callback=written.append,
                                 **SAMPLER)
    print(f"run {run}: {time.perf_counter() - t0:.1f} s, chunks written: "
          f"{[(s.start, s.stop) for s in written]}")
    written.clear()
print("completion marks:", xr.open_zarr(store).xdiffsr_done.values)
client.close()
cluster.close()

# %% [markdown]
# ## Reading the store
#
# `reconstruct_to_zarr` returns the store opened lazily; `xr.open_zarr` opens it anywhere else.
# Its variables are `(time, member, lat, lon)` with the provenance attributes of `super_resolve`
# (model fingerprint, every sampler setting, the sources and weights), and the run record
# `xdiffsr_run` that a resume checks.

# %%
stored = xr.open_zarr(store)
print(stored.t850)
print("sampler:", stored.attrs["sampler"])

# %% [markdown]
# Members depend only on the seed, the time and the member index, not on the chunking, the
# cluster or the interruption: the store equals an eager, single-process run. (An eager run also
# computes the observation diagnostics, and with one member and 4 steps its sample ends far from
# the observations: the misfit warnings below are expected at these settings and would be a
# reason to use more steps in real use.)

# %%
eager = times.isel(time=[0]).diffsr.super_resolve(obs, model=model, **SAMPLER)
same = np.array_equal(stored.t850.isel(time=[0]).values, eager.t850.values)
print(f"store == eager run at {str(times.time.values[0])[:16]}: {same}")

# %%
print(f"total {time.perf_counter() - start:.0f} s (information only; it varies with the load); "
      f"files in {tmp}")

# %% [markdown]
# ## For a real year
#
# Use `times = xr.Dataset(coords={"time": pd.date_range("2019-01-01", "2019-12-31 18:00",
# freq="6h")})`, a few times per task (`chunks={"time": 4}`), the members and steps you need,
# and a store every worker can reach (a shared disk, `gs://`, `s3://`). Measured rates and the
# extrapolation to a year are in `benchmarks/RESULTS.md`; the locking, checksums and failure
# handling in the [year guide](../year.md).
