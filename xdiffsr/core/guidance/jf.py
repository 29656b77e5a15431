"""Jacobian-free moment matching (``guidance="jf"``, the default): MMPS with the prior's
stationary covariance in place of the network's Jacobian, and MMPS itself in a band of noise
levels (``mmps_sigmas``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .band import NoiseBandGuidance
from .base import Denoiser, Guidance, as_sigma
from .cg import cg_solve
from .likelihood import GaussianLikelihood, likelihood_row_norms
from .mmps import build as build_mmps
from .moment import MomentMatching

__all__ = ["JF_CG_ITERS", "JFGuidance", "build"]

#: CG iterations of Jacobian-free guidance (its products cost FFTs, not network passes)
JF_CG_ITERS = 10


class JFGuidance(MomentMatching):
    """Jacobian-free moment matching: MMPS with a prior covariance in place of the network's
    Jacobian.

    ``D_post = D + S M^T (Sigma_y + M S M^T)^{-1} (y - M D)`` with ``S = sigma^2 B (B +
    sigma^2 I)^{-1}``, Tweedie's covariance of a Gaussian prior of covariance ``B``
    (:class:`~xdiffsr.core.covariance.SpectralCovariance`) where MMPS has ``sigma^2 dD/dx_t``.
    One forward pass per evaluation and no backward pass: CG's products cost an FFT, not the
    network. Exact for a Gaussian prior of covariance ``B`` and linear operators: with a
    stationary ``B`` estimated from the prior, exact only for a prior whose covariance is
    stationary.

    Parameters
    ----------
    denoiser : callable
        Prior denoiser ``D(x, sigma)``.
    likelihoods : sequence of GaussianLikelihood
        Sources with linear (affine) operators exposing ``adjoint``; weights divide
        ``Sigma_y`` as in :class:`~xdiffsr.core.guidance.mmps.MMPSGuidance`.
    covariance : callable
        ``covariance(v, sigma)``: Tweedie's covariance applied to ``v`` (B, *state shape),
        symmetric positive semi-definite; with a ``variance(sigma)`` method (per-channel mean
        diagonal) for the preconditioner, else a unit variance is assumed.
    cg_iters, cg_tol : int, float
        Conjugate gradients on the observation-space system (cheap: no network).
    lambda_g : float, keyword
        Scale of the correction (1).
    trust_region : bool, keyword
        As in :class:`~xdiffsr.core.guidance.mmps.MMPSGuidance`.
    """

    option_names = (*MomentMatching.option_names, "covariance")

    def __init__(
        self,
        denoiser: Denoiser,
        likelihoods: Sequence[GaussianLikelihood],
        covariance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        cg_iters: int = 50,
        cg_tol: float = 1e-4,
        **options: Any,
    ):
        super().__init__(denoiser, likelihoods, cg_iters=cg_iters, cg_tol=cg_tol, **options)
        self.covariance = covariance

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        with torch.no_grad():
            D = self.prior(x, sigma)
            if len(self.likelihoods) == 0:
                return D
            y, var_y = self.observed()
            r = y - self.operator(D)

            def matvec(v: torch.Tensor):  # (Sigma_y + M S M^T) v, and S M^T v
                g = self.covariance(self.operator.adjoint(v), sigma)
                return var_y * v + self.operator.linear(g), g

            # Jacobi preconditioner: the diagonal of M S M^T for S = mean variance * I
            var = getattr(self.covariance, "variance", None)
            s_diag = var(sigma).mean(dim=-1, keepdim=True) if var is not None else 1.0
            diag = var_y + s_diag * likelihood_row_norms(self.likelihoods).to(r.device)
            _, step = cg_solve(matvec, r, iters=self.cg_iters, tol=self.cg_tol, diag=diag)
            if step is None:
                return D
            step = self.trusted(step, r, var_y)
        return D + self.lambda_g * step


def build(denoiser: Denoiser, likelihoods: Sequence[GaussianLikelihood],
          options: Mapping[str, Any], covariance: Callable[[], Any]) -> Guidance:
    """``guidance="jf"`` from the sampler options: :class:`JFGuidance` (``jf_cg_iters``
    iterations, default :data:`JF_CG_ITERS`; ``cg_tol``, ``lambda_g``) with MMPS
    (:func:`xdiffsr.core.guidance.mmps.build`) in the noise band ``mmps_sigmas`` unless it is
    None. ``covariance()`` gives the prior's stationary covariance."""
    jf = JFGuidance(denoiser, likelihoods, covariance(),
                    cg_iters=options.get("jf_cg_iters", JF_CG_ITERS),
                    cg_tol=options["cg_tol"], lambda_g=options["lambda_g"])
    if options["mmps_sigmas"] is None:
        return jf
    mmps = build_mmps(denoiser, likelihoods, options, covariance)
    return NoiseBandGuidance(jf, mmps, options["mmps_sigmas"])
