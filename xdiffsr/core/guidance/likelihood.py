"""Gaussian observation likelihoods: one source (:class:`GaussianLikelihood`, Eq. 13 of
Chakraborty et al., 2025) and the sources of several groups of batch rows as one
(:class:`RowGroupedLikelihood`, how guidance is batched over times)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import ArgumentError
from ..operators import as_operator, group_operators, row_norms_sq, stack_operators

__all__ = ["GaussianLikelihood", "RowGroupedLikelihood", "likelihood_row_norms"]


def _per_obs(value, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if t.numel() not in (1, n):
        raise ArgumentError(f"{name} has {t.numel()} values for {n} observations; give 1 or {n}.")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ArgumentError(f"{name} must be finite and >= 0, got min {t.min().item():g}.")
    return t.expand(n).clone()


class GaussianLikelihood(nn.Module):
    """One observation source with Gaussian errors, Eq. 13 of Chakraborty et al. (2025).

    ``log p(y | x_t) = -1/2 sum_i (y_i - M(D(x_t))_i)^2 / (Sigma_y,i + sigma^2 Gamma_i)``

    Parameters
    ----------
    y : tensor, shape (n,)
        Observed values.
    operator : SparseOperator or callable
        ``M``, mapping a state ``(B, C, H, W)`` to ``(B, n)``.
    sigma_y : float or tensor (n,)
        Observation-error variance ``Sigma_y`` (squared units of ``y``).
    gamma : float or tensor (n,)
        ``Gamma``: inflation of the variance with the noise level, in squared units of ``y`` per
        unit of ``sigma^2`` (the paper's guidance only; MMPS ignores it).
    weight : float
        Weight of this source's log-likelihood in the sum of Eq. 14 (>= 0).
    state_shape : tuple
        ``(C, H, W)``, needed to wrap a plain callable.
    """

    def __init__(
        self,
        y,
        operator,
        *,
        sigma_y=1.0,
        gamma=1.0,
        weight: float = 1.0,
        state_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        y = torch.as_tensor(y, dtype=torch.float32).reshape(-1)
        n = y.numel()
        if not torch.isfinite(y).all():
            raise ArgumentError("y contains NaN or inf; drop missing observations before guiding.")
        if not (weight >= 0):
            raise ArgumentError(f"weight={weight!r} must be >= 0.")
        self.register_buffer("y", y)
        self.register_buffer("sigma_y", _per_obs(sigma_y, n, "sigma_y"))
        self.register_buffer("gamma", _per_obs(gamma, n, "gamma"))
        self.weight = float(weight)
        shape = state_shape if state_shape is not None else getattr(operator, "state_shape", None)
        self.operator = as_operator(operator, shape)

    @property
    def n_obs(self) -> int:
        return self.y.numel()

    def log_prob(self, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Weighted ``w log p(y | x_t)`` evaluated on the denoised ``x0`` (B, C, H, W) -> (B,)."""
        var = self.sigma_y + sigma.reshape(-1, 1) ** 2 * self.gamma
        r = self.y - self.operator(x0)
        return -0.5 * self.weight * (r.square() / var).sum(dim=1)


class RowGroupedLikelihood(nn.Module):
    """The observations of several groups of batch rows as one source: group ``k`` (``rows[k]``
    consecutive rows, e.g. the members of one time) is observed by its own sources.

    Each group's sources are stacked (``y``, ``Sigma_y / w``, ``Gamma / w``: a weight tempers
    its source as in :class:`~xdiffsr.core.guidance.mmps.MMPSGuidance` and, for the paper's
    guidance, Eq. 14) and padded to the largest group's count with ``y = 0``, ``Sigma_y = 1``,
    ``Gamma = 0`` and operator rows of zero, which no guidance moves: the padding's residual is
    zero. So ``y``, ``sigma_y`` and ``gamma`` have shape ``(sum(rows), n)``, and a guidance
    over this source gives each row the correction of its own group's sources.

    Parameters
    ----------
    groups : sequence of sequences of GaussianLikelihood
        The sources of each group (weight-0 sources are dropped).
    rows : sequence of int
        Batch rows of each group, in order.
    """

    def __init__(self, groups: Sequence[Sequence[GaussianLikelihood]], rows: Sequence[int]):
        super().__init__()
        if len(groups) != len(rows):
            raise ArgumentError(f"{len(groups)} groups of sources for {len(rows)} row counts.")
        kept = [[lik for lik in liks if lik.weight > 0] for liks in groups]
        sizes = [sum(lik.n_obs for lik in liks) for liks in kept]
        n = max(sizes, default=0)
        device = next((lik.y.device for liks in kept for lik in liks), torch.device("cpu"))

        def rows_of(values: list[torch.Tensor], pad: float, size: int, r: int) -> torch.Tensor:
            v = torch.cat(values) if values else torch.zeros(0, device=device)
            return nn.functional.pad(v, (0, n - size), value=pad).expand(r, n)

        y, var, gamma = [], [], []
        for liks, size, r in zip(kept, sizes, rows):
            y.append(rows_of([lik.y for lik in liks], 0.0, size, r))
            var.append(rows_of([lik.sigma_y / lik.weight for lik in liks], 1.0, size, r))
            gamma.append(rows_of([lik.gamma / lik.weight for lik in liks], 0.0, size, r))
        self.register_buffer("y", torch.cat(y))
        self.register_buffer("sigma_y", torch.cat(var))
        self.register_buffer("gamma", torch.cat(gamma))
        self.weight = 1.0
        ops = [stack_operators([lik.operator for lik in liks]) if liks else None
               for liks in kept]
        self.operator = group_operators(ops, rows, sizes)

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[1])

    log_prob = GaussianLikelihood.log_prob


def likelihood_row_norms(likelihoods: Sequence[nn.Module]) -> torch.Tensor:
    """``|m_i|^2`` of every observation row of ``likelihoods`` (1 where an operator does not
    say), concatenated: the scale of a Jacobi preconditioner."""
    out = []
    for lik in likelihoods:
        out.append(row_norms_sq(lik.operator, lik.n_obs).to(lik.y.device))
    return torch.cat(out)
