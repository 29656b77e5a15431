"""Fit the member batch to a memory budget: parse budgets, probe peaks, extrapolate.

The peak memory of a guided evaluation grows linearly with the batch (weights and observations
are a constant; activations, their gradients and the sampler state are per member), so two
probes, at batch 1 and 2, give the largest batch under a budget. The fitting is a pure function
of a probe (:func:`fit_batch_size`), so it is tested without a GPU; :func:`cuda_peak_probe`
measures the real peaks with ``torch.cuda.max_memory_allocated``. Pure torch (no xarray).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from numbers import Real

import torch

from ..errors import ArgumentError

__all__ = [
    "AUTO_FRACTION",
    "HOST_BATCH",
    "auto_budget",
    "cuda_peak_probe",
    "fit_batch_size",
    "host_batch_size",
    "parse_memory",
]

#: With ``max_memory="auto"``, the share of the device's free memory (plus what this process
#: already holds) that the sampler may use; the rest is a margin for fragmentation and for
#: the linear extrapolation.
AUTO_FRACTION = 0.9

#: Members per batch on devices without a memory probe (the CPU) when ``batch_size`` is None,
#: for a guided denoiser (forward and backward passes) and an unguided one. Batching helps a CPU
#: only until the convolutions saturate its cores; beyond that a larger batch is a larger working
#: set (a guided one is 3-6 times the unguided one) and was slower per member on 2 cores: 16
#: guided members per batch ran slower per member than 4 (issue 15).
HOST_BATCH = {"guided": 4, "unguided": 8}

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_MEMORY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_memory(value: int | float | str | None, name: str = "max_memory") -> int | str | None:
    """A memory budget in bytes, ``"auto"`` or None.

    Parameters
    ----------
    value : int, float, str or None
        Bytes (``4e10``), a string with a unit (``"40GB"``, ``"40 GiB"``, ``"512MiB"``; kB, MB,
        GB, TB are powers of 1000, KiB, MiB, GiB, TiB powers of 1024), ``"auto"`` or None.
    name : str
        Argument name for error messages.

    Returns
    -------
    int, "auto" or None
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        m = _MEMORY.match(value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ArgumentError(
                f"{name}={value!r} is not a memory size; give bytes (4e10), a size with a unit "
                "('40GB', '40GiB', '512MB') or 'auto'."
            )
        num = float(m.group(1)) * _UNITS[m.group(2).lower()]
    elif isinstance(value, Real) and not isinstance(value, bool):
        num = float(value)
    else:
        raise ArgumentError(
            f"{name}={value!r} must be a number of bytes, a string such as '40GB', or 'auto'."
        )
    if not math.isfinite(num) or num < 1:
        raise ArgumentError(f"{name}={value!r} must be a positive finite number of bytes.")
    return int(num)


def fit_batch_size(peak_at: Callable[[int], int], budget: int, members: int) -> int:
    """Largest batch of members whose peak memory fits ``budget``.

    Measures ``peak_at(1)`` and ``peak_at(2)`` and extrapolates linearly,
    ``peak(b) = peak(1) + (b - 1) (peak(2) - peak(1))``.

    Parameters
    ----------
    peak_at : callable
        Peak memory in bytes of one evaluation at a batch of ``b`` members (called with 1 and,
        if ``members > 1``, 2).
    budget : int
        Bytes available, in the units of ``peak_at`` (the whole peak, constant part included).
    members : int
        Upper bound of the batch (the ensemble size, or a ``batch_size`` given with it).

    Returns
    -------
    int
        A batch size in ``[1, members]``.

    Raises
    ------
    ArgumentError
        If even one member does not fit.
    """
    if members < 1:
        raise ArgumentError(f"members={members!r} must be >= 1.")
    p1 = int(peak_at(1))
    if p1 > budget:
        raise ArgumentError(
            f"max_memory: one member's guided evaluation needs {_gib(p1)} but the budget is "
            f"{_gib(budget)}; raise max_memory, or need less with checkpoint=True (activation "
            "checkpointing) or precision='bf16'."
        )
    if members == 1:
        return 1
    p2 = int(peak_at(2))
    if p2 > budget:
        return 1
    slope = p2 - p1
    if slope <= 0:  # no measurable per-member cost
        return members
    return int(min(members, 1 + (budget - p1) // slope))


def host_batch_size(members: int, guided: bool) -> int:
    """Members per batch on a device without a memory probe (the CPU): :data:`HOST_BATCH`,
    at most ``members``."""
    return max(1, min(int(members), HOST_BATCH["guided" if guided else "unguided"]))


def _gib(n: int) -> str:
    return "more memory than the device has" if n >= sys.maxsize else f"{n / 2**30:.2f} GiB"


def auto_budget(device: torch.device) -> int | None:
    """``max_memory="auto"``: ``AUTO_FRACTION`` of the CUDA device's free memory plus what this
    process holds (allocated and cached); None (no limit) on other devices."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    held = torch.cuda.memory_reserved(device)
    allocated = torch.cuda.memory_allocated(device)
    return int(allocated + AUTO_FRACTION * (free + held - allocated))


def cuda_peak_probe(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    state_shape: tuple[int, ...],
    device: torch.device,
    sigma: float,
) -> Callable[[int], int]:
    """``peak_at(b)`` for :func:`fit_batch_size`: the peak allocated CUDA memory of one
    evaluation of ``denoiser`` (guided: forward and backward) at ``b`` random states of shape
    ``state_shape`` and noise level ``sigma``; ``sys.maxsize`` if it runs out of memory."""

    def peak_at(b: int) -> int:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            x = torch.randn((b, *state_shape), device=device) * sigma
            with torch.no_grad():
                denoiser(x, torch.full((b,), sigma, device=device)).float()
            torch.cuda.synchronize(device)
        except torch.OutOfMemoryError:
            return sys.maxsize
        finally:
            x = None
        return int(torch.cuda.max_memory_allocated(device))

    return peak_at
