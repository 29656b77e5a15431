"""Training-data augmentation by the symmetries of the climate the data come from.

A symmetry of the data's distribution turns every training state into more states of the same
distribution, so the loss the network minimises is unchanged in expectation while the network
sees more of them. Two are offered; each holds only for some climates, so neither is on by
default:

``"lon_roll"``
    A rotation of the globe about its axis: each state shifted by a random whole number of
    longitude cells. Exact for a zonally symmetric climate (an aquaplanet, the Held-Suarez
    nature runs of :mod:`xdiffsr.osse`); not for the real atmosphere (land, orography).
``"lat_mirror"``
    The reflection across the equator, with the northward wind sign-flipped (a parcel moving
    poleward stays poleward): applied to half of the states. Exact for a climate symmetric
    between the hemispheres (Held-Suarez: its equilibrium temperature depends on
    ``sin^2(lat)``); not for the real atmosphere (seasons, continents).

Each needs a grid on which it is a permutation of the cells: ``lon_roll`` a global, evenly
spaced longitude axis, ``lat_mirror`` latitudes symmetric about the equator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xdiffsr.errors import ArgumentError
from xdiffsr.grid import Grid
from xdiffsr.names import QUANTITIES, parse_channel

__all__ = ["SYMMETRIES", "Augmentation", "channels_of", "check_augment", "northward_channels"]

#: The symmetries :class:`TrainConfig.augment <xdiffsr.train.TrainConfig>` accepts.
SYMMETRIES = ("lon_roll", "lat_mirror")


def check_augment(augment: Sequence[str]) -> tuple[str, ...]:
    """``augment`` as a tuple of distinct known symmetry names, or ArgumentError."""
    if isinstance(augment, str) or not isinstance(augment, Sequence):
        raise ArgumentError(f"augment must be a list of symmetry names from {list(SYMMETRIES)}, "
                            f"got {augment!r}.")
    bad = [a for a in augment if a not in SYMMETRIES]
    if bad:
        raise ArgumentError(f"augment has unknown symmetries {bad}; valid: {list(SYMMETRIES)} "
                            "(docs/training.md, 'Augmentation').")
    if len(set(augment)) != len(augment):
        raise ArgumentError(f"augment lists a symmetry twice: {list(augment)}.")
    return tuple(augment)


def channels_of(variables: Sequence[str], standard_names: Sequence[str]) -> tuple[int, ...]:
    """Indices of the channels whose quantity has one of ``standard_names`` (found by name:
    u850, v10, ...)."""
    out = []
    for i, name in enumerate(variables):
        q = QUANTITIES.get(parse_channel(name)[0])
        if q is not None and q.standard_name in standard_names:
            out.append(i)
    return tuple(out)


def northward_channels(variables: Sequence[str]) -> tuple[int, ...]:
    """Indices of the channels that are northward wind components (v850, v10, ...)."""
    return channels_of(variables, ("northward_wind",))


def _check_grid(augment: tuple[str, ...], grid: Grid) -> None:
    if "lon_roll" in augment:
        lon = np.asarray(grid.lon, float)
        d = np.diff(lon)
        if not grid.is_global or not np.allclose(d, d[0], rtol=1e-6, atol=1e-9):
            raise ArgumentError(
                "augment='lon_roll' shifts states around the globe, which needs a global, evenly "
                f"spaced longitude axis; this grid's runs {lon[0]:g}..{lon[-1]:g} "
                f"({'global' if grid.is_global else 'not global'}): leave 'lon_roll' out.")
    if "lat_mirror" in augment:
        lat = np.asarray(grid.lat, float)
        if not np.allclose(np.sort(lat), -np.sort(lat)[::-1], atol=1e-6):
            raise ArgumentError(
                "augment='lat_mirror' reflects states across the equator, which needs latitudes "
                f"symmetric about it; this grid's run {lat.min():g}..{lat.max():g}: leave "
                "'lat_mirror' out or regrid to a symmetric grid.")


class Augmentation:
    """Random symmetry transforms of training batches (B, C, H, W) on one grid.

    Parameters
    ----------
    augment : sequence of str
        Names from :data:`SYMMETRIES` (empty: the batches pass through untouched).
    grid : Grid
        The data's grid; checked for each symmetry (ArgumentError naming the fix).
    variables : sequence of str
        Channel names; the northward-wind ones change sign under ``lat_mirror``.
    """

    def __init__(self, augment: Sequence[str], grid: Grid, variables: Sequence[str]) -> None:
        self.augment = check_augment(augment)
        _check_grid(self.augment, grid)
        self.flip_sign = northward_channels(variables)

    def __bool__(self) -> bool:
        return bool(self.augment)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``x`` with each state transformed by its own random draw from ``gen``."""
        if not self.augment:
            return x
        B, W = x.shape[0], x.shape[-1]
        if "lon_roll" in self.augment:  # out[..., j] = x[..., (j - shift) mod W]
            shift = torch.randint(0, W, (B,), generator=gen, device=gen.device).to(x.device)
            j = torch.arange(W, device=x.device)
            idx = (j[None, :] - shift[:, None]) % W
            x = torch.gather(x, 3, idx[:, None, None, :].expand_as(x))
        if "lat_mirror" in self.augment:
            mirror = (torch.rand(B, generator=gen, device=gen.device) < 0.5).to(x.device)
            sign = torch.ones(x.shape[1], device=x.device, dtype=x.dtype)
            sign[list(self.flip_sign)] = -1.0
            flipped = x.flip(2) * sign[None, :, None, None]
            x = torch.where(mirror[:, None, None, None], flipped, x)
        return x
