"""Fine-tuning from a released model, pole padding and the latitude weights of the loss.

A fine-tuning run (``TrainConfig.init_from``) starts from a :class:`~xdiffsr.DiffusionModel`'s
weights and keeps its normalisation, grid, variables and network; only the latitude padding of
the convolutions may change (zeros -> across the poles), since it changes no weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from xdiffsr.core.unet import UNetConfig
from xdiffsr.errors import ArgumentError
from xdiffsr.grid import Grid
from xdiffsr.models.diffusion import DiffusionModel
from xdiffsr.train.augment import channels_of

__all__ = ["base_unet_config", "check_base_model", "check_pole_grid", "lat_weights",
           "pole_padding_config", "wind_channels"]

#: UNetConfig fields a fine-tuning run may change: they change no weight.
FINETUNE_CHANGES = ("lat_padding", "vector_channels")
_WIND = ("eastward_wind", "northward_wind")


def check_base_model(base: Any, variables: Sequence[str], grid: Grid, init_from: str) -> None:
    """ArgumentError naming the field in which the base model differs from the training data."""
    if not isinstance(base, DiffusionModel) or not hasattr(base.precond, "net"):
        raise ArgumentError(f"init_from={init_from!r} is a {type(base).__name__}; fine-tuning "
                            "starts from a pixel-space DiffusionModel file.")
    if tuple(base.variables) != tuple(variables):
        raise ArgumentError(
            f"init_from={init_from!r}: field 'variables' differs: the model has "
            f"{list(base.variables)}, the training data {list(variables)}; select the model's "
            "variables in the same order (TrainConfig.variables).")
    for axis in ("lat", "lon"):
        a, b = np.asarray(getattr(base.grid, axis)), np.asarray(getattr(grid, axis))
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            raise ArgumentError(
                f"init_from={init_from!r}: field '{axis}' differs: the model's grid has "
                f"{a.size} values from {a[0]:g} to {a[-1]:g}, the data {b.size} from "
                f"{b[0]:g} to {b[-1]:g}; regrid the data to the model's grid.")


def base_unet_config(base: DiffusionModel, overrides: Mapping[str, Any],
                     init_from: str) -> UNetConfig:
    """The base model's network configuration with the allowed ``overrides`` applied."""
    cfg = base.precond.net.config
    have = cfg.to_dict()
    for key, value in overrides.items():
        if key in FINETUNE_CHANGES:
            continue
        want = list(value) if isinstance(value, tuple) else value
        if key not in have or have[key] != want:
            raise ArgumentError(
                f"init_from={init_from!r}: field 'unet.{key}' differs: the model has "
                f"{have.get(key)!r}, the config asks for {value!r}; fine-tuning keeps the "
                f"network (only {list(FINETUNE_CHANGES)} may change): leave it out.")
    changes = {k: v for k, v in overrides.items() if k in FINETUNE_CHANGES}
    return UNetConfig.from_dict({**have, **changes})


def wind_channels(variables: Sequence[str]) -> tuple[int, ...]:
    """Indices of the channels that are east/north wind components (u850, v10, ...)."""
    return channels_of(variables, _WIND)


def check_pole_grid(grid: Grid) -> None:
    """ArgumentError unless ``grid`` is global with cell-centred rows next to both poles."""
    lat = np.sort(np.asarray(grid.lat, float))
    edge = 90.0 - np.abs(lat[[0, -1]])
    step = np.abs(np.diff(lat[:2])[0]), np.abs(np.diff(lat[-2:])[0])
    ok = grid.is_global and lat[0] < 0 < lat[-1] and all(
        0 < e <= s for e, s in zip(edge, step, strict=True))
    if not ok:
        raise ArgumentError(
            "lat_padding='pole' continues the field across the poles, which needs a global grid "
            "whose first and last rows lie within one row spacing of the poles (and not on "
            f"them); this grid has latitudes {lat[0]:g}..{lat[-1]:g} and "
            f"{'global' if grid.is_global else 'non-periodic'} longitudes: use "
            "unet={'lat_padding': 'zeros'} for regional grids.")


def pole_padding_config(cfg: UNetConfig, variables: Sequence[str], grid: Grid, *,
                        explicit: bool = False) -> UNetConfig:
    """``cfg`` checked for pole padding on ``grid``, its wind channels filled in."""
    if cfg.lat_padding != "pole":
        return cfg
    check_pole_grid(grid)
    if explicit:
        return cfg
    return dataclasses.replace(cfg, vector_channels=wind_channels(variables))


def lat_weights(grid: Grid) -> torch.Tensor:
    """Cosine-of-latitude weights normalised to mean 1 over the rows, shape (1, 1, H, 1)."""
    w = np.cos(np.deg2rad(np.asarray(grid.lat, float)))
    w = np.clip(w, 0.0, None)
    return torch.as_tensor(w / w.mean(), dtype=torch.float32).reshape(1, 1, -1, 1)
