"""Guidance methods: posterior denoisers around a prior one, one module per method.

:mod:`.base` (the contract every method honours, and batching over row groups),
:mod:`.likelihood` (Gaussian likelihoods), :mod:`.cg` (conjugate gradients), :mod:`.score`
(``"sda"``), :mod:`.mmps`, :mod:`.jf` (the default), :mod:`.band` (one method inside a band of
noise levels, another outside), :mod:`.passes` (counting network passes) and :mod:`.registry`
(the table from name to builder).
"""

from .band import NoiseBandGuidance
from .base import Denoiser, Guidance, batch_guidances
from .cg import conjugate_gradient
from .jf import JFGuidance
from .likelihood import GaussianLikelihood, RowGroupedLikelihood
from .mmps import MMPSGuidance
from .passes import PassCounter
from .registry import GUIDANCE_BUILDERS, build_guidance, guidance_names, register_guidance
from .score import ScoreGuidance

__all__ = [
    "GUIDANCE_BUILDERS",
    "Denoiser",
    "GaussianLikelihood",
    "Guidance",
    "JFGuidance",
    "MMPSGuidance",
    "NoiseBandGuidance",
    "PassCounter",
    "RowGroupedLikelihood",
    "ScoreGuidance",
    "batch_guidances",
    "build_guidance",
    "conjugate_gradient",
    "guidance_names",
    "register_guidance",
]
