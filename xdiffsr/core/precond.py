"""EDM preconditioning and training loss (Karras et al. 2022, Table 1).

The denoiser is ``D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))``
with

* ``c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)``
* ``c_out = sigma * sigma_data / sqrt(sigma**2 + sigma_data**2)``
* ``c_in = 1 / sqrt(sigma**2 + sigma_data**2)``
* ``c_noise = ln(sigma) / 4``

and it is trained with ``lambda(sigma) ||D(y + n; sigma) - y||**2``, ``n ~ N(0, sigma**2 I)``,
``ln sigma ~ N(P_mean, P_std**2)``, ``lambda(sigma) = (sigma**2 + sigma_data**2) /
(sigma sigma_data)**2``. Pure torch (no xarray).

References
----------
.. [1] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the design space of
   diffusion-based generative models", NeurIPS 2022, Table 1 and Sec. 5
   (code: github.com/NVlabs/edm, ``training/networks.py`` and ``training/loss.py``).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch
from torch import nn

from xdiffsr.errors import ArgumentError

__all__ = ["EDMLoss", "EDMPrecond", "edm_coefficients"]

# Floor applied to sigma inside ln(sigma) only, so that sigma = 0 gives finite c_noise and
# D(x; 0) = x exactly (c_out = 0) instead of NaN.
_SIGMA_LOG_FLOOR = 1e-20


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or value <= 0:
        raise ArgumentError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 0.5
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM preconditioning coefficients of Karras et al. (2022), Table 1.

    Parameters
    ----------
    sigma : torch.Tensor
        Noise levels (any shape, >= 0).
    sigma_data : float, default 0.5
        Standard deviation of the (normalised) data.

    Returns
    -------
    c_skip, c_out, c_in, c_noise : torch.Tensor
        Tensors of the shape of ``sigma``. ``c_noise = ln(max(sigma, 1e-20)) / 4`` (the floor
        only matters at ``sigma = 0`` where ``c_out = 0``).

    References
    ----------
    .. [1] T. Karras et al., "Elucidating the design space of diffusion-based generative
       models", NeurIPS 2022, Table 1 ("Ours" column).
    """
    sd2 = sigma_data**2
    s2 = sigma * sigma
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data * torch.rsqrt(s2 + sd2)
    c_in = torch.rsqrt(s2 + sd2)
    c_noise = sigma.clamp_min(_SIGMA_LOG_FLOOR).log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    """EDM-preconditioned denoiser ``D(x; sigma)`` around a network ``F(x, c_noise)``.

    Parameters
    ----------
    net : torch.nn.Module
        Network called as ``net(x, c_noise)`` with x (B, C, H, W) and c_noise (B,), returning
        (B, C, H, W), e.g. :class:`xdiffsr.core.unet.SongUNet`.
    sigma_data : float, default 0.5
        Standard deviation of the normalised training data.
    sigma_min, sigma_max : float, default 0.002 and 80.0
        Range of noise levels supported (used by samplers; not enforced in ``forward``).

    Notes
    -----
    The coefficients are computed in fp32 and the network output is cast back to fp32, so
    ``forward`` may run under ``torch.autocast(device_type="cuda", dtype=torch.bfloat16)``:
    only the network runs in bf16.

    References
    ----------
    .. [1] T. Karras et al., "Elucidating the design space of diffusion-based generative
       models", NeurIPS 2022, Table 1.
    """

    def __init__(self, net: nn.Module, *, sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ArgumentError(f"net must be a torch.nn.Module, got {type(net).__name__}.")
        self.net = net
        self.sigma_data = _check_positive(sigma_data, "sigma_data")

        self.sigma_min = _check_positive(sigma_min, "sigma_min")
        self.sigma_max = _check_positive(sigma_max, "sigma_max")
        if self.sigma_min >= self.sigma_max:
            raise ArgumentError(
                f"sigma_min={sigma_min} must be smaller than sigma_max={sigma_max}."
            )

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` at noise level ``sigma``.

        Parameters
        ----------
        x : torch.Tensor
            Noisy fields of shape (B, C, H, W) (any float dtype; computed in fp32).
        sigma : float or torch.Tensor
            Noise level(s) >= 0: a float, a 0-d tensor, or a tensor with B (or 1) elements
            such as (B,) or (B, 1, 1, 1). Tensor values are not checked (no host sync).

        Returns
        -------
        torch.Tensor
            ``D(x; sigma)`` of shape (B, C, H, W), dtype float32.
        """
        if x.ndim != 4:
            raise ArgumentError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}.")
        if isinstance(sigma, Real) and not isinstance(sigma, bool) \
                and not (math.isfinite(sigma) and sigma >= 0):
            raise ArgumentError(f"sigma must be a finite number >= 0, got {sigma!r}.")
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        if sigma.numel() not in (1, x.shape[0]):
            raise ArgumentError(
                f"sigma must be a scalar or have B={x.shape[0]} elements, got shape "
                f"{tuple(sigma.shape)}; pass one noise level per batch member."
            )
        sigma = sigma.reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
        f_x = self.net(c_in * x, c_noise.reshape(-1).expand(x.shape[0]))
        return c_skip * x + c_out * f_x.to(torch.float32)

    def round_sigma(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """Noise levels representable by the network: all of them for EDM (identity)."""
        return torch.as_tensor(sigma)


class EDMLoss:
    """EDM denoising score-matching loss (Karras et al. 2022, Sec. 5 and Table 1).

    For clean data ``y`` it draws per-sample ``ln sigma ~ N(P_mean, P_std**2)`` and
    ``n ~ N(0, sigma**2 I)`` and returns ``lambda(sigma) (D(y + n; sigma) - y)**2`` with
    ``lambda(sigma) = (sigma**2 + sigma_data**2) / (sigma sigma_data)**2``.

    Parameters
    ----------
    P_mean, P_std : float, default -1.2 and 1.2
        Mean and standard deviation of ``ln sigma`` during training.
    sigma_data : float, default 0.5
        Must equal the ``sigma_data`` of the :class:`EDMPrecond` being trained.
    mix : float, default 0
        Fraction of the samples whose ``ln sigma`` is drawn uniformly in ``ln mix_range``
        instead of from the log-normal: more training where a denoiser leaks noise (mid and
        high noise levels) while the log-normal keeps the low levels.
    mix_range : (float, float), default (0.3, 10)
        Noise levels of the log-uniform part.

    References
    ----------
    .. [1] T. Karras et al., "Elucidating the design space of diffusion-based generative
       models", NeurIPS 2022, Eq. 8 and Table 1 (``training/loss.py`` in NVlabs/edm).
    """

    def __init__(self, *, P_mean: float = -1.2, P_std: float = 1.2,
                 sigma_data: float = 0.5, mix: float = 0.0,
                 mix_range: tuple[float, float] = (0.3, 10.0)) -> None:
        if isinstance(P_mean, bool) or not isinstance(P_mean, Real) or not math.isfinite(P_mean):
            raise ArgumentError(f"P_mean must be a finite number, got {P_mean!r}.")
        self.P_mean = float(P_mean)
        self.P_std = _check_positive(P_std, "P_std")
        self.sigma_data = _check_positive(sigma_data, "sigma_data")
        if isinstance(mix, bool) or not isinstance(mix, Real) or not 0.0 <= mix <= 1.0:
            raise ArgumentError(f"mix must be a fraction in [0, 1], got {mix!r}.")
        self.mix = float(mix)
        lo, hi = (_check_positive(v, "mix_range") for v in mix_range)
        if lo >= hi:
            raise ArgumentError(
                f"mix_range must be (low, high) with low < high, got {mix_range!r}.")
        self.mix_range = (lo, hi)

    def sample_sigma(self, batch: int, *, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """Training noise levels (batch, 1, 1, 1): log-normal, a ``mix`` of them log-uniform."""
        rnd = torch.randn((batch, 1, 1, 1), generator=generator, device=device)
        log_sigma = rnd * self.P_std + self.P_mean
        if self.mix > 0:  # draws nothing more without a mix: the same noise as before
            u = torch.rand((2, batch, 1, 1, 1), generator=generator, device=device)
            lo, hi = math.log(self.mix_range[0]), math.log(self.mix_range[1])
            log_sigma = torch.where(u[0] < self.mix, lo + (hi - lo) * u[1], log_sigma)
        return log_sigma.exp()

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """Loss weight ``lambda(sigma) = (sigma**2 + sigma_data**2) / (sigma sigma_data)**2``."""
        sd = self.sigma_data
        return (sigma**2 + sd**2) / (sigma * sd) ** 2

    def __call__(self, precond: nn.Module, x: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-element weighted loss for a batch of clean fields.

        Parameters
        ----------
        precond : torch.nn.Module
            Denoiser called as ``precond(x_noisy, sigma)`` with sigma of shape (B, 1, 1, 1),
            e.g. :class:`EDMPrecond`.
        x : torch.Tensor
            Clean normalised fields of shape (B, C, H, W).
        generator : torch.Generator, optional
            Source of randomness (on ``x.device``) for reproducible noise.

        Returns
        -------
        torch.Tensor
            Unreduced loss of shape (B, C, H, W), float32.
        """
        if x.ndim != 4:
            raise ArgumentError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}.")
        y = x.to(torch.float32)
        sigma = self.sample_sigma(y.shape[0], generator=generator, device=y.device)
        n = torch.randn(y.shape, generator=generator, device=y.device) * sigma
        d = precond(y + n, sigma).to(torch.float32)
        return self.weight(sigma) * (d - y) ** 2
