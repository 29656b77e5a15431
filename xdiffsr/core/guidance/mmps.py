"""Moment-matching posterior sampling with the network's Jacobian (``guidance="mmps"``;
Rozet et al., 2024)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .base import Denoiser, as_sigma
from .cg import cg_solve
from .likelihood import GaussianLikelihood, likelihood_row_norms
from .moment import MomentMatching

__all__ = ["MMPSGuidance", "build"]


class MMPSGuidance(MomentMatching):
    """Moment-matching posterior sampling (Rozet et al., 2024) as a posterior denoiser.

    ``D_post = D + sigma^2 J^T M^T (Sigma_y + sigma^2 M J M^T)^{-1} (y - M D)``, where ``J`` is the
    Jacobian of the prior denoiser, so ``sigma^2 J`` is Tweedie's covariance ``Cov[x_0 | x_t]``. The
    linear system is solved by ``cg_iters`` conjugate-gradient iterations of vector-Jacobian
    products. Exact for a Gaussian prior and linear operators; no ``Gamma`` to tune.

    Several sources are stacked into one system; a source weight ``w_k`` tempers its likelihood,
    ``w_k log N(y_k; M_k x, Sigma_k) = log N(y_k; M_k x, Sigma_k / w_k) + const``, so it divides the
    source's ``Sigma_y`` (a weight of 0 drops the source).

    Parameters
    ----------
    denoiser : callable
        Prior denoiser ``D(x, sigma)``.
    likelihoods : sequence of GaussianLikelihood
        Sources with linear (affine) operators exposing ``adjoint``.
    cg_iters : int
        Maximum conjugate-gradient iterations (each costs one vector-Jacobian product, a
        backward pass through the network). The correction ``J^T M^T u`` needs no extra one:
        ``u = sum_k alpha_k p_k`` is a combination of CG's directions, so ``J^T M^T u`` is the
        same combination of the products CG computed. One evaluation costs one forward and
        (at most) ``cg_iters`` backward passes.
    cg_tol : float
        Relative-residual tolerance of CG: a member's system is solved once its (preconditioned)
        residual norm falls below ``cg_tol`` times the initial one; all members solved ends CG
        before ``cg_iters``.
    lambda_g : float, keyword
        Optional scale of the correction (1, the default, is the exact moment-matched
        posterior).
    trust_region : bool, keyword
        (True by default) Scale each member's correction ``Delta`` down so that, in the
        observation-error norm ``|v|_R = |Sigma_y^{-1/2} v|``, its image ``M Delta`` is no
        longer than the innovation ``r = y - M D`` and does not increase the residual
        (``|r - M Delta|_R <= |r|_R``). Exact moment matching satisfies both (``M Delta =
        C (I + C)^{-1} r`` in whitened units, with ``C`` positive semi-definite), so the region
        never binds for a Gaussian prior; it stops a network whose Jacobian is not a covariance
        (states far from its training data) from overshooting the observations.

    References
    ----------
    Rozet, F., Andry, G., Lanusse, F., Louppe, G. (2024). Learning diffusion priors from
    observations by expectation maximization. NeurIPS.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        likelihoods: Sequence[GaussianLikelihood],
        *,
        cg_iters: int = 10,
        cg_tol: float = 1e-6,
        **options: Any,
    ):
        super().__init__(denoiser, likelihoods, cg_iters=cg_iters, cg_tol=cg_tol, **options)
        #: J^T M^T u as the combination of the VJPs CG computed (False: one more backward
        #: pass, the reference path the tests compare with)
        self._reuse_vjps = True
        self._row_norms = likelihood_row_norms(self.likelihoods) if self.likelihoods else \
            torch.zeros(0)

    def with_likelihoods(self, likelihoods) -> MMPSGuidance:
        out = super().with_likelihoods(likelihoods)
        out._reuse_vjps = self._reuse_vjps
        return out

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        if len(self.likelihoods) == 0:
            return self.prior(x, sigma)
        y, var_y = self.observed()
        s2 = sigma.reshape(-1, 1) ** 2
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            D = self.prior(x_in, sigma)
            r = (y - self.operator(D)).detach()

            def vjp(v: torch.Tensor) -> torch.Tensor:  # J^T M^T v
                (g,) = torch.autograd.grad(D, x_in, self.operator.adjoint(v), retain_graph=True)
                return g

            def matvec(v: torch.Tensor):  # (Sigma_y + sigma^2 M J M^T) v, and J^T M^T v
                g = vjp(v)
                return var_y * v + s2 * self.operator.linear(g), g

            # Jacobi preconditioner: Sigma_y + sigma^2/(1+sigma^2) |m_i|^2, the diagonal for a
            # unit-variance white prior (J = I / (1 + sigma^2)); sources in mixed units need it.
            diag = var_y + s2 / (1 + s2) * self._row_norms
            u, g_u = cg_solve(matvec, r, iters=self.cg_iters, tol=self.cg_tol, diag=diag)
            if not self._reuse_vjps:  # the reference path: one more backward pass
                g_u = vjp(u)
            elif g_u is None:  # CG took no step (every residual already zero): u = 0
                g_u = torch.zeros_like(x_in)
            step = s2.reshape(-1, 1, 1, 1) * g_u
        return D.detach() + self.lambda_g * self.trusted(step, r, var_y)


def build(denoiser: Denoiser, likelihoods: Sequence[GaussianLikelihood],
          options: Mapping[str, Any], covariance: Callable[[], Any]) -> MMPSGuidance:
    """``guidance="mmps"`` from the sampler options (``cg_iters``, ``cg_tol``, ``lambda_g``)."""
    return MMPSGuidance(denoiser, likelihoods, cg_iters=options["cg_iters"],
                        cg_tol=options["cg_tol"], lambda_g=options["lambda_g"])
