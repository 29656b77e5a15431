"""Gaussian observation likelihoods and guidance: the names of :mod:`xdiffsr.core.guidance`
under their former path (kept so that ``from xdiffsr.core.likelihood import ...`` works)."""

from . import guidance
from .guidance import *  # noqa: F403 (the former names, and the rest of the family)

__all__ = list(guidance.__all__)
