"""A trained EDM diffusion prior, saved as safetensors with JSON metadata."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xdiffsr.core.precond import EDMPrecond
from xdiffsr.core.unet import SongUNet, UNetConfig
from xdiffsr.errors import ModelError
from xdiffsr.grid import Grid
from xdiffsr.models.prior import Prior

FORMAT = "xdiffsr-model"
FORMAT_VERSION = "1"


class DiffusionModel(Prior):
    """A trained EDM diffusion prior: network, preconditioning and metadata.

    Parameters
    ----------
    precond : EDMPrecond
        Preconditioned denoiser wrapping the backbone.
    variables, units, grid, center, scale, attrs
        See :class:`Prior`.
    metadata : dict
        Free-form JSON-serialisable description (training data, steps, ...).
    reference : ModelRef, optional
        The file it was loaded from (set by :func:`xdiffsr.load_model`), see :class:`Prior`.
    """

    def __init__(
        self,
        precond: nn.Module,
        variables,
        units,
        grid: Grid,
        center,
        scale,
        *,
        attrs=None,
        name: str = "model",
        metadata: Mapping[str, Any] | None = None,
        reference: Any = None,
    ):
        super().__init__(variables, units, grid, center, scale, attrs)
        self.precond = precond.eval()
        self.name = name
        self.metadata = dict(metadata or {})
        self.reference = reference
        self.sigma_min = float(getattr(precond, "sigma_min", 0.002))
        self.sigma_max = float(getattr(precond, "sigma_max", 80.0))

    def _build_denoiser(self) -> nn.Module:
        return self.precond

    def denoiser(self, device: torch.device | str = "cpu") -> nn.Module:
        return self.precond.to(device).eval()

    def _header(self) -> dict[str, Any]:
        cfg = self.precond.net.config.to_dict() if hasattr(self.precond.net, "config") else None
        return {
            "name": self.name,
            "variables": list(self.variables),
            "units": self.units,
            "attrs": self.attrs,
            "lat": self.grid.lat.tolist(),
            "lon": self.grid.lon.tolist(),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "unet_config": cfg,
            "sigma_data": float(self.precond.sigma_data),
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "metadata": self.metadata,
        }

    def _fingerprint_items(self) -> Iterable[tuple[str, Any]]:
        header = {k: v for k, v in self._header().items() if k in ("unet_config", "metadata")}
        weights = sorted(self.precond.state_dict().items())
        return [
            *super()._fingerprint_items(),
            ("header", header),
            ("sigma_data", float(self.precond.sigma_data)),
            *((f"weight:{k}", v) for k, v in weights),
        ]

    def save(self, path: str | Path) -> Path:
        """Write weights and metadata to a safetensors file (JSON metadata in its header)."""
        from safetensors.torch import save_file

        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.precond.state_dict().items()}
        save_file(
            state,
            str(path),
            metadata={
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "xdiffsr": json.dumps(self._header()),
            },
        )
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, device: str | torch.device = "cpu", reference: Any = None
    ) -> DiffusionModel:
        """Read a model file written by :meth:`save` (safetensors only; never pickle).

        The low-level reader: use :func:`xdiffsr.load_model`, which also accepts registered
        names, verifies and caches, and sets :attr:`reference` (given here as ``reference``).
        """
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelError(f"cannot read model file {str(path)!r}: {err}") from err
        if meta.get("format") != FORMAT or "xdiffsr" not in meta:
            raise ModelError(
                f"{str(path)!r} is a safetensors file but not an xdiffsr model "
                f"(metadata keys: {sorted(meta)})."
            )
        h = json.loads(meta["xdiffsr"])
        net = SongUNet.from_config(UNetConfig.from_dict(h["unet_config"]))
        precond = EDMPrecond(
            net, sigma_data=h["sigma_data"], sigma_min=h["sigma_min"], sigma_max=h["sigma_max"]
        )
        try:
            precond.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"weights in {str(path)!r} do not match its architecture: {err}"
            ) from err
        grid = Grid(np.asarray(h["lat"]), np.asarray(h["lon"]))
        model = cls(
            precond.to(device),
            h["variables"],
            h["units"],
            grid,
            h["center"],
            h["scale"],
            attrs=h.get("attrs"),
            name=h.get("name", Path(path).stem),
            metadata=h.get("metadata"),
            reference=reference,
        )
        return model
