"""Stochastic Heun sampler of EDM (Karras et al. 2022, Algorithm 2), guided as in Algorithm 1 of
Chakraborty et al. (2025) when given a guided denoiser (:mod:`xdiffsr.core.guidance`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch

from ..errors import ArgumentError, DivergenceError, XDiffSRWarning
from .guidance.base import Guidance

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
    divergence_bound: float | None = 50.0,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
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
        A guided one (:class:`~xdiffsr.core.guidance.base.Guidance`) wraps its ``prior``,
        which the corrector uses when ``corrector_guidance=False``.
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
    divergence_bound : float, optional
        Divergence check (None: off). A member whose state after a step is non-finite or exceeds
        ``divergence_bound + 10 sigma`` in absolute value (normalised units, where prior states
        lie within a few units and the noise within about 5 sigma) has diverged. Non-finite
        members raise :class:`~xdiffsr.errors.DivergenceError`; exploded finite ones are kept
        and an :class:`~xdiffsr.errors.XDiffSRWarning` names them, so a diverged guidance never
        returns silent non-finite or exploded members. The check adds no host synchronisation
        inside the loop (one at the end).
    project : callable, optional
        A linear projection applied to every denoiser output, guided or not (e.g. the band
        limit of :class:`~xdiffsr.core.zonal.ZonalFilter`): where the data lie in its range,
        so does every (posterior) mean ``E[x0 | x]``, and the projection removes only the
        denoiser's error. The last step returns the denoised state, so samples lie in it too.

    Returns
    -------
    tensor, shape (B, C, H, W)
        Samples at noise level ``sigmas[-1]`` (0), float32, finite.

    References
    ----------
    Karras et al. (2022), Algorithm 2; Chakraborty et al. (2025), Algorithm 1.
    """
    if latents.ndim != 4:
        raise ArgumentError(f"latents must have shape (B, C, H, W), got {tuple(latents.shape)}.")
    sigmas = sigmas.to(torch.float64)
    if sigmas.ndim != 1 or sigmas.numel() < 2 or bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ArgumentError("sigmas must be a decreasing 1-D tensor of length >= 2 ending in 0.")
    guided = isinstance(denoiser, Guidance)
    corrector = denoiser.prior if guided and not corrector_guidance else denoiser
    n_steps = sigmas.numel() - 1
    sig = [float(s) for s in sigmas]  # host-side floats: no device sync inside the loop
    batch = latents.shape[0]

    def D(den, x, t):
        out = den(x, torch.full((batch,), t, dtype=torch.float32, device=x.device)).float()
        return out if project is None else project(out)

    x_next = latents.float() * sig[0]
    first_bad = torch.full((batch,), n_steps, dtype=torch.long, device=latents.device)
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
        if divergence_bound is not None:
            first_bad = _mark_divergence(first_bad, x_next, i, divergence_bound + 10 * t_next)
        if callback is not None:
            callback(
                {"x": x_next, "i": i, "sigma": t_cur, "sigma_hat": t_hat, "denoised": denoised}
            )
    if divergence_bound is not None:
        x_next = _drop_diverged(x_next, first_bad, sig)
    return x_next


def _mark_divergence(first_bad: torch.Tensor, x: torch.Tensor, i: int, limit: float):
    """Step index of each member's first non-finite or out-of-bound state (device side)."""
    flat = x.flatten(1)
    bad = ~torch.isfinite(flat).all(dim=1) | (flat.abs().amax(dim=1) > limit)
    return torch.where(bad, torch.minimum(first_bad, torch.full_like(first_bad, i)), first_bad)


_DIVERGED_FIX = (
    "The guidance step is too large for these observations (many, precise observations per "
    "model cell) or the schedule too short: use guidance='jf' (the default) or "
    "guidance='mmps', or with guidance='sda' a clip (e.g. clip=1.0) or a larger gamma, and at "
    "least 6 steps."
)


def _drop_diverged(x: torch.Tensor, first_bad: torch.Tensor, sig: list[float]) -> torch.Tensor:
    """Raise :class:`DivergenceError` on non-finite members; warn about exploded finite ones
    (kept as they are: a result that cannot be right warns, it is never replaced by NaN)."""
    n_steps = len(sig) - 1
    bad = first_bad < n_steps
    if not bool(bad.any()):
        return x
    rows = torch.nonzero(bad).flatten().tolist()
    i = int(first_bad.min())
    where = f"{len(rows)} of {x.shape[0]} member(s) (batch rows {rows}), first at step {i}"
    if not bool(torch.isfinite(x).all()):
        raise DivergenceError(
            f"the sampler diverged: {where} (sigma {sig[i + 1]:.3g}) became non-finite. "
            + _DIVERGED_FIX
        )
    warnings.warn(
        f"the sampler diverged: {where} (sigma {sig[i + 1]:.3g}) exploded beyond "
        f"{float(x[bad].abs().amax()):.3g} prior standard deviations; these members cannot be "
        "right. " + _DIVERGED_FIX,
        XDiffSRWarning,
        stacklevel=3,
    )
    return x
