"""Priors: the Gaussian prior, trained diffusion models, the weights registry, model references."""

from xdiffsr.models.diffusion import DiffusionModel
from xdiffsr.models.prior import GaussianPrior, Prior
from xdiffsr.models.reference import ModelRef, fingerprint, open_model
from xdiffsr.models.registry import fetch_weights, load_model

__all__ = [
    "DiffusionModel",
    "GaussianPrior",
    "ModelRef",
    "Prior",
    "fetch_weights",
    "fingerprint",
    "load_model",
    "open_model",
]
