"""What a lazy task receives for a model: its :class:`ModelRef`, or one shared graph key."""

from __future__ import annotations

import os
from typing import Any

import torch

from xdiffsr.models.prior import Prior
from xdiffsr.models.registry import ModelRef, open_model

__all__ = ["ModelRef", "fingerprint", "model_handle", "model_ref", "open_model", "resolve_handle"]


def model_ref(model: Any) -> ModelRef | None:
    """The file reference of ``model``: a :class:`ModelRef` as is, a name or path referenced
    (:meth:`ModelRef.of`), a prior's own ``reference`` (set by :func:`xdiffsr.load_model`);
    None for an in-memory prior."""
    if isinstance(model, ModelRef):
        return model
    if isinstance(model, str | os.PathLike):
        return ModelRef.of(model)
    return getattr(model, "reference", None)


def model_handle(model: Prior) -> Any:
    """What a lazy task receives for ``model``: its :class:`ModelRef` (a few hundred bytes), or,
    for an in-memory prior, one ``dask.delayed`` graph key shared by every task (shipped once
    per worker)."""
    ref = model_ref(model)
    if ref is not None:
        return ref
    import dask

    return dask.delayed(model, name=f"xdiffsr-prior-{model.fingerprint()[:32]}", pure=True)


def resolve_handle(handle: Any, device: str | torch.device | None) -> Prior:
    """The prior of a task's handle: a :class:`ModelRef` is loaded through the per-process
    cache of :func:`xdiffsr.load_model`; an in-memory prior is returned as is."""
    return handle.resolve(device) if isinstance(handle, ModelRef) else handle


def fingerprint(model: Prior) -> str:
    """``model.fingerprint()`` (:meth:`xdiffsr.Prior.fingerprint`)."""
    return model.fingerprint()
