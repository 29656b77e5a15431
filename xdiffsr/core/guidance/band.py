"""One posterior denoiser inside a band of noise levels, another outside it (the default's MMPS
at mid noise, Jacobian-free elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import ArgumentError
from .base import Denoiser, Guidance, batch_guidances

__all__ = ["NoiseBandGuidance"]


class NoiseBandGuidance(Guidance):
    """One posterior denoiser inside a band of noise levels, another outside it.

    ``D(x, sigma) = inner(x, sigma)`` where ``lo <= sigma <= hi`` (the largest ``sigma`` of the
    batch), ``outer(x, sigma)`` elsewhere: e.g. MMPS (the network's Jacobian) at mid noise,
    where the prior's Tweedie covariance is least like a stationary one, and Jacobian-free
    moment matching elsewhere. Its :attr:`prior` and :attr:`likelihoods` are those of
    ``outer`` (both wrap the same prior and sources).

    Parameters
    ----------
    outer, inner : Guidance
        Posterior denoisers ``D(x, sigma)`` (e.g. :class:`~xdiffsr.core.guidance.jf.JFGuidance`,
        :class:`~xdiffsr.core.guidance.mmps.MMPSGuidance`).
    band : (float, float)
        ``(lo, hi)``, the noise levels of ``inner``.
    """

    option_names = ("band",)

    def __init__(self, outer: Denoiser, inner: Denoiser, band: tuple[float, float]):
        torch.nn.Module.__init__(self)  # prior and likelihoods are outer's
        lo, hi = (float(b) for b in band)
        if not (0.0 <= lo < hi):
            raise ArgumentError(f"band={band!r} must be (lo, hi) with 0 <= lo < hi.")
        self.outer, self.inner, self.band = outer, inner, (lo, hi)

    @property
    def prior(self) -> Denoiser:
        """The prior denoiser both posterior denoisers wrap."""
        return self.outer.prior

    @property
    def likelihoods(self) -> torch.nn.ModuleList:
        """The sources both posterior denoisers guide with."""
        return self.outer.likelihoods

    def with_likelihoods(self, likelihoods) -> NoiseBandGuidance:
        return NoiseBandGuidance(self.outer.with_likelihoods(likelihoods),
                                 self.inner.with_likelihoods(likelihoods), self.band)

    @classmethod
    def regroup(cls, guidances: Sequence[NoiseBandGuidance],
                rows: Sequence[int]) -> NoiseBandGuidance:
        if len({g.band for g in guidances}) > 1:
            raise ArgumentError("the groups' denoisers have different noise bands.")
        return cls(batch_guidances([g.outer for g in guidances], rows),
                   batch_guidances([g.inner for g in guidances], rows), guidances[0].band)

    def probe_sigma(self, sigmas: torch.Tensor) -> float:
        """The first level inside the band (the inner guidance, MMPS's backward graph, is the
        larger working set), else the first."""
        lo, hi = self.band
        inside = [float(s) for s in sigmas if lo <= float(s) <= hi]
        return inside[0] if inside else float(sigmas[0])

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = float(torch.as_tensor(sigma).max())
        lo, hi = self.band
        return (self.inner if lo <= s <= hi else self.outer)(x, sigma)
