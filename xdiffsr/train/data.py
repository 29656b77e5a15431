"""Training data: variable selection, time splits, normalisation statistics and batch streams.

Two sources feed the training loop with normalised float32 batches of shape (B, C, H, W):

* :class:`MemorySource` holds the whole training split as one tensor (on the GPU when it fits),
  so a batch is a single index operation;
* :class:`ChunkedSource` reads the store one time chunk at a time. The epoch order of
  :func:`chunked_order` shuffles the order of the chunks and, within windows of a few chunks,
  the times, so that every chunk is read once per epoch while batches still mix distant times
  (the strategy of WeatherBench-style loaders for ARCO ERA5).

Both draw the epoch order from ``(seed, epoch)`` only, so a resumed run sees the same batches.

References
----------
.. [1] S. Rasp et al., "WeatherBench 2: A benchmark for the next generation of data-driven
   global weather models", JAMES 2024 (zarr layout: ``temperature(time, level, latitude,
   longitude)``).
.. [2] ARCO-ERA5, https://github.com/google-research/arco-era5 (analysis-ready zarr layout).
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import torch
import xarray as xr

from xdiffsr.errors import ArgumentError, CoordinateError, FormatError
from xdiffsr.grid import Grid, find_time, grid_of
from xdiffsr.names import (
    LEVEL_DIMS,
    SHORT_NAMES,
    channel_name,
    level_values_hpa,
    to_model_layout,
)

__all__ = [
    "SHORT_NAMES",
    "ChunkedSource",
    "MemorySource",
    "batch_indices",
    "batch_stream",
    "channel_name",
    "chunked_order",
    "epoch_order",
    "flatten_levels",
    "normalisation_stats",
    "open_data",
    "select_variables",
    "split_by_time",
]

_LEVEL_DIMS = LEVEL_DIMS


def open_data(path: str | Path) -> xr.Dataset:
    """Open a zarr store, a netCDF file or a glob of netCDF files lazily (dask-backed)."""
    p = str(path)
    try:
        if p.rstrip("/").endswith(".zarr") or (Path(p).is_dir() and not any(c in p for c in "*?")):
            with warnings.catch_warnings():  # stores without consolidated metadata (nature runs)
                warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolid")
                return xr.open_zarr(p, decode_timedelta=False)
        if any(c in p for c in "*?"):
            return xr.open_mfdataset(p, combine="by_coords", chunks={})
        return xr.open_dataset(p, chunks={})
    except (OSError, ValueError, KeyError) as err:
        raise FormatError(f"cannot open training data {p!r}: {err}. Give a zarr store, a netCDF "
                          "file or a glob of netCDF files.") from err


def _level_dim(da: xr.DataArray, space: set[str]) -> str | None:
    extra = [d for d in da.dims if d not in space]
    if not extra:
        return None
    named = [d for d in extra if d in _LEVEL_DIMS]
    if len(named) == 1:
        return named[0]
    if len(extra) == 1:
        return str(extra[0])
    raise CoordinateError(f"variable {da.name!r} has several non-(time, lat, lon) dims {extra}; "
                          "select the others first (ds.isel(...)).")


_level_values_hpa = level_values_hpa


def _select_level(da: xr.DataArray, level: float, space: set[str], selector: str) -> xr.DataArray:
    dim = _level_dim(da, space)
    if dim is None:
        raise ArgumentError(f"variable selector {selector!r}: {da.name!r} has no level dimension "
                            f"(dims {da.dims}); use the flat name {da.name!r}.")
    hpa = _level_values_hpa(da[dim]) if dim in da.coords else np.arange(da.sizes[dim], dtype=float)
    hit = np.flatnonzero(np.isclose(hpa, level, rtol=0, atol=1e-6))
    if hit.size != 1:
        raise ArgumentError(f"variable selector {selector!r}: level {level:g} hPa not in "
                            f"{da.name!r}.{dim} (levels in hPa: {hpa.tolist()}).")
    return da.isel({dim: int(hit[0])}, drop=True)


def _space_dims(ds: xr.Dataset) -> tuple[str | None, Grid, set[str]]:
    tname = find_time(ds, argname="data")
    grid = grid_of(ds, argname="data")
    space = {grid.lat_name, grid.lon_name} | ({tname} if tname else set())
    return tname, grid, space


def select_variables(ds: xr.Dataset, variables: Sequence[str],
                     names: Sequence[str] | None = None) -> xr.Dataset:
    """The channels of a training run as flat (time, lat, lon) variables of a lazy Dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        Flat variables (``t850``) and/or variables with a level dimension
        (``temperature(time, level, latitude, longitude)``, levels in hPa or Pa).
    variables : sequence of str
        ``"t850"`` (a flat variable, or a model channel that :mod:`xdiffsr.names` finds in any
        layout: ``temperature`` at ``level`` 850, cfgrib ``t`` at ``isobaricInhPa`` 850) or
        ``"temperature@850"`` (variable at a level in hPa).
    names : sequence of str, optional
        Channel names; default :func:`channel_name` of each selector (flat names are kept).

    Returns
    -------
    xarray.Dataset
        One (time, lat, lon) variable per channel, in the given order, with the source's
        attributes plus ``source_variable``.
    """
    tname, grid, space = _space_dims(ds)
    if tname is None:
        raise CoordinateError(f"data has no datetime time dimension (dims {dict(ds.sizes)}); "
                              "training needs one.")
    out = {}
    for i, sel in enumerate(variables):
        base, _, lev = sel.partition("@")
        if base not in ds.data_vars and not lev:  # a model channel in another layout
            flat = to_model_layout(ds, [sel], argname="data", missing="skip")
            if sel in flat.data_vars:
                name = str(names[i]) if names is not None else sel
                if name in out:
                    raise ArgumentError(f"two selectors give the channel {name!r}; pass names=.")
                da = flat[sel]
                out[name] = da.transpose(tname, grid.lat_name, grid.lon_name).assign_attrs(
                    source_variable=da.attrs.get("source_variable", sel))
                continue
        if base not in ds.data_vars:
            raise ArgumentError(f"variable {base!r} (from {sel!r}) not in the data; available: "
                                f"{sorted(map(str, ds.data_vars))}.")
        da = ds[base]
        if lev:
            try:
                level = float(lev)
            except ValueError:
                raise ArgumentError(f"variable selector {sel!r}: the level after '@' must be a "
                                    "number in hPa, e.g. 'temperature@850'.") from None
            da = _select_level(da, level, space, sel)
            name = channel_name(base, level)
        else:
            if _level_dim(da, space) is not None:
                raise ArgumentError(f"variable {sel!r} has dims {da.dims}; select a level, e.g. "
                                    f"'{sel}@500'.")
            name = sel
        name = str(names[i]) if names is not None else name
        if name in out:
            raise ArgumentError(f"two selectors give the channel {name!r}; pass names=.")
        attrs = {**da.attrs, "source_variable": sel}
        out[name] = da.transpose(tname, grid.lat_name, grid.lon_name).assign_attrs(attrs)
    return xr.Dataset(out)


def flatten_levels(ds: xr.Dataset, names: Mapping[str, str] | None = None,
                   levels: Sequence[float] | None = None) -> xr.Dataset:
    """Split variables with a level dimension into flat per-level variables.

    Parameters
    ----------
    ds : xarray.Dataset
        E.g. a WeatherBench 2 store with ``temperature(time, level, latitude, longitude)``.
    names : mapping, optional
        ``{source variable: short name}``, e.g. ``{"temperature": "t"}``; only these variables
        are kept. Default: every variable, short names from :data:`SHORT_NAMES`.
    levels : sequence of float, optional
        Pressure levels in hPa to keep (default all).

    Returns
    -------
    xarray.Dataset
        Variables named ``short + level`` (``t850``), lazily selected.
    """
    _, _, space = _space_dims(ds)
    names = dict(names) if names is not None else {str(v): SHORT_NAMES.get(str(v), str(v))
                                                    for v in ds.data_vars}
    out = {}
    for var, short in names.items():
        if var not in ds.data_vars:
            raise ArgumentError(f"flatten_levels: {var!r} not in the data "
                                f"({sorted(map(str, ds.data_vars))}).")
        da = ds[var]
        dim = _level_dim(da, space)
        if dim is None:
            out[short] = da
            continue
        hpa = _level_values_hpa(da[dim])
        wanted = hpa if levels is None else np.asarray(levels, dtype=float)
        for lev in wanted:
            sel = _select_level(da, float(lev), space, f"{var}@{lev:g}")
            out[f"{short}{float(lev):g}"] = sel.assign_attrs(source_variable=f"{var}@{lev:g}")
    return xr.Dataset(out)


def _time_slice(ds: xr.Dataset, tname: str, start: str | None, end: str | None,
                what: str) -> xr.Dataset:
    sub = ds.sel({tname: slice(start, end)})
    if sub.sizes[tname] == 0:
        t = ds[tname].values
        raise ArgumentError(f"the {what} split {start!r}..{end!r} holds no times; the data span "
                            f"{pd.Timestamp(t.min())}..{pd.Timestamp(t.max())}.")
    return sub


def split_by_time(ds: xr.Dataset, train_start: str | None = None, train_end: str | None = None,
                  val_start: str | None = None, val_end: str | None = None,
                  exclude: Sequence[tuple[str, str]] = ()
                  ) -> tuple[xr.Dataset, xr.Dataset | None]:
    """Training and validation splits by inclusive time bounds.

    Without ``val_start``, the validation split starts after ``train_end`` (None when no times
    follow it, or without ``train_end``: then there is no validation split). ``exclude`` lists
    inclusive (start, end) periods dropped from the training split. A validation split that
    shares times with the training split is refused (its loss would not measure
    generalisation).
    """
    tname = find_time(ds, argname="data")
    if not ds.indexes[tname].is_monotonic_increasing:
        ds = ds.sortby(tname)
    train = _time_slice(ds, tname, train_start, train_end, "training")
    if exclude:
        t = pd.DatetimeIndex(train[tname].values)
        keep = np.ones(t.size, bool)
        for start, end in exclude:
            keep &= ~((t >= pd.Timestamp(start)) & (t <= pd.Timestamp(end)))
        if not keep.any():
            raise ArgumentError(f"train_exclude={[tuple(p) for p in exclude]} leaves no "
                                f"training times of {t[0]}..{t[-1]}.")
        train = train.isel({tname: keep})
    if val_start is None and train_end is not None:  # validation follows the training split
        after = ds.isel({tname: ds[tname].values > train[tname].values[-1]})
        if val_end is None:
            return train, (after if after.sizes[tname] else None)
        return train, _time_slice(after, tname, None, val_end, "validation")
    if val_start is None and val_end is None:
        return train, None
    val = _time_slice(ds, tname, val_start, val_end, "validation")
    shared = np.intersect1d(train[tname].values, val[tname].values)
    if shared.size:
        raise ArgumentError(
            f"the validation split {val_start!r}..{val_end!r} shares {shared.size} times with "
            f"the training split ({pd.Timestamp(shared[0])}..{pd.Timestamp(shared[-1])}); move "
            f"train_start/train_end or leave the period out with "
            f"train_exclude=[({val_start!r}, {val_end!r})].")
    return train, val


def normalisation_stats(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-variable mean and standard deviation over all dimensions, computed with dask.

    Parameters
    ----------
    ds : xarray.Dataset
        Flat (time, lat, lon) channels (dask-backed or in memory).

    Returns
    -------
    center, scale : ndarray (C,)
        Mean and population standard deviation of each variable (float64 accumulation).

    Raises
    ------
    ArgumentError
        If a variable holds NaN or is constant (its scale would be 0).
    """
    ds64 = ds.astype(np.float64)
    mean, std, nan = dask.compute(ds64.mean(), ds64.std(), ds.isnull().sum())
    names = list(ds.data_vars)
    bad = [v for v in names if int(nan[v]) > 0]
    if bad:
        raise ArgumentError(f"training variables {bad} contain NaN; fill or drop those times "
                            "before training.")
    center = np.array([float(mean[v]) for v in names])
    scale = np.array([float(std[v]) for v in names])
    flat = [v for v, s in zip(names, scale, strict=True) if not s > 0]
    if flat:
        raise ArgumentError(f"training variables {flat} are constant (std 0); drop them.")
    return center, scale


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """Random permutation of ``range(n)`` that depends only on ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def chunked_order(bounds: Sequence[tuple[int, int]], seed: int, epoch: int,
                  window: int) -> np.ndarray:
    """Chunk-aware epoch order: shuffled chunks, times shuffled within windows of chunks.

    Parameters
    ----------
    bounds : sequence of (start, stop)
        Contiguous time chunks covering ``range(n)``.
    seed, epoch : int
        The order depends on these only.
    window : int
        Number of (shuffled) chunks whose times are shuffled together.

    Returns
    -------
    ndarray (n,)
        A permutation of the time indices in which the times of one window are contiguous, so
        that a batch needs the chunks of at most two windows.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    perm = rng.permutation(len(bounds))
    parts = []
    for w in range(0, len(perm), window):
        idx = np.concatenate([np.arange(*bounds[c]) for c in perm[w:w + window]])
        parts.append(rng.permutation(idx))
    return np.concatenate(parts)


def _stack(ds: xr.Dataset, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(T, C, H, W) float32 normalised array of a loaded (or lazy) flat dataset."""
    arr = np.stack([ds[v].values for v in ds.data_vars], axis=1).astype(np.float64)
    return ((arr - center[:, None, None]) / scale[:, None, None]).astype(np.float32)


class MemorySource:
    """The whole training split as one normalised tensor (T, C, H, W).

    Parameters
    ----------
    ds : xarray.Dataset
        Flat (time, lat, lon) channels (computed with dask if lazy).
    center, scale : ndarray (C,)
        Normalisation.
    device : torch.device
        Where the tensor lives (GPU memory keeps the GPU busy without host transfers).
    """

    def __init__(self, ds: xr.Dataset, center: np.ndarray, scale: np.ndarray,
                 device: torch.device | str = "cpu") -> None:
        self.data = torch.from_numpy(_stack(ds.compute(), center, scale)).to(device)
        self.n = self.data.shape[0]

    def order(self, seed: int, epoch: int) -> np.ndarray:
        return epoch_order(self.n, seed, epoch)

    def fetch(self, idx: np.ndarray) -> torch.Tensor:
        return self.data[torch.as_tensor(idx, device=self.data.device)]


class ChunkedSource:
    """Streams normalised batches from a (zarr-backed) dataset, one time chunk at a time.

    Parameters
    ----------
    ds : xarray.Dataset
        Lazy flat (time, lat, lon) channels of the training split.
    center, scale : ndarray (C,)
        Normalisation.
    window : int, optional
        Chunks shuffled together; default: as many as fit in half of ``max_bytes``.
    max_bytes : float
        Memory budget of the chunk cache (it keeps ``2 * window`` chunks, so that a batch that
        straddles two windows reads each chunk once).
    chunk_times : int
        Chunk length along time when ``ds`` is not dask-backed.
    """

    def __init__(self, ds: xr.Dataset, center: np.ndarray, scale: np.ndarray, *,
                 window: int | None = None, max_bytes: float = 4e9, chunk_times: int = 16) -> None:
        tname = find_time(ds, argname="data")
        self.ds, self.center, self.scale = ds.unify_chunks(), center, scale
        sizes = self.ds.chunksizes.get(tname) or tuple(
            min(chunk_times, ds.sizes[tname] - i) for i in range(0, ds.sizes[tname], chunk_times))
        stops = np.cumsum(sizes)
        self.bounds = list(zip((stops - np.asarray(sizes)).tolist(), stops.tolist()))
        self.tname, self.n = tname, int(stops[-1])
        chunk_bytes = 4 * max(sizes) * len(ds.data_vars) * int(np.prod(list(grid_of(ds).shape)))
        self.window = window or int(np.clip(max_bytes / 2 // chunk_bytes, 1, len(self.bounds)))
        self._chunk_of = np.repeat(np.arange(len(self.bounds)), sizes)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.reads = 0

    def order(self, seed: int, epoch: int) -> np.ndarray:
        return chunked_order(self.bounds, seed, epoch, self.window)

    def _chunk(self, c: int) -> np.ndarray:
        if c in self._cache:
            self._cache.move_to_end(c)
            return self._cache[c]
        a, b = self.bounds[c]
        arr = _stack(self.ds.isel({self.tname: slice(a, b)}).compute(), self.center, self.scale)
        self.reads += 1
        self._cache[c] = arr
        while len(self._cache) > 2 * self.window:
            self._cache.popitem(last=False)
        return arr

    def fetch(self, idx: np.ndarray) -> torch.Tensor:
        chunks = self._chunk_of[idx]
        out = np.empty((len(idx), *self._chunk(int(chunks[0])).shape[1:]), np.float32)
        for c in np.unique(chunks):
            sel = chunks == c
            out[sel] = self._chunk(int(c))[idx[sel] - self.bounds[c][0]]
        return torch.from_numpy(out)


def batch_indices(source: Any, step: int, batch_size: int, seed: int, rank: int = 0,
                  world: int = 1, _cache: dict | None = None) -> np.ndarray:
    """Time indices of ``rank``'s share of the global batch of ``step``.

    The global batch of step ``s`` is ``order[i*B:(i+1)*B]`` of epoch ``s // (n // B)`` with
    ``i = s % (n // B)``; rank ``r`` takes its elements ``r::world``.
    """
    per_epoch = source.n // batch_size
    epoch, i = divmod(step, per_epoch)
    if _cache is not None:
        if _cache.get("epoch") != epoch:
            _cache.update(epoch=epoch, order=source.order(seed, epoch))
        order = _cache["order"]
    else:
        order = source.order(seed, epoch)
    return order[i * batch_size:(i + 1) * batch_size][rank::world]


def batch_stream(source: Any, start_step: int, batch_size: int, seed: int, *, rank: int = 0,
                 world: int = 1, device: torch.device | str = "cpu",
                 prefetch: int = 4) -> Iterator[torch.Tensor]:
    """Endless iterator of ``rank``'s batches (B / world, C, H, W) from ``start_step`` on.

    A :class:`MemorySource` is indexed in place; other sources are read ahead by a background
    thread (``prefetch`` batches; pinned host memory and asynchronous copies on CUDA).
    """
    if source.n < batch_size:
        raise ArgumentError(f"the training split has {source.n} times, fewer than batch_size="
                            f"{batch_size}; lower batch_size or widen the split.")
    device = torch.device(device)
    cache: dict = {}
    if isinstance(source, MemorySource):
        def direct():
            step = start_step
            while True:
                yield source.fetch(batch_indices(source, step, batch_size, seed, rank, world,
                                                 cache)).to(device, non_blocking=True)
                step += 1
        return direct()
    return _threaded(source, start_step, batch_size, seed, rank, world, device, prefetch)


def _threaded(source, start_step, batch_size, seed, rank, world, device, prefetch):
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    pin = device.type == "cuda"

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work():
        step, cache = start_step, {}
        try:
            while not stop.is_set():
                x = source.fetch(batch_indices(source, step, batch_size, seed, rank, world, cache))
                put(x.pin_memory() if pin else x)
                step += 1
        except BaseException as err:  # re-raised in the consumer
            put(err)

    thread = threading.Thread(target=work, daemon=True, name="xdiffsr-loader")
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            yield item.to(device, non_blocking=True)
    finally:
        stop.set()
        thread.join(timeout=5)
