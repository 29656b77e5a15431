"""What the two moment-matching guidances (:mod:`~xdiffsr.core.guidance.mmps`,
:mod:`~xdiffsr.core.guidance.jf`) share: the stacked sources, the CG options and the
observation-space trust region."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import ArgumentError
from ..operators import stack_operators
from .base import Denoiser, Guidance
from .likelihood import GaussianLikelihood

__all__ = ["MomentMatching", "obs_trust"]


def obs_trust(m_step: torch.Tensor, r: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Per-member factor in [0, 1] of the observation-space trust region of moment matching:
    the image ``m_step`` (B, n) of a correction may not be longer than the innovation ``r``
    nor increase the residual, in the norm weighted by ``1 / var``."""
    w = 1.0 / var
    mm = (m_step.square() * w).sum(dim=1)
    rr = (r.square() * w).sum(dim=1)
    rm = (r * m_step * w).sum(dim=1)
    tiny = torch.finfo(mm.dtype).tiny
    limit = torch.minimum((rr / mm.clamp_min(tiny)).sqrt(), 2 * rm / mm.clamp_min(tiny))
    factor = torch.where(mm > 0, limit.clamp(0.0, 1.0), torch.ones_like(mm))
    return torch.where(torch.isfinite(factor), factor, torch.zeros_like(factor))


class MomentMatching(Guidance):
    """Base of the moment-matching guidances: the sources kept (weight > 0: a weight of 0
    drops a source), stacked into one operator, and the options of the solve.

    A source weight ``w_k`` tempers its likelihood, ``w_k log N(y_k; M_k x, Sigma_k) =
    log N(y_k; M_k x, Sigma_k / w_k) + const``, so it divides the source's ``Sigma_y``.
    """

    option_names = ("cg_iters", "cg_tol", "lambda_g", "trust_region")

    def __init__(self, denoiser: Denoiser, likelihoods: Sequence[GaussianLikelihood], *,
                 cg_iters: int, cg_tol: float, lambda_g: float = 1.0, trust_region: bool = True):
        if not (0.0 <= cg_tol < 1.0):
            raise ArgumentError(f"cg_tol={cg_tol!r} must be in [0, 1).")
        super().__init__(denoiser, [lik for lik in likelihoods if lik.weight > 0])
        self.operator = stack_operators([lik.operator for lik in self.likelihoods])
        self.cg_iters = int(cg_iters)
        self.cg_tol = float(cg_tol)
        self.trust_region = bool(trust_region)
        self.lambda_g = float(lambda_g)

    def observed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` and the tempered error variances ``Sigma_y / w`` of the stacked sources."""
        y = torch.cat([lik.y for lik in self.likelihoods])
        var_y = torch.cat([lik.sigma_y / lik.weight for lik in self.likelihoods])
        return y, var_y

    def trusted(self, step: torch.Tensor, r: torch.Tensor, var_y: torch.Tensor) -> torch.Tensor:
        """``step`` (B, ...) scaled into the trust region (:func:`obs_trust`) if it is on."""
        if not self.trust_region:
            return step
        factor = obs_trust(self.operator.linear(step), r, var_y)
        return step * factor.reshape(-1, *([1] * (step.ndim - 1)))
