"""Stochastic Heun sampler of EDM (Karras et al. 2022, Algorithm 2), guided as in Algorithm 1 of
Chakraborty et al. (2025) when given a guided denoiser (:mod:`xdiffsr.core.likelihood`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import ArgumentError

Callback = Callable[[dict], None]
Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(
    shape: Sequence[int], generator: Generators = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Standard normal noise of ``shape`` (B, ...), float32.

    Parameters
    ----------
    shape : sequence of int
        ``(B, ...)``.
    generator : torch.Generator, sequence of B generators, or None
        One generator for the whole tensor, or one per batch row: row ``b`` is drawn from
        ``generator[b]`` alone, so a member's noise does not depend on the batch it is in.
    device : torch.device, optional
        Where the noise is drawn (the generators' device).

    Returns
    -------
    tensor, shape ``shape``
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ArgumentError(
            f"generator has {len(generator)} generators for a batch of {shape[0]}; give one "
            "per member (batch row)."
        )
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device)
                        for g in generator])


def heun_sampler(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    S_churn: float = 0.0,
    S_tmin: float = 0.0,
    S_tmax: float = float("inf"),
    S_noise: float = 1.0,
    corrector_guidance: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Draw samples by integrating the probability-flow ODE with stochastic churn.

    Each step (i) raises the noise from ``t_i`` to ``t_hat = t_i (1 + gamma_i)`` with fresh noise,
    (ii) takes an Euler step with ``d = (x_hat - D(x_hat; t_hat)) / t_hat``, and (iii) except at the
    last step, corrects it with Heun's second-order rule. With a guided denoiser (``D_post = D +
    lambda_g t^2 s_l``) the drift is ``d_pos = d_prior - lambda_g t s_l`` at both stages.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma)`` with x of shape (B, C, H, W) and sigma of shape (B,); prior or guided.
        A guided denoiser exposes ``.prior``, used at the corrector when
        ``corrector_guidance=False``.
    latents : tensor, shape (B, C, H, W)
        Standard normal noise; members are the batch dimension.
    sigmas : tensor, shape (N + 1,)
        Decreasing noise levels ending in 0 (see :func:`karras_sigmas`).
    S_churn, S_tmin, S_tmax, S_noise : float
        Stochasticity of Karras et al. (2022), Algorithm 2: ``gamma_i = min(S_churn / N,
        sqrt(2) - 1)`` for ``t_i`` in ``[S_tmin, S_tmax]``, noise scaled by ``S_noise``.
    corrector_guidance : bool
        Whether the Heun corrector also uses the likelihood gradient (Algorithm 1 does).
    generator : torch.Generator or sequence of B generators, optional
        Source of the churn noise (on ``latents.device``), for reproducibility; with one
        generator per member (see :func:`randn`) each member is independent of the batching.
    callback : callable, optional
        Called after every step with a dict ``{"x", "i", "sigma", "sigma_hat", "denoised"}``.

    Returns
    -------
    tensor, shape (B, C, H, W)
        Samples at noise level ``sigmas[-1]`` (0), float32.

    References
    ----------
    Karras et al. (2022), Algorithm 2; Chakraborty et al. (2025), Algorithm 1.
    """
    if latents.ndim != 4:
        raise ArgumentError(f"latents must have shape (B, C, H, W), got {tuple(latents.shape)}.")
    sigmas = sigmas.to(torch.float64)
    if sigmas.ndim != 1 or sigmas.numel() < 2 or bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ArgumentError("sigmas must be a decreasing 1-D tensor of length >= 2 ending in 0.")
    corrector = denoiser if corrector_guidance else getattr(denoiser, "prior", denoiser)
    n_steps = sigmas.numel() - 1
    sig = [float(s) for s in sigmas]  # host-side floats: no device sync inside the loop
    batch = latents.shape[0]

    def D(den, x, t):
        return den(x, torch.full((batch,), t, dtype=torch.float32, device=x.device)).float()

    x_next = latents.float() * sig[0]
    for i in range(n_steps):
        t_cur, t_next = sig[i], sig[i + 1]
        x_cur = x_next
        gamma = min(S_churn / n_steps, math.sqrt(2) - 1) if S_tmin <= t_cur <= S_tmax else 0.0
        t_hat = t_cur + gamma * t_cur
        if t_hat > t_cur:
            eps = randn(x_cur.shape, generator, x_cur.device)
            x_hat = x_cur + math.sqrt(t_hat**2 - t_cur**2) * S_noise * eps
        else:
            x_hat = x_cur
        denoised = D(denoiser, x_hat, t_hat)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if t_next > 0:  # Heun corrector (all but the last step)
            denoised = D(corrector, x_next, t_next)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
        if callback is not None:
            callback(
                {"x": x_next, "i": i, "sigma": t_cur, "sigma_hat": t_hat, "denoised": denoised}
            )
    return x_next
