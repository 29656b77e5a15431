"""The table of guidance methods: name -> builder. Settings validation
(:class:`xdiffsr.reconstruct.settings.SamplerSettings`), the sampler
(:mod:`xdiffsr.reconstruct.sample`) and the command line read it; a new method is one module
with a :class:`~xdiffsr.core.guidance.base.Guidance` subclass and a ``build`` function, plus one
row here (or :func:`register_guidance` from outside the package)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from ...errors import ArgumentError
from . import jf, mmps, score
from .base import Denoiser, Guidance

__all__ = ["GUIDANCE_BUILDERS", "Builder", "build_guidance", "guidance_names",
           "register_guidance"]

#: ``build(denoiser, likelihoods, options, covariance) -> Guidance``: ``options`` are the
#: sampler options by name (every field of ``SamplerSettings``), ``covariance()`` the prior's
#: stationary covariance (estimated on first call: call it only if the method needs it).
Builder = Callable[[Denoiser, Sequence[nn.Module], Mapping[str, Any], Callable[[], Any]], Guidance]

#: name -> builder of every guidance method; ``"none"`` (unguided) is not a row
GUIDANCE_BUILDERS: dict[str, Builder] = {
    "sda": score.build,
    "mmps": mmps.build,
    "jf": jf.build,
}


def guidance_names() -> tuple[str, ...]:
    """The valid values of the ``guidance`` option: every row of the table, and ``"none"``."""
    return (*GUIDANCE_BUILDERS, "none")


def register_guidance(name: str, build: Builder) -> None:
    """Add a guidance method ``name`` (a new row of :data:`GUIDANCE_BUILDERS`).

    Raises
    ------
    ArgumentError
        A name already taken, or ``build`` not callable.
    """
    if not isinstance(name, str) or name in guidance_names() or not callable(build):
        raise ArgumentError(
            f"register_guidance({name!r}, {build!r}): give a new name (taken: "
            f"{guidance_names()}) and a callable builder."
        )
    GUIDANCE_BUILDERS[name] = build


def build_guidance(name: str, denoiser: Denoiser, likelihoods: Sequence[nn.Module],
                   options: Mapping[str, Any], covariance: Callable[[], Any]) -> Guidance:
    """The guidance ``name`` around ``denoiser`` (its row of :data:`GUIDANCE_BUILDERS`).

    Raises
    ------
    ArgumentError
        An unknown name.
    """
    if name not in GUIDANCE_BUILDERS:
        raise ArgumentError(f"guidance={name!r}; choose one of {guidance_names()}.")
    return GUIDANCE_BUILDERS[name](denoiser, likelihoods, options, covariance)
