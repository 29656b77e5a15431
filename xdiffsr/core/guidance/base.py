"""The guidance contract: a posterior denoiser that wraps a prior one (:class:`Guidance`), and
the batching of guidances over groups of rows (:func:`batch_guidances`).

Every guidance is a *denoiser*: it wraps a prior denoiser ``D(x; sigma)`` and returns an estimate
of ``E[x_0 | x_t, y]``, so every sampler runs guided (the habit of azula's ``MMPSDenoiser``).
With the score identity ``grad log p(x_t) = (D - x_t) / sigma^2``, adding ``sigma^2 * s_l`` to
the denoiser adds the likelihood score ``s_l = grad_x log p(y | x_t)`` to the prior score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ...errors import ArgumentError
from .likelihood import RowGroupedLikelihood

__all__ = ["Denoiser", "Guidance", "as_sigma", "batch_guidances"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """The noise level(s) ``sigma`` (a number or a tensor) as a float32 tensor of shape (B,)."""
    return (
        torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])
    )


class Guidance(nn.Module):
    """Base class of guidance methods: a posterior denoiser ``D_post(x, sigma)`` around a prior
    denoiser and observation likelihoods.

    What the sampler and the batching rely on, and nothing more:

    - :attr:`prior`: the prior denoiser it wraps (the Heun corrector runs on it when
      ``corrector_guidance=False``);
    - :attr:`likelihoods`: the observation likelihoods
      (:class:`~xdiffsr.core.guidance.likelihood.GaussianLikelihood` or a
      :class:`~xdiffsr.core.guidance.likelihood.RowGroupedLikelihood`);
    - :meth:`options`: the keyword options of the constructor (:attr:`option_names`), which
      two guidances must share to be batched together;
    - :meth:`with_likelihoods`: the same guidance over other likelihoods, and :meth:`regroup`:
      one guidance for a batch whose row groups have their own observations;
    - :meth:`probe_sigma`: the noise level at which its working memory is largest.

    A subclass implements ``forward(x, sigma)`` (``x`` of shape (B, C, H, W), ``sigma`` a number
    or (B,)) and, if its constructor is not ``(denoiser, likelihoods, **options)``, overrides
    :meth:`with_likelihoods`.

    Parameters
    ----------
    denoiser : callable
        Prior denoiser ``D(x, sigma)``.
    likelihoods : sequence of GaussianLikelihood
        The observation sources.
    """

    #: the constructor's keyword options (:meth:`options`)
    option_names: tuple[str, ...] = ()

    def __init__(self, denoiser: Denoiser, likelihoods: Sequence[nn.Module]):
        super().__init__()
        self.prior = denoiser
        self.likelihoods = nn.ModuleList(likelihoods)

    def options(self) -> dict[str, Any]:
        """The constructor's keyword options, by name."""
        return {k: getattr(self, k) for k in self.option_names}

    def with_likelihoods(self, likelihoods: Sequence[nn.Module]) -> Guidance:
        """The same guidance (prior, options) over ``likelihoods``."""
        return type(self)(self.prior, likelihoods, **self.options())

    @classmethod
    def regroup(cls, guidances: Sequence[Guidance], rows: Sequence[int]) -> Guidance:
        """One guidance for a batch of row groups, group ``k`` (``rows[k]`` rows) guided as
        ``guidances[k]``: their likelihoods as one
        :class:`~xdiffsr.core.guidance.likelihood.RowGroupedLikelihood`.

        Raises
        ------
        ArgumentError
            Guidances of different priors or options.
        """
        first = guidances[0]
        options = first.options()
        if any(g.prior is not first.prior or g.options() != options for g in guidances):
            raise ArgumentError(
                "the groups' denoisers must share the prior network and settings "
                f"({', '.join(first.option_names)})."
            )
        return first.with_likelihoods(
            [RowGroupedLikelihood([list(g.likelihoods) for g in guidances], rows)]
        )

    def probe_sigma(self, sigmas: torch.Tensor) -> float:
        """The noise level of ``sigmas`` where a batch needs the most memory (the first)."""
        return float(sigmas[0])


def batch_guidances(denoisers: Sequence[nn.Module], rows: Sequence[int]) -> nn.Module:
    """One guided denoiser for a batch whose consecutive row groups have their own observations.

    ``denoisers[k]`` is the posterior denoiser of group ``k`` (``rows[k]`` rows, e.g. the
    members of one time); all are of one kind (one :class:`Guidance` subclass, or the same
    prior denoiser) and share the prior network and settings. The result runs the network once
    on the whole batch and gives each row its own group's correction (:meth:`Guidance.regroup`):
    the same members as the separate denoisers, in one network batch.

    Raises
    ------
    ArgumentError
        Denoisers of different kinds, priors or settings.
    """
    dens = list(denoisers)
    first = dens[0]
    kinds = {type(d) for d in dens}
    if len(kinds) > 1 or len(dens) != len(rows):
        raise ArgumentError(
            f"batch_guidances needs one denoiser per row group, all of one kind; got "
            f"{len(dens)} for {len(rows)} groups, kinds {sorted(k.__name__ for k in kinds)}."
        )
    if not isinstance(first, Guidance):
        if any(d is not first for d in dens):
            raise ArgumentError("unguided groups must share one prior denoiser.")
        return first
    return type(first).regroup(dens, rows)
