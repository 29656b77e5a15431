"""The ``Dataset.diffsr`` accessor: a thin delegate to :func:`xdiffsr.reconstruct.super_resolve`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from xdiffsr.reconstruct.api import super_resolve as _super_resolve


@xr.register_dataset_accessor("diffsr")
class DiffSRAccessor:
    """Super-resolution of the times of a Dataset from observations: ``ds.diffsr.super_resolve``."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def super_resolve(
        self, obs: Sequence[Any], weights: Sequence[float] | None = None, **options: Any
    ) -> xr.Dataset:
        return _super_resolve(self._ds, obs, weights, **options)

    # one docstring: the function's (the accessor passes this Dataset as ``ds``)
    super_resolve.__doc__ = (
        "``xdiffsr.super_resolve(ds, obs, weights, **options)`` with ``ds`` this Dataset.\n\n    "
        + (_super_resolve.__doc__ or "")
    )
