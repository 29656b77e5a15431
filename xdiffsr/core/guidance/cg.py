"""Batched conjugate gradients, Jacobi-preconditioned, with Steihaug's stop at non-positive
curvature: the linear solves of moment-matching guidance."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["cg_solve", "conjugate_gradient"]


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    iters: int = 10,
    tol: float = 1e-6,
    diag: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``A u = b`` for symmetric positive ``A`` by batched (Jacobi-preconditioned) CG.

    ``b`` has shape (B, n); each row is solved independently with the same number of iterations
    (converged rows simply stop moving). A row has converged when its preconditioned residual norm
    has fallen below ``tol`` times its initial one; the loop ends early, after at most ``iters``
    iterations, once every row has (one host synchronisation per iteration, negligible next to a
    vector-Jacobian product through a network). ``diag`` (B, n) or (n,), an
    estimate of ``diag(A)``, preconditions systems whose rows have very different scales (mixed
    units across observation sources).
    """
    return cg_solve(lambda p: (matvec(p), None), b, iters=iters, tol=tol, diag=diag)[0]


def cg_solve(
    matvec: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
    b: torch.Tensor,
    *,
    iters: int,
    tol: float,
    diag: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`conjugate_gradient` that also returns ``L u = sum_k alpha_k L p_k`` for a linear map
    ``L`` whose values ``L p`` ``matvec`` returns next to ``A p`` (None: not tracked).

    ``u`` is the sum of the CG steps ``alpha_k p_k``, so for MMPS the state-space correction
    ``J^T M^T u`` is the same combination of the vector-Jacobian products CG already computed:
    no extra backward pass.
    """
    inv_d = torch.ones_like(b) if diag is None else 1.0 / diag.expand_as(b)
    u = torch.zeros_like(b)
    Lu = None
    r = b.clone()
    z = r * inv_d
    p = z.clone()
    rz = (r * z).sum(dim=1, keepdim=True)
    floor = tol**2 * rz
    live = torch.ones_like(rz, dtype=torch.bool)
    for _ in range(iters):
        live = live & (rz > floor)
        if not bool(live.any()):  # every row converged: skip the remaining matvecs
            break
        Ap, Lp = matvec(p)
        pAp = (p * Ap).sum(dim=1, keepdim=True)
        # A row stops for good once converged or when it meets non-positive (or non-finite)
        # curvature: A = Sigma_y + sigma^2 M J M^T is positive definite only if the network's
        # Jacobian J is (Steihaug's truncated CG keeps the last iterate instead of diverging).
        live = live & torch.isfinite(pAp) & (pAp > 0)
        alpha = torch.where(live, rz / torch.where(live, pAp, torch.ones_like(pAp)), 0.0)
        u = u + alpha * p
        if Lp is not None:
            a = alpha.reshape(-1, *([1] * (Lp.ndim - 1)))
            # a dead row's alpha is 0, but 0 * inf is nan: keep its value instead
            step = torch.where(a != 0, a * Lp, 0.0)
            Lu = step if Lu is None else Lu + step
        r = torch.where(live, r - alpha * Ap, r)
        z = r * inv_d
        rz_new = (r * z).sum(dim=1, keepdim=True)
        beta = torch.where(live, rz_new / rz.clamp_min(1e-30), 0.0)
        p = torch.where(live, z + beta * p, p)
        rz = torch.where(live, rz_new, rz)
    return u, Lu
