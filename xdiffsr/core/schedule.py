"""Noise-level schedules for EDM samplers."""

from __future__ import annotations

import torch

from ..errors import ArgumentError


def karras_sigmas(
    steps: int,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Noise levels of Karras et al. (2022), Eq. 5, with a final zero appended.

    ``sigma_i = (sigma_max**(1/rho) + i/(N-1) * (sigma_min**(1/rho) - sigma_max**(1/rho)))**rho``.

    Parameters
    ----------
    steps : int
        Number of noise levels ``N`` (>= 1). A Heun sampler spends ``2N - 1`` denoiser evaluations.
    sigma_min, sigma_max : float
        Smallest and largest noise level, in the model's normalised units.
    rho : float
        Schedule curvature; 7 as in the paper.
    device, dtype
        Where and in which precision to build the schedule (float64 keeps the steps exact).

    Returns
    -------
    torch.Tensor
        Shape ``(steps + 1,)``, decreasing, ending with ``0``.

    References
    ----------
    Karras, T., Aittala, M., Aila, T., Laine, S. (2022). Elucidating the design space of
    diffusion-based generative models. NeurIPS. Eq. 5.
    """
    if int(steps) != steps or steps < 1:
        raise ArgumentError(f"steps={steps!r} must be a positive integer, e.g. steps=18.")
    if not 0 < sigma_min < sigma_max:
        raise ArgumentError(
            f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}."
        )
    i = torch.arange(steps, dtype=dtype, device=device)
    ramp = i / max(steps - 1, 1)
    inv_min, inv_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])
