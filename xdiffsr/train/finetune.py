"""Fine-tuning from a released model, pole padding and the latitude weights of the loss.

A fine-tuning run (``TrainConfig.init_from``) starts from a :class:`~xdiffsr.DiffusionModel`'s
weights and keeps its normalisation, grid, variables and network; only the latitude padding of
the convolutions may change (zeros -> across the poles), since it changes no weight, and a
latitude embedding may be added (``unet={"lat_embedding": True}``: a new parameter, zero at the
start, so the run starts from the base model's function; never removed, which would drop
learned weights).
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
from xdiffsr.train.config import TrainConfig

__all__ = ["base_unet_config", "check_base_model", "check_pole_grid", "lat_weights",
           "load_base_weights", "network_config", "pole_padding_config", "wind_channels"]

#: UNetConfig fields a fine-tuning run may change: they change no weight of the base model
#: (``lat_embedding`` only from False to True: it adds a parameter that starts at zero).
FINETUNE_CHANGES = ("lat_padding", "vector_channels", "lat_embedding")
#: Parameters a fine-tuning may add to the base model's (``lat_embedding=True``).
_ADDED = ("net.lat_embed",)
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
    if have.get("lat_embedding") and changes.get("lat_embedding", True) is not True:
        raise ArgumentError(
            f"init_from={init_from!r}: field 'unet.lat_embedding' differs: the model has a "
            f"learned latitude embedding, the config asks for {changes['lat_embedding']!r}; "
            "removing it would drop trained weights: leave it out.")
    return UNetConfig.from_dict({**have, **changes})


def load_base_weights(precond: torch.nn.Module, base: DiffusionModel) -> None:
    """Copy ``base``'s weights into ``precond``; parameters the fine-tuning added (a latitude
    embedding) keep their initial zeros. Any other mismatch is an ArgumentError."""
    result = precond.load_state_dict(base.precond.state_dict(), strict=False)
    added = [k for k in result.missing_keys if k in _ADDED]
    wrong = [k for k in result.missing_keys if k not in _ADDED] + list(result.unexpected_keys)
    if wrong:
        raise ArgumentError(f"the base model {base.name!r} and the fine-tuned network differ in "
                            f"the weights {wrong}; fine-tuning keeps the network.")
    for key in added:
        if precond.get_parameter(key).detach().abs().max() != 0:
            raise ArgumentError(f"the added parameter {key!r} must start at zero.")


def network_config(config: TrainConfig, header: Mapping[str, Any] | None,
                   base: DiffusionModel | None, variables: Sequence[str],
                   grid: Grid) -> UNetConfig:
    """The network of a training run: a checkpoint's (resuming), the base model's with the
    allowed changes (fine-tuning), or ``config``'s; pole padding checked against ``grid``."""
    if header is not None and "unet_config" in header:
        cfg = UNetConfig.from_dict(header["unet_config"])
    elif base is not None:
        cfg = base_unet_config(base, config.unet, config.init_from)
    else:
        cfg = config.unet_config(len(variables), grid.shape)
    return pole_padding_config(cfg, variables, grid, explicit="vector_channels" in config.unet)


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
