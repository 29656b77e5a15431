"""xdiffsr: zero-shot multimodal atmospheric super-resolution with diffusion priors, for xarray.

``import xdiffsr`` registers the ``Dataset.diffsr`` accessor::

    ens = times_ds.diffsr.super_resolve(obs=[igra_df, coarse_ds], weights=[1.0, 0.5], model=model)
"""

from __future__ import annotations

# first: imports tqdm.auto with its "IProgress not found" warning silenced (pooch imports it)
from xdiffsr import progress as _progress  # noqa: F401

# isort: split
from xdiffsr import accessor as _accessor  # noqa: F401  (registers Dataset.diffsr)
from xdiffsr._version import __version__
from xdiffsr.errors import (
    ArgumentError,
    CoordinateError,
    DivergenceError,
    FormatError,
    ModelError,
    ObservationError,
    StoreLockedError,
    UnitsError,
    XDiffSRError,
    XDiffSRWarning,
)
from xdiffsr.models import (
    DiffusionModel,
    GaussianPrior,
    LatentDiffusionModel,
    ModelRef,
    Prior,
    SpectralGaussianPrior,
    load_model,
    open_model,
)
from xdiffsr.observations import (
    CallableObservations,
    ColumnObservations,
    GridObservations,
    Observations,
    PointObservations,
)
from xdiffsr.reconstruct import (
    Reconstruction,
    SamplerSettings,
    reconstruct_to_zarr,
    super_resolve,
)

__all__ = [
    "ArgumentError",
    "CallableObservations",
    "ColumnObservations",
    "CoordinateError",
    "DiffusionModel",
    "DivergenceError",
    "FormatError",
    "GaussianPrior",
    "GridObservations",
    "LatentDiffusionModel",
    "ModelError",
    "ModelRef",
    "ObservationError",
    "Observations",
    "PointObservations",
    "Prior",
    "Reconstruction",
    "SamplerSettings",
    "SpectralGaussianPrior",
    "StoreLockedError",
    "UnitsError",
    "XDiffSRError",
    "XDiffSRWarning",
    "__version__",
    "load_model",
    "open_model",
    "reconstruct_to_zarr",
    "super_resolve",
]
