"""Stage 1 of a latent model: training the lat/lon autoencoder.

The states are standardised per variable by the model's normalisation (mean and standard
deviation over the training split), so every channel has unit variance and the mean squared
error over standardised channels weighs each variable by its own scale; ``channel_weights``
re-weights them. A variational autoencoder adds ``kl_weight`` times the KL divergence to
``N(0, I)`` (per latent element).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from xdiffsr.core.autoencoder import AutoencoderConfig, LatLonAutoencoder, kl_divergence
from xdiffsr.errors import ArgumentError

__all__ = ["AutoencoderTrainConfig", "reconstruction_rmse", "train_autoencoder"]


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """Architecture and optimisation of stage 1 (frozen; ``asdict`` for the JSON log).

    Parameters
    ----------
    latent_channels, factor, channels, blocks, variational
        See :class:`~xdiffsr.core.autoencoder.AutoencoderConfig`.
    kl_weight : float
        Weight of the KL term (variational only).
    channel_weights : sequence of float, optional
        Loss weight of each variable (default 1 each).
    lr : float
        Adam learning rate.
    batch_size : int
        States per step.
    steps : int
        Maximum optimiser steps.
    max_minutes : float, optional
        Stop after this wall-clock time even if ``steps`` are not done.
    seed : int
        Seed of the initial weights, the batch order and the VAE noise.
    """

    latent_channels: int = 8
    factor: int = 2
    channels: int = 32
    blocks: int = 1
    variational: bool = False
    kl_weight: float = 1e-4
    channel_weights: tuple[float, ...] | None = None
    lr: float = 1e-3
    batch_size: int = 16
    steps: int = 2000
    max_minutes: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.steps) < 0 or int(self.batch_size) < 1:
            raise ArgumentError(
                f"steps={self.steps!r} must be >= 0 and batch_size={self.batch_size!r} >= 1."
            )
        if not (self.lr > 0 and self.kl_weight >= 0):
            raise ArgumentError(f"lr={self.lr!r} must be > 0 and kl_weight >= 0.")

    def network(self, in_channels: int, img_resolution: Sequence[int]) -> AutoencoderConfig:
        """The :class:`AutoencoderConfig` for states of ``in_channels`` on ``img_resolution``."""
        return AutoencoderConfig(
            in_channels=in_channels, latent_channels=self.latent_channels,
            img_resolution=tuple(img_resolution), factor=self.factor, channels=self.channels,
            blocks=self.blocks, variational=self.variational,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["channel_weights"] is not None:
            d["channel_weights"] = list(d["channel_weights"])
        return d


def _weights(config: AutoencoderTrainConfig, C: int, device) -> torch.Tensor:
    w = np.ones(C) if config.channel_weights is None else np.asarray(config.channel_weights, float)
    if w.shape != (C,) or not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ArgumentError(
            f"channel_weights={config.channel_weights!r}: give {C} finite weights >= 0 (one per "
            "variable, not all 0)."
        )
    return torch.as_tensor(w / w.mean(), dtype=torch.float32, device=device).reshape(1, C, 1, 1)


def train_autoencoder(
    x: torch.Tensor,
    config: AutoencoderTrainConfig,
    *,
    device: str | torch.device | None = None,
    log_every: int = 100,
) -> tuple[LatLonAutoencoder, list[dict]]:
    """Train an autoencoder on standardised states.

    Parameters
    ----------
    x : tensor (T, C, H, W)
        Training states, standardised per variable (``(state - center) / scale``).
    config : AutoencoderTrainConfig
        Architecture and optimisation.
    device : str or torch.device, optional
        Default CUDA if available, else the CPU.
    log_every : int
        Steps between log records.

    Returns
    -------
    autoencoder : LatLonAutoencoder
        In eval mode, on the CPU.
    log : list of dict
        ``step``, ``loss`` (weighted MSE), ``kl`` and ``seconds`` records.
    """
    if x.ndim != 4 or x.shape[0] < 1:
        raise ArgumentError(f"x must be (T, C, H, W) with T >= 1, got {tuple(x.shape)}.")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    ae = LatLonAutoencoder(config.network(x.shape[1], x.shape[2:])).to(dev).train()
    w = _weights(config, x.shape[1], dev)
    opt = torch.optim.Adam(ae.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    dgen = torch.Generator(dev).manual_seed(config.seed + 1)
    t0, log = time.perf_counter(), []
    for step in range(1, int(config.steps) + 1):
        idx = torch.randint(0, x.shape[0], (min(config.batch_size, x.shape[0]),), generator=gen)
        xb = x[idx].to(dev, torch.float32)
        recon, mean, logvar = ae(xb, generator=dgen)
        mse = ((recon - xb).square() * w).mean()
        kl = kl_divergence(mean, logvar).mean() if logvar is not None else mse.new_zeros(())
        loss = mse + config.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - t0
        done = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        if step % log_every == 0 or step == config.steps or done:
            log.append({"step": step, "loss": float(mse.detach()), "kl": float(kl.detach()),
                        "seconds": elapsed})
        if done:
            break
    return ae.cpu().eval(), log


@torch.no_grad()
def reconstruction_rmse(
    autoencoder: LatLonAutoencoder, x: torch.Tensor, scale: Sequence[float], *, batch: int = 32
) -> np.ndarray:
    """Per-variable root-mean-square reconstruction error in physical units, shape (C,).

    ``x`` (T, C, H, W) are standardised states; ``scale`` (C,) the normalisation scales.
    """
    ae = autoencoder.eval()
    dev = next(ae.parameters()).device
    sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch].to(dev, torch.float32)
        mean, _ = ae.encode(xb)
        sq += (ae.decode(mean) - xb).double().square().sum(dim=(0, 2, 3)).cpu()
    n = x.shape[0] * x.shape[2] * x.shape[3]
    return np.sqrt(sq.numpy() / n) * np.asarray(scale, dtype=float)
