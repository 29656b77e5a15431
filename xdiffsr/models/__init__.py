"""Priors: the Gaussian prior, trained diffusion models, the weights registry, model references."""

from xdiffsr.models.diffusion import DiffusionModel
from xdiffsr.models.latent import LatentDiffusionModel
from xdiffsr.models.prior import GaussianPrior, Prior, SpectralGaussianPrior
from xdiffsr.models.reference import fingerprint, model_handle, model_ref, resolve_handle
from xdiffsr.models.registry import (
    ModelRef,
    clear_model_cache,
    fetch_weights,
    load_model,
    model_cache_stats,
    open_model,
)

__all__ = [
    "DiffusionModel",
    "GaussianPrior",
    "LatentDiffusionModel",
    "ModelRef",
    "Prior",
    "SpectralGaussianPrior",
    "clear_model_cache",
    "fetch_weights",
    "fingerprint",
    "load_model",
    "model_cache_stats",
    "model_handle",
    "model_ref",
    "open_model",
    "resolve_handle",
]
