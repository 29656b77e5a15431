"""Stationary prior covariances on lat/lon grids, for Jacobian-free moment matching.

A covariance ``B`` here is diagonal in a Fourier basis: per channel, a power spectrum ``P(k)``
over the two-dimensional wavenumbers of the field extended by an even reflection in latitude
(longitude is periodic; the reflection makes latitude periodic without a jump at the poles, the
cosine-transform habit). With ``E`` the reflection, ``F_P`` the filter ``P`` in the orthonormal
DFT of the extended field and ``R`` the restriction to the original rows,

    B v = R F_P E v = (1/2) E^T F_P E v,

symmetric and positive semi-definite for any ``P >= 0`` that is even in the latitude wavenumber
(so ``F_P`` commutes with the reflection); a spectrum estimated from reflected fields is.

Tweedie's covariance of a Gaussian prior ``N(mu, B)`` observed with noise ``sigma``,
``Cov[x_0 | x_t] = (B^-1 + sigma^-2 I)^-1``, is then the filter ``sigma^2 P / (P + sigma^2)``:
the prior's correlations at large ``sigma``, white ``sigma^2 I`` at the scales the noise has
not hidden. :class:`~xdiffsr.core.likelihood.JFGuidance` uses it in place of the network's
Jacobian (``sigma^2 dD/dx_t``).

References
----------
Rozet, F., Andry, G., Lanusse, F., Louppe, G. (2024). Learning diffusion priors from observations
    by expectation maximization. NeurIPS. (moment matching, Tweedie's covariance)
Daley, R. (1991). Atmospheric Data Analysis. Cambridge University Press. (homogeneous, isotropic
    background-error covariances in spectral space)
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ArgumentError

__all__ = ["SpectralCovariance", "extrapolate_power"]


def _extend(x: torch.Tensor) -> torch.Tensor:
    """Even reflection in latitude: (..., H, W) -> (..., 2H, W)."""
    return torch.cat([x, x.flip(-2)], dim=-2)


def _rings(h2: int, w: int) -> torch.Tensor:
    """Ring index (total wavenumber in units of ``1 / W`` cycles per cell) of every
    (2H, W//2+1) wavenumber, (2H, Wf) long."""
    ky = torch.fft.fftfreq(h2).reshape(-1, 1)
    kx = torch.fft.rfftfreq(w).reshape(1, -1)
    return torch.round(torch.sqrt(ky**2 + kx**2) * w).long().expand(h2, w // 2 + 1)


def extrapolate_power(
    power: torch.Tensor, w: int, resolved: float, *, fit_from: float = 0.25
) -> torch.Tensor:
    """Replace an isotropic spectrum beyond the resolved scales by a fitted power law.

    Parameters
    ----------
    power : tensor, shape (C, 2H, W//2+1) or (C, C, 2H, W//2+1)
        Ring-averaged power (``SpectralCovariance.from_states(..., isotropic=True).power``) or
        cross-spectrum of fields ``W`` cells around.
    w : int
        ``W``.
    resolved : float in (0, 1]
        The fraction of the grid's Nyquist wavenumber (0.5 cycles per cell) that the data
        resolve, e.g. 0.25 for fields interpolated from a 4x coarser grid; 1 keeps ``power``.
    fit_from : float
        The power law ``P(k) = P(k_r) (k / k_r)^beta`` is fitted (least squares in log-log) on
        the rings from ``fit_from * k_r`` to ``k_r = resolved W / 2``.

    Returns
    -------
    tensor, same shape: the power law beyond ``k_r``; the cross-spectrum's coherence there
    stays at its value at ``k_r``.
    """
    if not 0 < resolved <= 1:
        raise ArgumentError(f"resolved={resolved!r} must be in (0, 1] (a fraction of Nyquist).")
    h2 = power.shape[-2]
    ring = _rings(h2, w)
    k_r = max(round(resolved * w / 2), 2)
    if resolved == 1 or k_r >= int(ring.max()):
        return power
    cross = power.ndim == 4
    diag = torch.diagonal(power, dim1=0, dim2=1).movedim(-1, 0) if cross else power
    ks = torch.arange(max(1, int(fit_from * k_r)), k_r + 1)
    pk = torch.stack([diag[:, ring == k].mean(dim=-1) for k in ks], dim=-1)  # (C, K)
    lx = torch.log(ks.double())
    ly = torch.log(pk.double().clamp_min(1e-30))
    beta = ((lx - lx.mean()) * (ly - ly.mean(-1, keepdim=True))).sum(-1) / (
        (lx - lx.mean()).square().sum())  # (C,)
    law = pk[:, -1:, None].double() * (ring.double().clamp_min(1) / k_r) ** beta[:, None, None]
    beyond = ring > k_r
    new = torch.where(beyond, law.float(), diag)
    if not cross:
        return new
    sd = diag.clamp_min(1e-30).sqrt()
    coh = power / (sd[:, None] * sd[None, :])
    coh_r = torch.stack([coh[..., ring == k_r].mean(-1)], -1)[..., None]  # (C, C, 1, 1)
    coh = torch.where(beyond, coh_r, coh)
    nsd = new.sqrt()
    return coh * nsd[:, None] * nsd[None, :]


def _ring_average(power: torch.Tensor, w: int) -> torch.Tensor:
    """Average (C, 2H, W//2+1) power over rings of total wavenumber ``1 / W`` wide (each rfft
    column but the first and, for even W, the last stands for two wavenumbers: weight 2)."""
    h2, wf = power.shape[-2:]
    ring = _rings(h2, w).reshape(-1)
    mult = torch.full((wf,), 2.0)
    mult[0] = 1.0
    if w % 2 == 0:
        mult[-1] = 1.0
    mult = mult.expand(h2, wf).reshape(-1)
    n = int(ring.max()) + 1
    count = torch.zeros(n).index_add_(0, ring, mult)
    flat = power.reshape(power.shape[0], -1)
    total = torch.zeros(power.shape[0], n).index_add_(1, ring, flat * mult)
    return (total / count)[:, ring].reshape(power.shape)


class SpectralCovariance(nn.Module):
    """A stationary covariance, block-diagonal in the reflected Fourier basis.

    Parameters
    ----------
    power : tensor, shape (C, 2H, W // 2 + 1) or (C, C, 2H, W // 2 + 1)
        Non-negative power spectrum per channel over the ``rfft2`` wavenumbers of the field
        reflected in latitude (orthonormal DFT: a white field of variance 1 has ``P = 1``), or
        the real cross-spectral matrix of the channels at every wavenumber (symmetric positive
        semi-definite; its diagonal is the power): a multivariate covariance in which the
        channels are correlated scale by scale.

    Notes
    -----
    ``cov(v)`` applies ``B``; ``cov(v, sigma)`` applies Tweedie's covariance
    ``sigma^2 B (B + sigma^2 I)^-1`` with one ``sigma`` per batch row.
    """

    def __init__(self, power: torch.Tensor):
        super().__init__()
        power = torch.as_tensor(power, dtype=torch.float32)
        cross = power.ndim == 4 and power.shape[0] == power.shape[1]
        diag = torch.diagonal(power, dim1=0, dim2=1).movedim(-1, 0) if cross else power
        if (power.ndim != 3 and not cross) or not bool(torch.isfinite(power).all()) or bool(
            (diag < 0).any()
        ):
            raise ArgumentError(
                "power: must be a finite, non-negative (C, 2H, W // 2 + 1) tensor or a (C, C, "
                f"2H, W // 2 + 1) cross-spectrum, got shape {tuple(power.shape)}; build it with "
                "SpectralCovariance.from_states."
            )
        self.register_buffer("power", diag.contiguous())
        if cross:  # per wavenumber B(k) = V diag(lam) V^T, once
            lam, vec = torch.linalg.eigh(power.permute(2, 3, 0, 1).double())
            self.register_buffer("lam", lam.clamp_min(0).float())  # (2H, Wf, C)
            self.register_buffer("vec", vec.float())  # (2H, Wf, C, C)
        else:
            self.lam = self.vec = None

    @property
    def multivariate(self) -> bool:
        """Whether the channels are correlated (a cross-spectral covariance)."""
        return self.vec is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the fields it applies to."""
        c, h2, wf = self.power.shape
        return c, h2 // 2, 2 * (wf - 1)

    @classmethod
    def from_states(
        cls, x: torch.Tensor, *, isotropic: bool = False, multivariate: bool = False,
        center: bool = True,
    ) -> SpectralCovariance:
        """Estimate ``P`` from samples (N, C, H, W) (their anomalies about the sample mean).

        ``center=False`` takes ``x`` as anomalies about a known mean (nothing is subtracted and
        the sum of squares is divided by N, not N - 1).

        ``multivariate=True`` estimates the real cross-spectral matrix of the channels (their
        scale-by-scale correlations, e.g. temperature and geopotential) instead of the power of
        each channel alone.

        ``isotropic=True`` averages the power over rings of equal total wavenumber
        ``|k| = (k_lat^2 + k_lon^2)^(1/2)`` (cycles per grid cell, rings ``1 / W`` wide): an
        isotropic spectrum in grid-index space, estimated from few samples with far less noise
        (a ring holds many wavenumbers; one wavenumber of N samples has 2N degrees of freedom).

        Raises
        ------
        ArgumentError
            Fewer than two samples, an odd longitude count or non-finite values.
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim != 4 or x.shape[0] < 2 or x.shape[-1] % 2:
            raise ArgumentError(
                f"x: need (N >= 2, C, H, W) samples with an even W, got {tuple(x.shape)}."
            )
        if not bool(torch.isfinite(x).all()):
            raise ArgumentError("x: samples must be finite; drop or fill missing values first.")
        anom = x - x.mean(dim=0, keepdim=True) if center else x
        f = torch.fft.rfft2(_extend(anom), norm="ortho")
        # unbiased: the sample mean removed one degree of freedom
        if multivariate:  # Re sum_n F_c F_d^*: real, symmetric, PSD per wavenumber
            power = torch.einsum("nckl,ndkl->cdkl", f.real, f.real) + torch.einsum(
                "nckl,ndkl->cdkl", f.imag, f.imag)
        else:
            power = f.abs().square().sum(dim=0)
        power = power / (x.shape[0] - int(center))
        # A reflected field's latitude wavenumber 0 holds the variance twice (the row sum of the
        # field and of its mirror) and wavenumber H none (the reflection cancels it; it never
        # enters B): halve the first, copy its neighbour into the second.
        h = x.shape[-2]
        power[..., 0, :] /= 2
        power[..., h, :] = power[..., h - 1, :]
        if isotropic:
            lead = power.shape[:-2]
            power = _ring_average(power.reshape(-1, *power.shape[-2:]), x.shape[-1])
            power = power.reshape(*lead, *power.shape[-2:])
        return cls(power)

    @classmethod
    def white(cls, shape: tuple[int, int, int], variance: float = 1.0) -> SpectralCovariance:
        """``B = variance * I`` on (C, H, W) fields."""
        c, h, w = shape
        return cls(torch.full((c, 2 * h, w // 2 + 1), float(variance)))

    def variance(self, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Mean diagonal of ``B`` (or of Tweedie's covariance at ``sigma``) per channel: (C,) or
        (B, C).

        ``F_P`` is circulant on the extended grid with autocovariance ``a = IDFT(P)``; the
        diagonal of ``B`` at row ``h`` is ``a(0, 0) + a(2H - 1 - 2h, 0)`` (the cell and its mirror
        image), so the mean over rows is ``a(0, 0)`` plus the mean of ``a`` at odd latitude lags.
        """
        h2, w = self.power.shape[-2], 2 * (self.power.shape[-1] - 1)
        filt = self._filter(sigma)
        if self.multivariate:  # diagonal of V diag(f) V^T per wavenumber: (..., C, 2H, Wf)
            filt = torch.einsum("klcj,...klj->...ckl", self.vec.square(), filt)
        a = torch.fft.irfft2(filt, s=(h2, w))
        return a[..., 0, 0] + a[..., 1::2, 0].mean(dim=-1)

    def _filter(self, sigma: torch.Tensor | None, kind: str = "tweedie") -> torch.Tensor:
        """Per-wavenumber filter: (C, 2H, Wf) or (B, C, 2H, Wf) on the power, or on the
        eigenvalues (2H, Wf, C) / (B, 2H, Wf, C) of a multivariate covariance. ``kind``:
        ``"tweedie"`` ``s2 P / (P + s2)``, ``"shrink"`` ``P / (P + s2)``, ``"sqrt"`` ``P^1/2``."""
        p = self.lam if self.multivariate else self.power
        if kind == "sqrt":
            return p.clamp_min(0).sqrt()
        if sigma is None:
            return p
        s2 = torch.as_tensor(sigma, dtype=torch.float32, device=p.device)
        s2 = s2.reshape(-1, *([1] * p.ndim)).square()
        if kind == "shrink":
            return p / (p + s2).clamp_min(torch.finfo(p.dtype).tiny)
        return s2 * p / (p + s2)

    def shrink(self, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Apply ``B (B + sigma^2 I)^-1`` to ``v`` (B, C, H, W), one ``sigma`` per batch row:
        the exact denoiser of a Gaussian prior ``N(0, B)`` seen through noise ``sigma``."""
        return self._filtered(v, self._filter(sigma, "shrink"))

    def sqrt(self, v: torch.Tensor) -> torch.Tensor:
        """Apply ``B^(1/2)`` (the symmetric square root) to ``v`` (B, C, H, W): white noise in,
        a sample of ``N(0, B)`` out."""
        return self._filtered(v, self._filter(None, "sqrt"))

    def row_variance(self) -> torch.Tensor:
        """The diagonal of ``B`` per channel and row, (C, H) (constant along a row): the
        variance at one cell is ``a(0, 0) + a(2H - 1 - 2h, 0)``, the cell and its mirror image,
        with ``a`` the autocovariance of the extended field."""
        h2, w = self.power.shape[-2], 2 * (self.power.shape[-1] - 1)
        filt = self._filter(None)
        if self.multivariate:
            filt = torch.einsum("klcj,klj->ckl", self.vec.square(), filt)
        a = torch.fft.irfft2(filt, s=(h2, w))[..., 0]  # (C, 2H): lags in latitude
        h = h2 // 2
        return a[..., :1] + a[..., torch.arange(h2 - 1, 0, -2)][..., :h]

    def forward(self, v: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Apply ``B`` (``sigma`` None) or Tweedie's covariance to ``v`` (B, C, H, W)."""
        return self._filtered(v, self._filter(sigma))

    def _filtered(self, v: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
        """Apply the per-wavenumber ``filt`` (of :meth:`_filter`) to ``v`` (B, C, H, W)."""
        if tuple(v.shape[1:]) != self.shape:
            raise ArgumentError(
                f"v: shape {tuple(v.shape)} does not match the covariance's (B, *{self.shape})."
            )
        h = v.shape[-2]
        f = torch.fft.rfft2(_extend(v.float()), norm="ortho")
        if self.multivariate:  # V diag(filter) V^T at every wavenumber, as batched matmuls
            b = f.shape[0]
            z = torch.cat([f.real, f.imag]).permute(2, 3, 0, 1)  # (2H, Wf, 2B, C)
            w = filt.expand(b, *filt.shape[-3:]) if filt.ndim == 4 else filt.expand(
                b, *filt.shape)
            w = torch.cat([w, w]).permute(1, 2, 0, 3)  # (2H, Wf, 2B, C)
            z = ((z @ self.vec) * w) @ self.vec.transpose(-1, -2)
            z = z.permute(2, 3, 0, 1)
            g = torch.complex(z[:b], z[b:])
        else:
            g = filt * f
        out = torch.fft.irfft2(g, s=(2 * h, v.shape[-1]), norm="ortho")
        return out[..., :h, :].to(v.dtype)
