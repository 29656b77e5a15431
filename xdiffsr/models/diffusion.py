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
from xdiffsr.errors import ModelError, XDiffSRError
from xdiffsr.grid import Grid
from xdiffsr.models.prior import Prior

FORMAT = "xdiffsr-model"
FORMAT_VERSION = "1"


#: UNetConfig fields added after models were released, with the value older files mean: a model
#: that keeps it has the fingerprint (and cached covariance) it had before the field existed.
_LATER_UNET_FIELDS = {"lat_padding": "zeros", "vector_channels": [], "lat_embedding": False}


def fingerprint_unet_config(config: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A network configuration for fingerprints: fields added since a model was released are
    left out where they hold the value older files mean (same fingerprint, same cache)."""
    if not config:
        return config
    return {k: v for k, v in config.items()
            if not (k in _LATER_UNET_FIELDS and v == _LATER_UNET_FIELDS[k])}


def sampling_churn(metadata: Mapping[str, Any], name: str) -> float:
    """The stochastic churn a model file records for its sampler (``metadata["sampling"]
    ["S_churn"]``, a finite number >= 0), 0 where it records none; ModelError otherwise."""
    value = (metadata.get("sampling") or {}).get("S_churn", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not np.isfinite(value) or value < 0:
        raise ModelError(f"model {name!r}: metadata['sampling']['S_churn'] = {value!r} is not a "
                         "finite number >= 0; the file was edited or written by another tool.")
    return float(value)


def sampling_truncation(metadata: Mapping[str, Any], name: str) -> int | None:
    """The band limit a model file records for its states (``metadata["sampling"]
    ["zonal_truncation"]``, a positive integer), None where it records none; ModelError
    otherwise."""
    value = (metadata.get("sampling") or {}).get("zonal_truncation")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"model {name!r}: metadata['sampling']['zonal_truncation'] = {value!r} "
                         "is not a positive integer; the file was edited or written by another "
                         "tool.")
    return int(value)


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
        self.S_churn = sampling_churn(self.metadata, name)
        self.zonal_truncation = sampling_truncation(self.metadata, name)

    def _build_denoiser(self) -> nn.Module:
        return self.precond

    def denoiser(self, device: torch.device | str = "cpu") -> nn.Module:
        return self.precond.to(device).eval()

    def _header(self) -> dict[str, Any]:
        return model_header(self, self.precond)

    def _fingerprint_items(self) -> Iterable[tuple[str, Any]]:
        header = {k: v for k, v in self._header().items() if k in ("unet_config", "metadata")}
        header["unet_config"] = fingerprint_unet_config(header.get("unet_config"))
        weights = sorted(self.precond.state_dict().items())
        return [
            *super()._fingerprint_items(),
            ("header", header),
            ("sigma_data", float(self.precond.sigma_data)),
            *((f"weight:{k}", v) for k, v in weights),
        ]

    def save(self, path: str | Path) -> Path:
        """Write weights and metadata to a safetensors file (JSON metadata in its header)."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.precond.state_dict().items()}
        return write_model_file(path, state, self._header())

    @classmethod
    def load(
        cls, path: str | Path, *, device: str | torch.device = "cpu", reference: Any = None
    ) -> DiffusionModel:
        """Read a model file written by :meth:`save` (safetensors only; never pickle).

        The low-level reader: use :func:`xdiffsr.load_model`, which also accepts registered
        names, verifies and caches, and sets :attr:`reference` (given here as ``reference``).
        """
        meta, state = read_model_file(path, device)
        h = parse_header(meta["xdiffsr"], path)
        check_finite(state, path)
        try:
            net = SongUNet.from_config(UNetConfig.from_dict(h["unet_config"]))
            precond = EDMPrecond(
                net, sigma_data=h["sigma_data"], sigma_min=h["sigma_min"], sigma_max=h["sigma_max"]
            )
        except (XDiffSRError, TypeError, ValueError, KeyError) as err:
            raise ModelError(
                f"model file {str(path)!r}: its metadata 'unet_config' or sigma values cannot "
                f"build the network ({err}); the file was written by another version or edited."
            ) from err
        _check_consistent(h, net.config, path)
        try:
            precond.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"weights in {str(path)!r} do not match its architecture: {err}"
            ) from err
        try:
            grid = Grid(np.asarray(h["lat"], dtype=float), np.asarray(h["lon"], dtype=float))
        except (XDiffSRError, TypeError, ValueError) as err:
            raise ModelError(
                f"model file {str(path)!r}: metadata 'lat'/'lon' do not form a grid ({err})."
            ) from err
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


def model_header(prior: Prior, precond: nn.Module) -> dict[str, Any]:
    """The JSON header every model file holds: the prior's variables, units, grid and
    normalisation, the network's configuration and noise range, and the metadata."""
    net = precond.net
    return {
        "name": prior.name,
        "variables": list(prior.variables),
        "units": prior.units,
        "attrs": prior.attrs,
        "lat": prior.grid.lat.tolist(),
        "lon": prior.grid.lon.tolist(),
        "center": prior.center.tolist(),
        "scale": prior.scale.tolist(),
        "unet_config": net.config.to_dict() if hasattr(net, "config") else None,
        "sigma_data": float(precond.sigma_data),
        "sigma_min": prior.sigma_min,
        "sigma_max": prior.sigma_max,
        "metadata": prior.metadata,
    }


def write_model_file(path: str | Path, state: Mapping[str, torch.Tensor], header: dict) -> Path:
    """Write tensors and the JSON ``header`` to one safetensors file (never pickle)."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file(
        dict(state),
        str(path),
        metadata={"format": FORMAT, "version": FORMAT_VERSION, "xdiffsr": json.dumps(header)},
    )
    return path


def read_model_file(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The safetensors metadata and tensors of a model file (:class:`ModelError` if it cannot
    be read or is not an xdiffsr model)."""
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
    return meta, state


#: Keys every model header holds (``DiffusionModel._header``) and their JSON types.
_HEADER_KEYS: dict[str, type | tuple[type, ...]] = {
    "variables": list, "units": dict, "lat": list, "lon": list, "center": list, "scale": list,
    "unet_config": dict, "sigma_data": (int, float), "sigma_min": (int, float),
    "sigma_max": (int, float),
}


def parse_header(text: str, path: str | Path) -> dict[str, Any]:
    """The JSON header of a model file, checked for its keys and their types (ModelError)."""
    try:
        h = json.loads(text)
    except (TypeError, ValueError) as err:
        raise ModelError(
            f"model file {str(path)!r}: its metadata entry 'xdiffsr' is not valid JSON ({err}); "
            "the file is damaged or was edited: re-download it or save the model again."
        ) from err
    if not isinstance(h, dict):
        raise ModelError(
            f"model file {str(path)!r}: its metadata entry 'xdiffsr' is {type(h).__name__}, "
            "not a JSON object; re-download the file or save the model again."
        )
    for key, kind in _HEADER_KEYS.items():
        if key not in h:
            raise ModelError(
                f"model file {str(path)!r}: its metadata lacks the key {key!r} (has "
                f"{sorted(h)}); re-download the file or save the model again."
            )
        if not isinstance(h[key], kind) or isinstance(h[key], bool):
            raise ModelError(
                f"model file {str(path)!r}: metadata {key!r} is {h[key]!r} of type "
                f"{type(h[key]).__name__}; re-download the file or save the model again."
            )
    return h


def check_finite(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """ModelError naming the first tensor holding NaN or infinite values."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelError(
                f"model file {str(path)!r}: tensor {name!r} holds {bad} NaN or infinite "
                f"value(s) of {t.numel()}; the weights are damaged (diverged training?): "
                "use an earlier checkpoint or re-download the file."
            )


def _check_consistent(h: Mapping[str, Any], cfg: UNetConfig, path: str | Path) -> None:
    """ModelError naming the metadata field that disagrees with the network or the others."""
    n_var = len(h["variables"])
    checks = [
        ("'lat' length", len(h["lat"]), "unet_config.img_resolution[0]", cfg.img_resolution[0]),
        ("'lon' length", len(h["lon"]), "unet_config.img_resolution[1]", cfg.img_resolution[1]),
        ("'variables' count", n_var, "unet_config.in_channels", cfg.in_channels),
        ("'variables' count", n_var, "unet_config.out_channels", cfg.out_channels),
        ("'center' length", len(h["center"]), "the number of variables", n_var),
        ("'scale' length", len(h["scale"]), "the number of variables", n_var),
    ]
    for field, got, other, want in checks:
        if got != want:
            raise ModelError(
                f"model file {str(path)!r}: metadata {field} is {got} but {other} is {want}; "
                "the metadata and the network disagree (an edited or mismatched file): "
                "re-download it or save the model again."
            )
