"""Observations to likelihoods in the prior's normalised units (one place for the Gamma rule)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from xdiffsr.core.likelihood import GaussianLikelihood
from xdiffsr.core.operators import CallableOperator, SparseOperator
from xdiffsr.models.prior import Prior


def likelihoods(blocks: list[tuple[Any, float]], prior: Prior, device) -> list:
    """One likelihood per ``(block, weight)``: the prior's normalisation folded into each
    source's operator, ``M(x) = A (center + scale x)`` (``center``, ``scale``:
    :meth:`Prior.normalisation`, fields of the state's shape), and its ``Gamma`` (filled in every
    block by :meth:`~xdiffsr.observations.base.Observations.at_time`) into the prior's units.

    A latent prior composes each operator with its decoder (:meth:`Prior.wrap_operator`)."""
    C, H, W = prior.state_shape
    center_f, scale_f = prior.normalisation()  # (C, H, W): per channel, or per cell
    s, c = np.asarray(scale_f).reshape(-1), np.asarray(center_f).reshape(-1)
    scale_t = torch.as_tensor(s, dtype=torch.float32, device=device).reshape(1, C, H, W)
    center_t = torch.as_tensor(c, dtype=torch.float32, device=device).reshape(1, C, H, W)
    out = []
    for block, weight in blocks:
        if block.operator is not None:  # callable on the physical state
            f = block.operator
            op = CallableOperator(lambda x, f=f: f(center_t + scale_t * x), (C, H, W))
            gam = block.gamma
        else:
            A = block.matrix @ sp.diags(s)
            op = SparseOperator(A, (C, H, W), offset=block.matrix @ c).to(device)
            # Gamma is dimensionless: in units of the prior variance of the observed variable
            gam = block.gamma * prior.scale[block.var_index] ** 2
        y = torch.as_tensor(block.y, dtype=torch.float32)
        op = prior.wrap_operator(op, device)
        lik = GaussianLikelihood(y, op, sigma_y=block.variance, gamma=gam, weight=weight)
        out.append(lik.to(device))
    return out
