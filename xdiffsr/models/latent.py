"""A latent diffusion prior (SLAMS): an autoencoder plus an EDM prior on its latents.

The sampler runs in the normalised latent space ``z = (Enc(x) - latent_center) /
latent_scale`` of shape :attr:`LatentDiffusionModel.sample_shape`; every observation operator
``M`` on the normalised pixel state is composed with the decoder, ``M(Dec(D(z; sigma)))``, so
both the paper's guidance and MMPS work unchanged (:class:`~xdiffsr.core.autoencoder.
DecodedOperator`). Members are decoded and denormalised into the model's variables on the
model's grid.

File format: one safetensors file holding the autoencoder's tensors under ``autoencoder.`` and
the latent denoiser's under ``prior.``, with the JSON header of a pixel model plus ``kind:
"latent"``, ``autoencoder_config``, ``latent_center`` and ``latent_scale``.

References
----------
Qu, Y., Nathaniel, J., Li, S., Gentine, P. (2024). Deep generative data assimilation in
    multimodal setting. CVPR Workshops (SLAMS).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xdiffsr.core.autoencoder import (
    AutoencoderConfig,
    DecodedOperator,
    LatLonAutoencoder,
    NormalisedDecoder,
)
from xdiffsr.core.precond import EDMPrecond
from xdiffsr.core.unet import SongUNet, UNetConfig
from xdiffsr.errors import ArgumentError, ModelError, XDiffSRError
from xdiffsr.grid import Grid
from xdiffsr.models.diffusion import (
    check_finite,
    fingerprint_unet_config,
    model_header,
    parse_header,
    read_model_file,
    write_model_file,
)
from xdiffsr.models.prior import Prior

KIND = "latent"
_AE, _PRIOR = "autoencoder.", "prior."

__all__ = ["LatentDiffusionModel", "model_kind"]


class LatentDiffusionModel(Prior):
    """Autoencoder + EDM prior on its normalised latents, used by ``super_resolve`` like any
    prior.

    Parameters
    ----------
    autoencoder : LatLonAutoencoder
        Maps the normalised state (C, H, W) to latents (C_z, h, w) and back.
    precond : EDMPrecond
        Denoiser on the normalised latent ``(latent - latent_center) / latent_scale``.
    variables, units, grid, center, scale, attrs
        The pixel state, see :class:`Prior` (``center``/``scale`` normalise the variables
        before encoding).
    latent_center, latent_scale : array (C_z,)
        Latent normalisation (per latent channel, over the encoded training states).
    name : str
        Label in provenance.
    metadata : dict
        Free-form JSON description (training log, reconstruction errors, ...).
    reference : ModelRef, optional
        Set by :func:`xdiffsr.load_model`.
    """

    def __init__(
        self,
        autoencoder: LatLonAutoencoder,
        precond: nn.Module,
        variables,
        units,
        grid: Grid,
        center,
        scale,
        latent_center,
        latent_scale,
        *,
        attrs=None,
        name: str = "latent-model",
        metadata: Mapping[str, Any] | None = None,
        reference: Any = None,
    ):
        super().__init__(variables, units, grid, center, scale, attrs)
        cfg = autoencoder.config
        if cfg.in_channels != len(self.variables) or tuple(cfg.img_resolution) != grid.shape:
            raise ArgumentError(
                f"the autoencoder takes {cfg.in_channels} channels on {cfg.img_resolution} but "
                f"the model has {len(self.variables)} variables on {grid.shape}; build the "
                "autoencoder with AutoencoderConfig(in_channels=len(variables), "
                "img_resolution=grid.shape, ...)."
            )
        self.autoencoder = autoencoder.eval()
        self.precond = precond.eval()
        self.latent_center = np.asarray(latent_center, dtype=np.float64).reshape(-1)
        self.latent_scale = np.asarray(latent_scale, dtype=np.float64).reshape(-1)
        nz = cfg.latent_channels
        if self.latent_center.size != nz or self.latent_scale.size != nz:
            raise ArgumentError(
                f"latent_center and latent_scale need {nz} values (one per latent channel)."
            )
        if not (np.isfinite(self.latent_scale).all() and (self.latent_scale > 0).all()):
            raise ArgumentError(f"latent_scale must be finite and > 0, got {self.latent_scale}.")
        self.name = name
        self.metadata = dict(metadata or {})
        self.reference = reference
        self.sigma_min = float(getattr(precond, "sigma_min", 0.002))
        self.sigma_max = float(getattr(precond, "sigma_max", 80.0))
        self._decoders: dict[str, nn.Module] = {}

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """``(C_z, h, w)``: the latent the sampler draws."""
        return self.autoencoder.latent_shape

    def denoiser(self, device: torch.device | str = "cpu") -> nn.Module:
        """The latent denoiser ``D(z; sigma)`` on ``device``."""
        return self.precond.to(device).eval()

    def decoder(self, device: torch.device | str = "cpu") -> nn.Module:
        """``z (normalised latent) -> normalised state``, a differentiable module on
        ``device``."""
        key = str(torch.device(device))
        if key not in self._decoders:
            ae = self.autoencoder.to(device).eval()
            dec = NormalisedDecoder(ae.decode, self.latent_center, self.latent_scale)
            self._decoders[key] = dec.to(device).eval()
        return self._decoders[key]

    def wrap_operator(self, operator: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
        return DecodedOperator(operator, self.decoder(device), self.sample_shape)

    @torch.no_grad()
    def decode(self, z: np.ndarray, device: torch.device | str | None = None,
               batch: int = 64) -> np.ndarray:
        """(…, C_z, h, w) normalised latents -> (…, C, H, W) normalised states."""
        z = np.asarray(z)
        lead = z.shape[: z.ndim - 3]
        flat = z.reshape(-1, *self.sample_shape)
        dev = torch.device(device or "cpu")
        dec = self.decoder(dev)
        out = [
            dec(torch.as_tensor(flat[i : i + batch], dtype=torch.float32, device=dev))
            .double().cpu().numpy()
            for i in range(0, flat.shape[0], batch)
        ]
        x = np.concatenate(out) if out else np.empty((0, *self.state_shape))
        return x.reshape(*lead, *self.state_shape)

    @torch.no_grad()
    def encode(self, state: np.ndarray, device: torch.device | str | None = None,
               batch: int = 64) -> np.ndarray:
        """(…, C, H, W) physical states -> (…, C_z, h, w) normalised latents (the encoder's
        mean)."""
        x = self.normalise(np.asarray(state, dtype=np.float64))
        lead = x.shape[: x.ndim - 3]
        flat = x.reshape(-1, *self.state_shape)
        dev = torch.device(device or "cpu")
        ae = self.autoencoder.to(dev)
        c = self.latent_center[:, None, None]
        s = self.latent_scale[:, None, None]
        out = [
            ae.encode(torch.as_tensor(flat[i : i + batch], dtype=torch.float32, device=dev))[0]
            .double().cpu().numpy()
            for i in range(0, flat.shape[0], batch)
        ]
        z = (np.concatenate(out) - c) / s
        return z.reshape(*lead, *self.sample_shape)

    def to_state(self, x: np.ndarray, device: torch.device | str | None = None) -> np.ndarray:
        """Normalised latents (…, C_z, h, w) -> physical states (…, C, H, W)."""
        return self.denormalise(self.decode(x, device))

    # ----------------------------------------------------------------- file

    def _header(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            **model_header(self, self.precond),
            "autoencoder_config": self.autoencoder.config.to_dict(),
            "latent_center": self.latent_center.tolist(),
            "latent_scale": self.latent_scale.tolist(),
        }

    def _state(self) -> dict[str, torch.Tensor]:
        out = {}
        for prefix, mod in ((_AE, self.autoencoder), (_PRIOR, self.precond)):
            for k, v in mod.state_dict().items():
                out[prefix + k] = v.detach().cpu().contiguous()
        return out

    def _fingerprint_items(self) -> Iterable[tuple[str, Any]]:
        h = self._header()
        keep = ("kind", "autoencoder_config", "unet_config", "latent_center", "latent_scale",
                "sigma_data", "metadata")
        header = {k: h[k] for k in keep}
        header["unet_config"] = fingerprint_unet_config(header["unet_config"])
        return [
            *super()._fingerprint_items(),
            ("header", header),
            *((f"weight:{k}", v) for k, v in sorted(self._state().items())),
        ]

    def save(self, path: str | Path) -> Path:
        """Write both parts to one safetensors file (JSON metadata in its header)."""
        return write_model_file(path, self._state(), self._header())

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu",
             reference: Any = None) -> LatentDiffusionModel:
        """Read a file written by :meth:`save` (safetensors only; never pickle).

        Use :func:`xdiffsr.load_model`, which dispatches here on the header's ``kind``.
        """
        h, state = _read(path, device)
        try:
            ae = LatLonAutoencoder(AutoencoderConfig.from_dict(h["autoencoder_config"]))
            net = SongUNet.from_config(UNetConfig.from_dict(h["unet_config"]))
            precond = EDMPrecond(net, sigma_data=h["sigma_data"], sigma_min=h["sigma_min"],
                                 sigma_max=h["sigma_max"])
            ae.load_state_dict(_part(state, _AE))
            precond.load_state_dict(_part(state, _PRIOR))
            grid = Grid(np.asarray(h["lat"], dtype=float), np.asarray(h["lon"], dtype=float))
        except (XDiffSRError, TypeError, ValueError, KeyError, RuntimeError) as err:
            raise ModelError(
                f"latent model file {str(path)!r}: its metadata and tensors do not build the "
                f"autoencoder and prior ({err}); the file was edited or written by another "
                "version: save the model again."
            ) from err
        if tuple(net.config.img_resolution) != tuple(ae.latent_shape[1:]):
            raise ModelError(
                f"latent model file {str(path)!r}: the prior's img_resolution "
                f"{tuple(net.config.img_resolution)} is not the latent grid "
                f"{tuple(ae.latent_shape[1:])}; save the model again."
            )
        try:
            return cls(
                ae.to(device), precond.to(device), h["variables"], h["units"], grid,
                h["center"], h["scale"], h["latent_center"], h["latent_scale"],
                attrs=h.get("attrs"), name=h.get("name", Path(path).stem),
                metadata=h.get("metadata"), reference=reference,
            )
        except ArgumentError as err:
            raise ModelError(f"latent model file {str(path)!r}: {err}") from err


def _part(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _read(path: str | Path, device) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Header and tensors of a latent model file (ModelError if unreadable or not latent)."""
    meta, state = read_model_file(path, device)
    h = parse_header(meta["xdiffsr"], path)
    if h.get("kind") != KIND:
        raise ModelError(
            f"{str(path)!r} is not an xdiffsr latent model (metadata kind {h.get('kind')!r}); "
            "open it with load_model."
        )
    check_finite(state, path)
    return h, state


def model_kind(path: str | Path) -> str:
    """``"latent"`` or ``"pixel"``: the ``kind`` in a model file's header (``"pixel"`` when
    absent, as in every file written before latent models existed, or unreadable: the pixel
    reader then reports what is wrong)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
        h = json.loads(meta.get("xdiffsr", "{}"))
    except (SafetensorError, OSError, ValueError):
        return "pixel"
    return KIND if isinstance(h, dict) and h.get("kind") == KIND else "pixel"
