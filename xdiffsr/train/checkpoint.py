"""Training checkpoints as safetensors files: tensors for the weights and optimiser moments,
JSON (in the safetensors header) for everything else. Nothing is pickled, so a checkpoint from
an untrusted source cannot execute code when it is read.

Layout of the tensors: ``model.<param>``, ``ema.<param>``, ``optim.<index>.<key>`` (AdamW
``exp_avg``, ``exp_avg_sq``, ``step``), ``rng.torch_cpu`` and ``rng.torch_cuda.<device>``
(uint8 generator states). The header key ``xdiffsr`` holds a JSON object with the training
config, the step, the normalisation, the grid, the optimiser's hyperparameters and non-tensor
state, and the numpy RNG state.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xdiffsr.errors import ModelError

__all__ = ["FORMAT", "latest_checkpoint", "read_checkpoint", "write_checkpoint"]

FORMAT = "xdiffsr-checkpoint"
VERSION = "1"
_NAME = re.compile(r"^ckpt-(\d+)\.safetensors$")


def checkpoint_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / f"ckpt-{step:06d}.safetensors"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``out_dir``, oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``out_dir``, or None."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def _optim_to_tensors(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, st in state["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optim_from_tensors(tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for pid, st in info["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
              for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.torch_cuda.{i}"] = s
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global state)
    return tensors, {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}


def restore_rng(tensors: Mapping[str, torch.Tensor], header: Mapping[str, Any]) -> None:
    """Restore the torch (CPU and CUDA) and numpy global generator states of a checkpoint."""
    try:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    except (KeyError, RuntimeError, TypeError) as err:
        raise ModelError(
            f"checkpoint torch RNG state is damaged ({err}); resume from an earlier checkpoint "
            "or start a new run."
        ) from err
    cuda = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items()
                  if k.startswith("rng.torch_cuda."))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([v for _, v in cuda])
    try:
        name, keys, pos, has_gauss, gauss = header["rng"]["numpy"]
        state = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)
        np.random.set_state(state)  # noqa: NPY002 (the global state saved by _rng_state)
    except (KeyError, ValueError, TypeError) as err:
        raise ModelError(
            f"checkpoint numpy RNG state is damaged ({type(err).__name__}: {err}); resume from "
            "an earlier checkpoint or start a new run."
        ) from err


def write_checkpoint(path: str | Path, *, model: torch.nn.Module, ema: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, header: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically (temporary file, then rename).

    Parameters
    ----------
    path : path
        Destination ``.safetensors`` file.
    model, ema : torch.nn.Module
        Trained and EMA networks (unwrapped, not DDP).
    optimizer : torch.optim.Optimizer
        Its ``state_dict`` is split into tensors and JSON.
    header : mapping
        JSON-serialisable run state (config, step, normalisation, grid, ...).
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}
    opt_tensors, opt_info = _optim_to_tensors(optimizer.state_dict())
    rng_tensors, rng_info = _rng_state()
    tensors |= opt_tensors | rng_tensors
    meta = {**header, "optimizer": opt_info, "rng": rng_info}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": VERSION,
                                           "xdiffsr": json.dumps(meta)})
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON header of a checkpoint written by :func:`write_checkpoint`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    if meta.get("format") != FORMAT or "xdiffsr" not in meta:
        raise ModelError(f"{str(path)!r} is not an xdiffsr training checkpoint "
                         f"(metadata keys {sorted(meta)}).")
    try:
        header = json.loads(meta["xdiffsr"])
    except ValueError as err:
        raise ModelError(
            f"checkpoint {str(path)!r}: its JSON header (metadata 'xdiffsr') is damaged ({err}); "
            "resume from an earlier checkpoint (delete this one) or start a new run."
        ) from err
    missing = [k for k in _HEADER_KEYS if not isinstance(header, dict) or k not in header]
    if missing:
        raise ModelError(
            f"checkpoint {str(path)!r}: its JSON header lacks {missing}; resume from an earlier "
            "checkpoint (delete this one) or start a new run."
        )
    if "rng.torch_cpu" not in tensors:
        raise ModelError(
            f"checkpoint {str(path)!r} lacks the tensor 'rng.torch_cpu'; resume from an "
            "earlier checkpoint (delete this one) or start a new run."
        )
    return tensors, header


#: Keys :func:`write_checkpoint` always writes into the JSON header (:func:`read_checkpoint`).
_HEADER_KEYS = ("optimizer", "rng")


def load_into(tensors: Mapping[str, torch.Tensor], header: Mapping[str, Any], *,
              model: torch.nn.Module, ema: torch.nn.Module,
              optimizer: torch.optim.Optimizer) -> None:
    """Load weights, EMA weights and optimiser state from a checkpoint read into memory."""
    for prefix, module in (("model.", model), ("ema.", ema)):
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(sd)
        except RuntimeError as err:
            raise ModelError(f"checkpoint weights do not match the network: {err}") from err
    try:
        optimizer.load_state_dict(_optim_from_tensors(tensors, header["optimizer"]))
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise ModelError(
            f"checkpoint optimiser state does not match the optimiser ({type(err).__name__}: "
            f"{err}); resume from an earlier checkpoint or start a new run."
        ) from err
