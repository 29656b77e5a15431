"""Training of EDM diffusion priors on xarray / zarr data (single GPU, CPU, or torchrun DDP).

>>> from xdiffsr.train import TrainConfig, train
>>> cfg = TrainConfig(data="era5.zarr", variables=["temperature@850", "geopotential@500"],
...                   train_end="2015-12-31", val_end="2016-12-31", steps=200_000)
>>> path = train(cfg, out_dir="runs/era5")          # doctest: +SKIP
>>> model = xdiffsr.load_model(path)                # doctest: +SKIP

From the shell: ``python -m xdiffsr.train --data era5.zarr --variables t850 z500 ...`` or
``torchrun --nproc_per_node 4 -m xdiffsr.train --config run.json --out runs/era5``.
See ``docs/training.md``.
"""

from __future__ import annotations

from .config import TrainConfig
from .data import (
    SHORT_NAMES,
    ChunkedSource,
    MemorySource,
    channel_name,
    chunked_order,
    epoch_order,
    flatten_levels,
    normalisation_stats,
    open_data,
    select_variables,
    split_by_time,
)
from .loop import Trainer, train

__all__ = [
    "SHORT_NAMES",
    "ChunkedSource",
    "MemorySource",
    "TrainConfig",
    "Trainer",
    "channel_name",
    "chunked_order",
    "epoch_order",
    "flatten_levels",
    "normalisation_stats",
    "open_data",
    "select_variables",
    "split_by_time",
    "train",
]
