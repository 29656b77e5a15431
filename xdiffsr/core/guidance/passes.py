"""Counting the network passes of a denoiser (benchmarks and tests of a guidance's cost)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Denoiser

__all__ = ["PassCounter"]


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts the backward passes through the wrapped network."""

    @staticmethod
    def forward(ctx, x, counter):
        ctx.counter = counter
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.counter.backward_passes += 1
        ctx.counter.backward_rows += grad.shape[0]
        return grad, None


class PassCounter(nn.Module):
    """A denoiser that counts the network passes of the denoiser it wraps.

    ``forward_passes`` counts calls (one forward pass of a batch each); ``backward_passes``
    counts vector-Jacobian products through it (``torch.autograd.grad`` or ``backward`` reaching
    its output); ``forward_rows`` and ``backward_rows`` add up their batch sizes (members), so
    ``(forward_rows + backward_rows) / members`` is the number of passes per member. For
    benchmarks and tests: wrap a guidance's ``prior`` to count its cost.
    """

    def __init__(self, denoiser: Denoiser):
        super().__init__()
        self.denoiser = denoiser
        self.forward_passes = self.backward_passes = 0
        self.forward_rows = self.backward_rows = 0

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.forward_passes += 1
        self.forward_rows += x.shape[0]
        out = self.denoiser(x, sigma)
        return _CountBackward.apply(out, self) if out.requires_grad else out
