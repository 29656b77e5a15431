"""Model references: what a task carries instead of the weights, and a per-process cache."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xdiffsr.errors import ModelError
from xdiffsr.models.diffusion import DiffusionModel
from xdiffsr.models.prior import Prior
from xdiffsr.models.registry import _is_bare_name, fetch_weights

_LOCK = threading.Lock()


_CACHE: dict[tuple[str, str], Prior] = {}  # (sha256 of the file, device) -> model


_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256


#: Per-process counters: model files read, cache hits, regrid operators built and reused.
_CACHE_STATS: dict[str, int] = {"loads": 0, "hits": 0, "operators": 0, "operator_hits": 0}


def _sha256(path: str | Path) -> str:
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


@dataclass(frozen=True)
class ModelRef:
    """A light, picklable reference to a model file: what a task carries instead of the weights.

    Parameters
    ----------
    sha256 : str
        Hex digest of the safetensors file; the cache key, and checked before a worker loads.
    path : str, optional
        Where the file lies (on the client; a worker uses it if it sees the same file).
    name : str, optional
        Registered name (``"default"``); a worker without the file fetches it with
        :func:`xdiffsr.models.registry.fetch_weights` (pooch cache, hash-checked).
    """

    sha256: str
    path: str | None = None
    name: str | None = None

    @property
    def token(self) -> str:
        return f"sha256:{self.sha256}"

    @classmethod
    def of(cls, name_or_path: str | os.PathLike) -> ModelRef:
        """Reference a registered model name or a model file (hashes the file once)."""
        text = os.fspath(name_or_path)
        path = Path(text)
        if path.is_file():
            return cls(_sha256(path), str(path.resolve()), None)
        if _is_bare_name(name_or_path):
            found = fetch_weights(text)
            return cls(_sha256(found), str(found), text)
        raise ModelError(
            f"no model file {text!r}; give the path of a .safetensors model written by "
            "DiffusionModel.save, or a registered name such as 'default'."
        )

    def _locate(self) -> Path:
        if self.path and Path(self.path).is_file() and _sha256(self.path) == self.sha256:
            return Path(self.path)
        if self.name:
            found = fetch_weights(self.name, progress=False)
            if _sha256(found) == self.sha256:
                return found
        raise ModelError(
            f"model file with sha256 {self.sha256} not found on this worker (path "
            f"{self.path!r}, name {self.name!r}); put the file at the same path on every worker, "
            "or use a registered model name so workers fetch it themselves."
        )

    def resolve(self, device: str | torch.device | None = "cpu") -> Prior:
        """The model on ``device`` (None: the CPU), loaded once per process."""
        dev = torch.device(device or "cpu")
        key = (self.sha256, str(dev))
        with _LOCK:
            if key in _CACHE:
                _CACHE_STATS["hits"] += 1
                return _CACHE[key]
            model = DiffusionModel.load(self._locate(), device=dev)
            model._xdiffsr_ref = self
            _CACHE[key] = model
            _CACHE_STATS["loads"] += 1
            return model


def open_model(name_or_path: str | os.PathLike, *, device: str | None = "cpu") -> Prior:
    """Load a model through the per-process cache, tagged with its :class:`ModelRef`.

    Like :func:`xdiffsr.load_model`, but the returned model remembers its file, so lazy
    ``super_resolve(..., chunks=...)`` graphs carry only the reference.
    """
    return ModelRef.of(name_or_path).resolve(device)


def model_ref(model: Any) -> ModelRef | None:
    """The file reference of ``model`` if it has one (a name, a path, or a model loaded from a
    file), else None (an in-memory prior)."""
    if isinstance(model, ModelRef):
        return model
    if isinstance(model, str | os.PathLike):
        return ModelRef.of(model)
    ref = getattr(model, "_xdiffsr_ref", None)
    if ref is not None:
        return ref
    source = getattr(model, "source", None)  # set by DiffusionModel.load where available
    if isinstance(model, DiffusionModel) and source and Path(source).is_file():
        return ModelRef(_sha256(source), str(Path(source).resolve()), None)
    return None


def model_handle(model: Prior):
    """What a lazy task receives for ``model``: its :class:`ModelRef` (a few hundred bytes), or,
    for an in-memory prior, one ``dask.delayed`` graph key shared by every task (shipped once
    per worker)."""
    ref = model_ref(model)
    if ref is not None:
        return ref
    import dask

    return dask.delayed(model, name=f"xdiffsr-prior-{fingerprint(model)[:32]}", pure=True)


def _resolve(handle, device) -> Prior:
    return handle.resolve(device) if isinstance(handle, ModelRef) else handle


def _update_hash(h, obj, seen: set) -> None:
    if isinstance(obj, torch.nn.Module):
        for k, v in sorted(obj.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(obj, torch.Tensor):
        h.update(obj.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(str(obj.dtype).encode() + np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _update_hash(h, obj[k], seen)
    elif isinstance(obj, list | tuple):
        for x in obj:
            _update_hash(h, x, seen)
    elif hasattr(obj, "__dict__") and id(obj) not in seen:
        seen.add(id(obj))
        _update_hash(h, type(obj).__name__, seen)
        _update_hash(h, {k: v for k, v in vars(obj).items() if k not in _NOT_HASHED}, seen)
    else:
        h.update(repr(obj).encode())


_NOT_HASHED = {"_denoisers", "_xdiffsr_ref", "source"}


def fingerprint(model: Prior) -> str:
    """sha256 of a prior's content (metadata, normalisation, weights), independent of where it
    came from and of its device: the model identity recorded in a store."""
    h = hashlib.sha256()
    _update_hash(h, model, set())
    return h.hexdigest()
