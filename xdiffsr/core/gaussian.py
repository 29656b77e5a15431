"""Exact denoiser and exact posterior of a Gaussian prior (the analytic reference of the sampler).

The prior is ``x ~ N(mu, Sigma)`` over the flattened state with ``Sigma = U diag(lam) U^T + eta P``,
where ``U`` (N, r) has orthonormal columns, ``P = I - U U^T`` projects on their complement and
``eta``
is a floor variance (0 for a full-rank ``U``); or, for :class:`SpectralGaussianDenoiser`, a
stationary ``Sigma = B`` diagonal in the reflected Fourier basis
(:class:`~xdiffsr.core.covariance.SpectralCovariance`), whose denoiser is a filter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ArgumentError
from .covariance import SpectralCovariance


class GaussianDenoiser(nn.Module):
    """``D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^{-1} (x - mu)``, exact for a Gaussian prior.

    Parameters
    ----------
    mean : tensor, shape (C, H, W)
        ``mu``.
    eigvecs : tensor, shape (N, r)
        Orthonormal columns ``U`` with ``N = C*H*W``.
    eigvals : tensor, shape (r,)
        ``lam >= 0``.
    floor : float
        ``eta``, the variance on the complement of ``U`` (needed when ``r < N``).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        eigvecs: torch.Tensor,
        eigvals: torch.Tensor,
        *,
        floor: float = 0.0,
    ):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        U = torch.as_tensor(eigvecs, dtype=torch.float32)
        lam = torch.as_tensor(eigvals, dtype=torch.float32)
        if U.ndim != 2 or U.shape[0] != mean.numel() or lam.shape != (U.shape[1],):
            raise ArgumentError(
                f"eigvecs must be (N, r) with N = mean.numel() = {mean.numel()} and eigvals (r,); "
                f"got eigvecs {tuple(U.shape)}, eigvals {tuple(lam.shape)}."
            )
        if (lam < 0).any() or floor < 0:
            raise ArgumentError("eigvals and floor must be >= 0 (a covariance is positive).")
        self.register_buffer("mean", mean)
        self.register_buffer("U", U)
        self.register_buffer("lam", lam)
        self.floor = float(floor)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        B = x.shape[0]
        s2 = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(B, 1) ** 2
        z = (x - self.mean).reshape(B, -1)
        f = self.floor / (self.floor + s2)  # shrinkage on the complement
        coef = self.lam / (self.lam + s2) - f  # (B, r)
        out = z * f + ((z @ self.U) * coef) @ self.U.T
        return self.mean + out.reshape(x.shape)

    def covariance_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``Sigma v`` for ``v`` of shape (..., N)."""
        proj = v @ self.U
        return self.floor * (v - proj @ self.U.T) + (proj * self.lam) @ self.U.T

    def variance(self) -> torch.Tensor:
        """Prior variance ``diag(Sigma)``, shape (C, H, W)."""
        U2 = self.U.square()
        var = U2 @ self.lam + self.floor * (1 - U2.sum(dim=1))
        return var.clamp_min(0).reshape(self.mean.shape)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` prior samples, shape (n, C, H, W)."""
        N = self.U.shape[0]
        eps = torch.randn(n, N, generator=generator, device=self.U.device)
        proj = eps @ self.U
        z = self.floor**0.5 * (eps - proj @ self.U.T) + (proj * self.lam.sqrt()) @ self.U.T
        return self.mean + z.reshape(n, *self.mean.shape)


class SpectralGaussianDenoiser(nn.Module):
    """``D(x; sigma) = mu + B (B + sigma^2 I)^{-1} (x - mu)`` for a stationary Gaussian prior.

    ``B`` is diagonal in the reflected Fourier basis, so the exact denoiser is one filter per
    wavenumber ``P / (P + sigma^2)`` (two FFTs, no solve), and the denoiser's Jacobian
    ``sigma^2 dD/dx`` is Tweedie's covariance ``B (B / sigma^2 + I)^{-1}``: moment matching on
    this prior is exact. Same interface as :class:`GaussianDenoiser` (``covariance_matvec``,
    ``variance``, ``sample``), so :func:`gaussian_posterior` gives its dense reference.

    Parameters
    ----------
    mean : tensor, shape (C, H, W)
        ``mu``.
    covariance : SpectralCovariance
        ``B`` on (C, H, W) fields.
    """

    def __init__(self, mean: torch.Tensor, covariance: SpectralCovariance):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if tuple(mean.shape) != tuple(covariance.shape):
            raise ArgumentError(
                f"mean: shape {tuple(mean.shape)} does not match the covariance's "
                f"{tuple(covariance.shape)}."
            )
        self.register_buffer("mean", mean)
        self.cov = covariance

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        s = s.expand(x.shape[0])
        return self.mean + self.cov.shrink(x - self.mean, s).to(x.dtype)

    def covariance_matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``Sigma v`` for ``v`` of shape (..., N)."""
        out = self.cov(v.reshape(-1, *self.mean.shape))
        return out.reshape(v.shape)

    def variance(self) -> torch.Tensor:
        """Prior variance ``diag(Sigma)``, shape (C, H, W)."""
        return self.cov.row_variance()[..., None].expand(self.mean.shape).clone()

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` prior samples, shape (n, C, H, W)."""
        eps = torch.randn(n, *self.mean.shape, generator=generator, device=self.mean.device)
        return self.mean + self.cov.sqrt(eps)


def gaussian_posterior(
    prior: GaussianDenoiser,
    operators: Sequence[nn.Module],
    ys: Sequence[torch.Tensor],
    variances: Sequence[torch.Tensor],
    *,
    members: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Exact posterior of a Gaussian prior under linear-Gaussian observations (optimal
    interpolation).

    ``mean_a = mu + K (y - M mu)``, ``K = Sigma M^T (M Sigma M^T + R)^{-1}``, and the posterior
    variance ``diag(Sigma - K M Sigma)``. Samples are drawn by perturbed observations
    ``x_a = x_b + K (y + e - M x_b)``, exact in distribution for linear-Gaussian problems.

    Parameters
    ----------
    prior : GaussianDenoiser
    operators : sequence of affine operators with ``linear`` and ``adjoint``
        Each maps (B, C, H, W) -> (B, n_k).
    ys : sequence of tensors (n_k,)
    variances : sequence of tensors (n_k,)
        Observation-error variances ``R`` (diagonal); divide by a source weight to temper it.
    members : int
        Number of posterior samples to draw (0 for none).

    Returns
    -------
    mean : (C, H, W); var : (C, H, W); samples : (members, C, H, W) or None
    """
    shape = prior.mean.shape
    N = prior.mean.numel()

    def M(x):  # (B, N) -> (B, n)
        return torch.cat([op.linear(x.reshape(-1, *shape)) for op in operators], dim=1)

    y = torch.cat([torch.as_tensor(t, dtype=torch.float32).reshape(-1) for t in ys])
    R = torch.cat([torch.as_tensor(t, dtype=torch.float32).reshape(-1) for t in variances])
    offsets = torch.cat(
        [op(torch.zeros(1, *shape)) - op.linear(torch.zeros(1, *shape)) for op in operators], dim=1
    ).reshape(-1)
    n = y.numel()
    MT = torch.cat([_adjoint_rows(op, shape) for op in operators], dim=1)  # (N, n) = M^T
    SMT = prior.covariance_matvec(MT.T).T  # Sigma M^T, (N, n)
    S = M(SMT.T).T + torch.diag(R)  # M Sigma M^T + R, (n, n)
    L = torch.linalg.cholesky(S.double())
    mu = prior.mean.reshape(1, N)
    innov = (y - offsets) - M(mu)[0]
    w = torch.cholesky_solve(innov.double().reshape(-1, 1), L).float()
    mean = mu[0] + (SMT @ w)[:, 0]
    Linv_MS = torch.linalg.solve_triangular(L, SMT.T.double(), upper=False)  # (n, N)
    var = (prior.variance().reshape(-1) - Linv_MS.square().sum(0).float()).clamp_min(0)
    samples = None
    if members:
        xb = prior.sample(members, generator=generator).reshape(members, N)
        e = torch.randn(members, n, generator=generator) * R.sqrt()
        innov_b = (y - offsets) + e - M(xb)
        wb = torch.cholesky_solve(innov_b.T.double(), L).float()
        samples = (xb + (SMT @ wb).T).reshape(members, *shape)
    return mean.reshape(shape), var.reshape(shape), samples


def _adjoint_rows(op: nn.Module, shape) -> torch.Tensor:
    """Dense ``M^T`` (N, n) of an operator, by applying its adjoint to the identity."""
    n = op.linear(torch.zeros(1, *shape)).shape[1]
    return op.adjoint(torch.eye(n)).reshape(n, -1).T
