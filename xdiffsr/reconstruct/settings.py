"""Sampler settings: :class:`SamplerSettings`, the one place the sampler options are defined.

Every entry point (:func:`xdiffsr.super_resolve`, the ``Dataset.diffsr`` accessor,
:func:`xdiffsr.reconstruct_to_zarr`, :func:`xdiffsr.reconstruct.sample_time`, the benchmarks)
builds one with :meth:`SamplerSettings.from_options`, which validates every value and refuses
unknown options with the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import torch

from xdiffsr.core.guidance.registry import guidance_names
from xdiffsr.core.memory import parse_memory
from xdiffsr.core.runtime import (
    AUTO,
    check_network_options,
    resolve_channels_last,
    resolve_precision,
)
from xdiffsr.errors import ArgumentError

#: The guidance methods of the package (:data:`xdiffsr.core.guidance.GUIDANCE_BUILDERS`) and
#: "none"; validation reads the table itself, so methods registered later are valid too.
GUIDANCES = guidance_names()

_SPEED = {"speed": True}  # changes speed and memory only: not provenance, may change on resume
_NETWORK = {"network": True}  # passed to xdiffsr.core.runtime.with_network_options


def _help(text: str, **metadata: Any) -> dict[str, Any]:
    """A field's metadata: its one-line help (the command line's) and its kind."""
    return {"help": text, **metadata}


@dataclass(frozen=True)
class SamplerSettings:
    """Validated options of the posterior sampler (immutable).

    Parameters
    ----------
    members : int
        Ensemble size (> 0).
    steps : int
        Noise levels of the Karras schedule (> 0; the sampler evaluates ``2 steps - 1`` times).
    seed : int
        Global seed, an integer >= 0 of any size (all its bits are used); the members at a time
        depend only on (seed, timestamp, member index).
    guidance : {'jf', 'mmps', 'sda', 'none'}
        'jf' (default): Jacobian-free moment matching, MMPS with the prior's stationary
        covariance (:meth:`xdiffsr.models.Prior.covariance`, estimated once per prior from its
        own samples) in place of the network's Jacobian: one forward and no backward pass per
        evaluation, except in the noise band ``mmps_sigmas`` where MMPS runs; by default (15
        steps, MMPS at the one noise level in [1.3, 3]) the OSSE scores of 18-step 'mmps' at
        a third of its network passes, with radiosondes and a coarse field and with the coarse
        field alone (``benchmarks/RESULTS.md``);
        'mmps': moment-matching posterior sampling with the network's Jacobian (exact for a
        Gaussian prior, stable however many observations; one forward and up to ``cg_iters``
        backward passes per evaluation);
        'sda': the paper's Algorithm 1, the likelihood gradient with variance ``Sigma_y +
        sigma^2 Gamma`` (one backward pass; its step grows with the number of observations per
        model cell, see ``clip``); 'none': unguided prior samples.
    lambda_g : float
        Guidance scale (finite, >= 0).
    clip : float, optional
        Maximum RMS of the SDA guidance step (finite, > 0), or None for no clipping.
    cg_iters : int
        Maximum conjugate-gradient iterations of MMPS (> 0). 2 by default: robust with a trained
        network on data unlike its training set (more iterations of CG on a network Jacobian that
        is not a covariance fitted real ERA5 fields worse); raise it (10-20) for the exact
        posterior of a Gaussian prior.
    mmps_sigmas : (float, float), optional
        With ``guidance='jf'``: the noise levels ``[lo, hi]`` (normalised units, as the
        schedule) at which the evaluation uses the network's Jacobian (MMPS, ``cg_iters``)
        instead of the stationary covariance; None: nowhere (pure 'jf'). At mid noise the
        prior's Tweedie covariance departs most from a stationary one: on the OSSE's coarse
        field, MMPS there recovered the accuracy of MMPS everywhere (``benchmarks/RESULTS.md``).
        Default ``(1.3, 3.0)``: with 15 steps, the one level 2.5 (two evaluations). The band
        is in noise levels, not steps: with other ``steps`` it holds other levels (none, or
        several), so check the passes (:class:`~xdiffsr.core.likelihood.PassCounter`).
    cg_tol : float
        Relative-residual tolerance of MMPS's conjugate gradients (in [0, 1)): CG stops when
        every member's preconditioned residual norm is below ``cg_tol`` times its initial one,
        or after ``cg_iters`` iterations; 0 always runs ``cg_iters``.
    S_churn, S_tmin, S_tmax, S_noise : float
        Stochastic churn of Karras et al. (2022), Algorithm 2: amount (>= 0), noise range
        ``[S_tmin, S_tmax]`` where it applies (``S_tmax`` may be ``inf``) and noise inflation.
        ``S_churn=None`` (the default) is the prior's own (:attr:`Prior.S_churn
        <xdiffsr.Prior.S_churn>`): the churn measured best for that model and recorded in its
        file (the packaged default model: 10, which lowered RMSE and CRPS of every variable on
        held-out states; ``benchmarks/RESULTS.md``, "Stochastic churn"), else 0, the
        deterministic Heun sampler of the paper. Churn corrects part of a learned denoiser's
        error; with an exact denoiser (Gaussian priors) it only adds discretisation spread.
    zonal_truncation : int, optional
        Band limit of the denoiser's output: the total wavenumber ``N`` of the triangular
        truncation the prior's training data have; each latitude row keeps the zonal
        wavenumbers up to ``ceil(N cos(lat)) + 1`` (:mod:`xdiffsr.core.zonal`: fields of a
        spectral model hold nothing above ``N cos(lat)``, and a learned denoiser's grid-scale
        noise next to the poles is removed). ``None`` (the default) is the prior's own
        (:attr:`Prior.zonal_truncation <xdiffsr.Prior.zonal_truncation>`, recorded in its
        file; none for Gaussian priors and files that record none), 0 turns it off. Needs a
        pixel-space prior on a global grid.
    corrector_guidance : bool
        Guide the Heun corrector evaluation too.
    sigma_min, sigma_max : float, optional
        Noise range of the schedule (> 0); None: the prior's own.
    batch_size : int, optional
        Rows (members) per network batch (> 0); None: automatic (all members on CUDA, fitted
        to ``max_memory`` if given; on the CPU at most 4 guided or 8 unguided rows,
        :data:`xdiffsr.core.memory.HOST_BATCH`), at most the members of one time unless
        ``batch_times``. Speed only.
    batch_times : bool
        Fill a batch with the members of consecutive times when it holds more rows than there
        are members (on CUDA with ``batch_size=None``: as many rows as fit ``max_memory``,
        ``"auto"`` if unset). Off by default: the members of a time are then the same bit for
        bit however the times are chunked, whereas filled batches change with the chunk
        edges and agree only to float rounding. It pays where one time's
        members leave the device idle (a GPU with 1-2 members); on the CPU it gains nothing
        from 2 members per time on (``benchmarks/RESULTS.md``). Recorded in the provenance
        (it changes the rounding), so a store is resumed with the value it was written with.
    max_memory : int, float or str, optional
        CUDA memory budget: bytes, a size such as ``"40GB"``, or ``"auto"``. Speed only.
    precision : {'auto', 'fp32', 'bf16'}
        Network precision (bf16 autocast). ``'auto'`` (the default) is bf16 where the device
        runs it natively (CPUs with avx512_bf16 or amx_bf16, CUDA compute capability 8.0+),
        else fp32: on this project's CPU bf16 sampling took 0.71x the time of fp32 with RMSE and
        CRPS within 0.3 % (``benchmarks/RESULTS.md``, issue 28). Resolved for the device when a
        reconstruction is built (:meth:`for_device`); changes the numbers, so the resolved
        value is provenance. An explicit 'bf16' on a device without it is an error.
    channels_last : bool or 'auto'
        Run the network's convolutions channels-last (NHWC); ``'auto'`` (the default): on the
        CPU, where it was measured faster (0.91x the time in bf16, 0.70x in fp32; issue 28),
        not elsewhere. Speed only (members agree to float rounding).
    compile, checkpoint
        Network speed options (:func:`xdiffsr.core.runtime.check_network_options`). Speed only.
    """

    members: int = field(default=8, metadata=_help("ensemble members"))
    steps: int = field(default=15, metadata=_help("sampler steps (noise levels)"))
    seed: int = field(default=0, metadata=_help("random seed"))
    guidance: str = field(default="jf", metadata=_help(
        "observation guidance (jf: Jacobian-free moment matching)"))
    lambda_g: float = field(default=1.0, metadata=_help("guidance scale"))
    clip: float | None = field(default=None, metadata=_help("maximum RMS of the sda step"))
    cg_iters: int = field(default=2, metadata=_help("conjugate-gradient iterations (mmps)"))
    mmps_sigmas: tuple[float, float] | None = field(default=(1.3, 3.0), metadata=_help(
        "with guidance jf: noise levels where MMPS (the network's Jacobian) is used, or none"))
    cg_tol: float = field(default=1e-3, metadata=_help("relative tolerance of CG"))
    S_churn: float | None = field(default=None, metadata=_help(
        "stochastic churn (none: the prior's own; 0: deterministic)"))
    S_tmin: float = field(default=0.0, metadata=_help("lowest noise level of the churn"))
    S_tmax: float = field(default=math.inf, metadata=_help("highest noise level of the churn"))
    S_noise: float = field(default=1.0, metadata=_help("noise inflation of the churn"))
    corrector_guidance: bool = field(default=True, metadata=_help(
        "guide the Heun corrector too"))
    zonal_truncation: int | None = field(default=None, metadata=_help(
        "band limit N of the denoiser's output, m <= ceil(N cos lat) + 1 (none: the prior's "
        "own; 0: off)"))
    sigma_min: float | None = field(default=None, metadata=_help(
        "lowest noise level (none: the prior's)"))
    sigma_max: float | None = field(default=None, metadata=_help(
        "highest noise level (none: the prior's)"))
    batch_size: int | None = field(default=None, metadata=_help(
        "members per network batch (none: automatic)", **_SPEED))
    batch_times: bool = field(default=False, metadata=_help(
        "fill network batches across consecutive times (opt-in: members then depend on the "
        "chunking by float rounding)"))
    max_memory: int | str | None = field(default=None, metadata=_help(
        "CUDA memory budget, e.g. 40GB or auto", **_SPEED))
    precision: str = field(default=AUTO, metadata=_help(
        "fp32, bf16, or auto (bf16 where the device runs it natively, else fp32)", **_NETWORK))
    channels_last: bool | str = field(default=AUTO, metadata=_help(
        "channels-last memory format (auto: on the CPU)", **_SPEED, **_NETWORK))
    compile: bool | str = field(default=False, metadata=_help(
        "torch.compile the network (or a mode)", **_SPEED, **_NETWORK))
    checkpoint: bool = field(default=False, metadata=_help(
        "activation checkpointing", **_SPEED, **_NETWORK))

    def __post_init__(self) -> None:
        for name in ("members", "steps", "cg_iters"):
            self._set(name, _integer(name, getattr(self, name), minimum=1))
        self._set("seed", _integer("seed", self.seed, minimum=0))  # any size: member_seed
        if self.batch_size is not None:
            self._set("batch_size", _integer("batch_size", self.batch_size, minimum=1))
        if self.guidance not in guidance_names():
            raise ArgumentError(f"guidance={self.guidance!r}; choose one of {guidance_names()}.")
        for name in ("lambda_g", "S_tmin", "S_noise"):
            self._set(name, _number(name, getattr(self, name), minimum=0.0))
        if self.S_churn is not None:
            self._set("S_churn", _number("S_churn", self.S_churn, minimum=0.0))
        if self.zonal_truncation is not None:
            self._set("zonal_truncation",
                      _integer("zonal_truncation", self.zonal_truncation, minimum=0))
        self._set("S_tmax", _number("S_tmax", self.S_tmax, minimum=self.S_tmin, inf=True))
        self._set("cg_tol", _number("cg_tol", self.cg_tol, minimum=0.0))
        if self.cg_tol >= 1.0:
            raise ArgumentError(f"cg_tol={self.cg_tol!r} must be below 1.")
        if self.mmps_sigmas is not None:
            self._set("mmps_sigmas", _band("mmps_sigmas", self.mmps_sigmas))
        for name in ("clip", "sigma_min", "sigma_max"):
            if getattr(self, name) is not None:
                self._set(name, _number(name, getattr(self, name), minimum=0.0, strict=True))
        if self.sigma_min is not None and self.sigma_max is not None:
            if self.sigma_min >= self.sigma_max:
                raise ArgumentError(
                    f"sigma_min={self.sigma_min!r} must be below sigma_max={self.sigma_max!r}."
                )
        for name in ("corrector_guidance", "batch_times"):
            if not isinstance(getattr(self, name), bool):
                raise ArgumentError(f"{name}={getattr(self, name)!r} must be True or False.")
        self._set("max_memory", parse_memory(self.max_memory, "max_memory"))
        for name, value in check_network_options(**self._network_fields()).items():
            self._set(name, value)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass's own fields

    def _network_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in NETWORK_SETTINGS}

    @classmethod
    def from_options(cls, base: SamplerSettings | None = None, **options: Any) -> SamplerSettings:
        """Settings from keyword options (on top of ``base``, default: the defaults).

        Raises
        ------
        ArgumentError
            An unknown option (the message names the closest valid one and lists them all), or
            an invalid value.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ArgumentError(
                    f"unknown sampler option {key!r}.{hint} Valid options: {', '.join(names)}."
                )
        return dataclasses.replace(base or cls(), **options)

    def for_device(self, device: torch.device | str) -> SamplerSettings:
        """These settings with ``precision='auto'`` and ``channels_last='auto'`` resolved for
        ``device`` (:func:`~xdiffsr.core.runtime.resolve_precision`,
        :func:`~xdiffsr.core.runtime.resolve_channels_last`); explicit values unchanged."""
        precision = resolve_precision(self.precision, device)
        channels_last = resolve_channels_last(self.channels_last, device)
        if (precision, channels_last) == (self.precision, self.channels_last):
            return self
        return dataclasses.replace(self, precision=precision, channels_last=channels_last)

    def replace(self, **options: Any) -> SamplerSettings:
        """A copy with ``options`` changed (validated as in :meth:`from_options`)."""
        return self.from_options(self, **options)

    def as_dict(self) -> dict[str, Any]:
        """Every setting, as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def network_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`xdiffsr.core.runtime.with_network_options`."""
        return self._network_fields()

    def record(self) -> dict[str, Any]:
        """The settings that determine the members (all but :data:`SPEED_SETTINGS`), JSON-safe.

        Infinite numbers (``S_tmax`` by default) are written as the strings ``"inf"`` /
        ``"-inf"``, so the record is strict JSON (no ``Infinity``): ``float(value)`` reads them
        back. ``compile`` is normalised to False or a mode string.
        """
        return {k: _json_safe(v) for k, v in self.as_dict().items() if k not in SPEED_SETTINGS}

    def to_json(self) -> str:
        """:meth:`record` as strict JSON (the ``sampler`` provenance attribute)."""
        return json.dumps(self.record(), allow_nan=False)


def _integer(name: str, value: Any, minimum: int | None = None) -> int:
    ok = not isinstance(value, bool) and (
        isinstance(value, Integral)  # any size (a float test would overflow for big seeds)
        or (isinstance(value, Real) and math.isfinite(value) and int(value) == value)
    )
    if not ok or (minimum is not None and value < minimum):
        need = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ArgumentError(f"{name}={value!r} must be {need}.")
    return int(value)


def _number(
    name: str, value: Any, minimum: float, *, strict: bool = False, inf: bool = False
) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    if math.isnan(x) or (math.isinf(x) and not (inf and x > 0)):
        allowed = " or inf" if inf else ""
        raise ArgumentError(f"{name}={value!r} must be a finite number{allowed}.")
    if x < minimum or (strict and x == minimum):
        raise ArgumentError(f"{name}={value!r} must be {'>' if strict else '>='} {minimum:g}.")
    return x


def _band(name: str, value: Any) -> tuple[float, float]:
    """``(lo, hi)`` with ``0 <= lo < hi``, both finite (``hi`` may be inf)."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and lo >= 0 and hi > lo) or math.isnan(hi):
        raise ArgumentError(
            f"{name}={value!r} must be a pair (lo, hi) of noise levels with 0 <= lo < hi, e.g. "
            "(2.0, 8.0), or None."
        )
    return lo, hi


def _json_safe(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


#: Settings of how the network runs (:meth:`SamplerSettings.network_options`).
NETWORK_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SamplerSettings) if f.metadata.get("network")
)


#: Settings that change speed and memory only (the members agree to float rounding): left out
#: of the ``sampler`` attribute and of the settings a zarr store must match to be resumed.
#: ``precision`` changes the numbers, so it is recorded and checked.
SPEED_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SamplerSettings) if f.metadata.get("speed")
)


#: Defaults of every sampler option, derived from :class:`SamplerSettings`.
SAMPLER_DEFAULTS: dict[str, Any] = SamplerSettings().as_dict()
