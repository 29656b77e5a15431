"""Pure-torch diffusion core: networks, preconditioning, schedules, samplers, likelihoods and
operators.

Nothing here imports xarray; tensors are (B, C, H, W) = (members, variables, lat, lon).
"""

from .gaussian import GaussianDenoiser, gaussian_posterior
from .guidance import GaussianLikelihood, MMPSGuidance, ScoreGuidance, conjugate_gradient
from .memory import fit_batch_size, parse_memory
from .operators import CallableOperator, SparseOperator, StackedOperator, stack_operators
from .precond import EDMLoss, EDMPrecond, edm_coefficients
from .runtime import NetworkRunner, with_network_options
from .sampler import heun_sampler
from .schedule import karras_sigmas
from .unet import SongUNet, UNetConfig

__all__ = [
    "CallableOperator",
    "EDMLoss",
    "EDMPrecond",
    "GaussianDenoiser",
    "GaussianLikelihood",
    "MMPSGuidance",
    "NetworkRunner",
    "ScoreGuidance",
    "SongUNet",
    "SparseOperator",
    "StackedOperator",
    "UNetConfig",
    "conjugate_gradient",
    "edm_coefficients",
    "fit_batch_size",
    "gaussian_posterior",
    "heun_sampler",
    "karras_sigmas",
    "parse_memory",
    "stack_operators",
    "with_network_options",
]
