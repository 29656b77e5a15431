"""Training a latent model (SLAMS) in two stages, into one :class:`LatentDiffusionModel`.

1. The autoencoder (:func:`xdiffsr.train.autoencoder.train_autoencoder`) on the training split,
   standardised per variable.
2. The EDM prior on the encoded latents (the encoder's mean), with the existing training loop
   (:class:`xdiffsr.train.Trainer`): the latents become a Dataset of channels ``latent0 ...``
   on a nominal cell-centre grid of the latent's size, and the loop's per-channel normalisation
   is the latent normalisation of the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from xdiffsr.core.autoencoder import LatLonAutoencoder
from xdiffsr.errors import ArgumentError
from xdiffsr.grid import cell_centre_grid, find_time, grid_of
from xdiffsr.models.latent import LatentDiffusionModel
from xdiffsr.train.autoencoder import (
    AutoencoderTrainConfig,
    reconstruction_rmse,
    train_autoencoder,
)
from xdiffsr.train.config import TrainConfig
from xdiffsr.train.data import MemorySource, normalisation_stats, select_variables, split_by_time
from xdiffsr.train.loop import Trainer, json_attrs

__all__ = ["encode_dataset", "train_latent_model"]


@torch.no_grad()
def encode_dataset(autoencoder: LatLonAutoencoder, x: torch.Tensor, times: np.ndarray, *,
                   batch: int = 64) -> xr.Dataset:
    """Encoder means of the standardised states ``x`` (T, C, H, W) as a Dataset of channels
    ``latent0 ... latent{C_z - 1}`` on (time, lat, lon), the latent's nominal cell-centre grid.
    """
    ae = autoencoder.eval()
    dev = next(ae.parameters()).device
    z = torch.cat([ae.encode(x[i : i + batch].to(dev, torch.float32))[0].cpu()
                   for i in range(0, x.shape[0], batch)]).numpy()
    cz, h, w = ae.latent_shape
    lat, lon = cell_centre_grid(h, w)
    coords = {
        "time": ("time", np.asarray(times)),
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    return xr.Dataset(
        {f"latent{k}": (("time", "lat", "lon"), z[:, k], {"units": "1"}) for k in range(cz)},
        coords=coords,
    )


def _run_prior(trainer: Trainer, minutes: float | None) -> None:
    """Run the prior's training loop to its steps or for ``minutes`` (in stretches)."""
    t0 = time.perf_counter()
    stretch = max(1, min(trainer.config.ckpt_every, 200))
    while trainer.step < trainer.config.steps:
        trainer.run(stretch)
        if minutes is not None and time.perf_counter() - t0 > 60 * minutes:
            break


def train_latent_model(
    dataset: xr.Dataset,
    variables: Sequence[str],
    *,
    autoencoder: AutoencoderTrainConfig | None = None,
    prior: TrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    prior_minutes: float | None = None,
    progress: bool = False,
) -> tuple[LatentDiffusionModel, dict[str, Any]]:
    """Train both stages of a latent model and return it with a JSON-ready log.

    Parameters
    ----------
    dataset : xarray.Dataset
        Training data in any layout :func:`xdiffsr.train.select_variables` reads.
    variables : sequence of str
        Model variables (``["t850", "t500", "t250", ...]`` or ``"temperature@850"`` selectors).
    autoencoder : AutoencoderTrainConfig, optional
        Stage 1 (default settings if None).
    prior : TrainConfig
        Stage 2: the time splits (``train_start/train_end``, ``val_start/val_end``, used for
        both stages), the U-Net preset and optimisation; its ``variables`` and ``data`` are
        replaced by the latent channels.
    out_dir : path
        Folder of the prior's checkpoints and log.
    device : str or torch.device, optional
        Default CUDA if available.
    prior_minutes : float, optional
        Stop stage 2 after about this many minutes.
    progress : bool
        Progress bar of stage 2.

    Returns
    -------
    model : LatentDiffusionModel
    log : dict
        ``autoencoder`` (config, loss records, per-variable held-out RMSE in physical units),
        ``prior`` (steps done), ``normalisation``.
    """
    ae_cfg = autoencoder or AutoencoderTrainConfig()
    if not isinstance(prior, TrainConfig):
        raise ArgumentError(f"prior must be a TrainConfig, got {type(prior).__name__}.")
    flat = select_variables(dataset, variables).load()
    names = [str(v) for v in flat.data_vars]
    train_ds, val_ds = split_by_time(flat, prior.train_start, prior.train_end,
                                     prior.val_start, prior.val_end)
    center, scale = normalisation_stats(train_ds)
    x_train = MemorySource(train_ds, center, scale).data
    ae, ae_log = train_autoencoder(x_train, ae_cfg, device=device)
    held = val_ds if val_ds is not None else train_ds
    x_held = MemorySource(held, center, scale).data
    rmse = reconstruction_rmse(ae, x_held, scale)
    tname = find_time(flat, argname="dataset")
    x_all = MemorySource(flat, center, scale).data
    latents = encode_dataset(ae, x_all, flat[tname].values)
    lnames = [str(v) for v in latents.data_vars]
    cfg = prior.replace(data=None, variables=tuple(lnames), names=None)
    trainer = Trainer(cfg, out_dir=out_dir, dataset=latents, device=device, progress=progress)
    try:
        _run_prior(trainer, prior_minutes)
        pixel = trainer.model()
    finally:
        trainer.dist.close()
    log = {
        "autoencoder": {"config": ae_cfg.to_dict(), "records": ae_log,
                        "heldout_rmse": dict(zip(names, map(float, rmse))),
                        "heldout_split": "validation" if val_ds is not None else "training"},
        "prior": {"steps": trainer.step, "config": cfg.to_dict()},
        "normalisation": {"center": center.tolist(), "scale": scale.tolist(),
                          "latent_center": pixel.center.tolist(),
                          "latent_scale": pixel.scale.tolist()},
    }
    model = LatentDiffusionModel(
        ae, pixel.precond, names, {v: str(flat[v].attrs.get("units", "")) for v in names},
        grid_of(flat, argname="dataset"), center, scale, pixel.center, pixel.scale,
        attrs={v: json_attrs(flat[v].attrs) for v in names}, name=prior.name,
        metadata={"training": log},
    )
    return model, log
