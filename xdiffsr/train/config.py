"""Frozen, JSON-serialisable configuration of a training run (:class:`TrainConfig`)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from xdiffsr.core.unet import UNetConfig
from xdiffsr.errors import ArgumentError
from xdiffsr.train.augment import check_augment

__all__ = ["RESUMABLE_CHANGES", "TrainConfig"]

# Fields that may differ between a checkpoint and the config that resumes it: they change how
# long the run goes and what it reports, not what a given step computes.
RESUMABLE_CHANGES = frozenset({
    "steps", "val_every", "log_every", "ckpt_every", "ckpt_minutes", "keep_checkpoints",
    "max_memory_gb", "prefetch", "data", "name", "threads", "compile",
})

_PRESETS = ("paper", "tiny")
_DECAYS = ("constant", "cosine")


def _positive_int(value: Any, name: str, *, zero: bool = False) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) \
        and (value >= 0 if zero else value > 0)
    if not ok:
        raise ArgumentError(f"{name} must be a {'non-negative' if zero else 'positive'} integer, "
                            f"got {value!r}.")
    return int(value)


def _number(value: Any, name: str, *, positive: bool = False,
            optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or (positive and value <= 0):
        raise ArgumentError(f"{name} must be a {'positive ' if positive else ''}finite number"
                            f"{' or None' if optional else ''}, got {value!r}.")
    return float(value)


def _periods(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """``value`` as a tuple of (start, end) ISO-date pairs with start <= end, or ArgumentError."""
    how = f"{name} must be a list of (start, end) date pairs such as [('2000-05-11', " \
          f"'2000-07-19')], got {value!r}"
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ArgumentError(how + ".")
    out = []
    for pair in value:
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ArgumentError(how + ".")
        try:
            start, end = (pd.Timestamp(str(v)) for v in pair)
        except ValueError as err:
            raise ArgumentError(f"{how}: {err}.") from err
        if start > end:
            raise ArgumentError(f"{name}: the period {tuple(pair)!r} ends before it starts.")
        out.append((str(pair[0]), str(pair[1])))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run of an EDM prior (frozen, JSON round-trip).

    Parameters
    ----------
    data : str, optional
        Path or URL of the training data: a zarr store (``*.zarr``, directory or ``gs://``), a
        netCDF file, or a glob of netCDF files. Optional when :func:`xdiffsr.train.train` gets
        a Dataset.
    variables : sequence of str or mapping
        Channels. Each entry is a flat variable of the dataset (``"t850"``) or
        ``"name@level"`` selecting a pressure level in hPa of a variable with a level dimension
        (``"temperature@850"`` gives channel ``t850``; see
        :func:`xdiffsr.train.data.channel_name`). A mapping ``{channel: selector}`` names the
        channels explicitly.
    names : sequence of str, optional
        Channel names (same length as ``variables``); filled in from a mapping.
    train_start, train_end : str, optional
        Inclusive time bounds of the training split (ISO dates); default the whole record.
    train_exclude : sequence of (str, str), optional
        Inclusive periods left out of the training split: e.g. the validation and evaluation
        periods of a record whose training data lie on both sides of them.
    val_start, val_end : str, optional
        Inclusive bounds of the validation split; default the times after ``train_end``.
    val_samples : int, default 64
        Size of the fixed validation subset (evenly spaced times of the validation split).
    unet_preset : {"paper", "tiny"}
        Base architecture (:meth:`UNetConfig.paper` or :meth:`UNetConfig.tiny`).
    unet : mapping
        :class:`UNetConfig` fields overriding the preset; ``in_channels``, ``out_channels`` and
        ``img_resolution`` come from the data.
    batch_size : int, default 32
        Global batch size (split evenly over the ranks; must be divisible by the world size).
    lr, weight_decay, adam_betas, adam_eps
        AdamW hyperparameters (``weight_decay=0`` is Adam, as in EDM).
    warmup_steps : int, default 1000
        Linear learning-rate warm-up ``lr * min(1, (step + 1) / warmup_steps)``.
    lr_decay : {"constant", "cosine"}, default "constant"
        Schedule after warm-up; "cosine" decays to ``lr_min`` at ``steps``.
    steps : int
        Total number of optimiser steps.
    ema_halflife_samples : float, default 500000
        Half-life of the EMA of the weights **in training samples** (EDM's ``ema_kimg * 1000``);
        per step ``beta = 0.5 ** (batch_size / halflife)``.
    ema_rampup_ratio : float or None, default 0.05
        EDM ramp-up: the half-life is at most ``ratio * samples seen so far``.
    grad_clip : float or None, default 1.0
        Maximum global L2 norm of the gradients.
    P_mean, P_std, sigma_data, sigma_min, sigma_max
        EDM loss and preconditioning (Karras et al. 2022, Table 1). Every variable is
        standardised to unit variance, so ``sigma_data = 1``.
    sigma_mix : float, default 0
        Fraction of the training samples whose noise level is log-uniform in
        ``sigma_mix_range`` instead of log-normal (:class:`~xdiffsr.core.precond.EDMLoss`):
        more training at the mid and high noise levels where a denoiser leaks noise.
    sigma_mix_range : (float, float), default (0.3, 10)
        Range of the log-uniform noise levels.
    augment : sequence of str, default ()
        Symmetries of the data's climate applied to each training batch: ``"lon_roll"``
        (random zonal shifts; zonally symmetric climates) and ``"lat_mirror"`` (reflection
        across the equator, northward wind sign-flipped; climates symmetric between the
        hemispheres). Neither holds for the real atmosphere: see
        :mod:`xdiffsr.train.augment`.
    area_weighted : bool, default False
        Weight the loss by the cosine of latitude (normalised to mean 1 over the rows), so the
        many small polar cells of a regular grid do not dominate it.
    init_from : str, optional
        Fine-tune: start from the weights of this model file or registered name (a
        :class:`~xdiffsr.DiffusionModel`), keeping its normalisation. Its grid, variables and
        network must match the run's; only ``unet`` fields ``lat_padding`` and
        ``vector_channels`` may differ (the network is the same; its padding changes), and
        ``lat_embedding`` may be added (a new parameter that starts at zero).
    val_every, log_every, ckpt_every : int
        Periods in steps of the validation loss, the log line and the checkpoint.
    keep_checkpoints : int, default 2
        Number of most recent checkpoints kept in the output folder.
    seed : int
        Seed of the initial weights, of the data order and of the noise.
    bf16 : bool or None
        bf16 autocast of the network; None: on where the device has native bf16 (CUDA, CPUs
        with avx512_bf16 or amx_bf16), off elsewhere with one line saying why. True on a
        device without it raises.
    threads : int, optional
        CPU threads of torch's intra-op pool (``torch.set_num_threads``); default unchanged.
    compile : bool, default False
        ``torch.compile`` the network for training.
    ckpt_minutes : float, optional
        Also write a checkpoint every this many minutes of wall time (a run on a shared
        machine that may be stopped at any minute loses at most that much).
    checkpoint_activations : bool
        Activation checkpointing in the U-Net (less memory, ~30 % slower).
    max_memory_gb : float, default 16
        The training split is held in (device) memory when its float32 size is below this;
        otherwise it is streamed chunk by chunk from the store.
    window_chunks : int, optional
        Streaming: number of time chunks shuffled together (default from ``max_memory_gb``).
    prefetch : int, default 4
        Streaming: batches read ahead by the loader thread.
    name : str
        Name of the model written at the end.
    """

    data: str | None = None
    variables: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None
    train_start: str | None = None
    train_end: str | None = None
    train_exclude: tuple[tuple[str, str], ...] = ()
    val_start: str | None = None
    val_end: str | None = None
    val_samples: int = 64
    unet_preset: str = "paper"
    unet: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int = 1000
    lr_decay: str = "constant"
    lr_min: float = 0.0
    steps: int = 100_000
    ema_halflife_samples: float = 500_000.0
    ema_rampup_ratio: float | None = 0.05
    grad_clip: float | None = 1.0
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_mix: float = 0.0
    sigma_mix_range: tuple[float, float] = (0.3, 10.0)
    area_weighted: bool = False
    augment: tuple[str, ...] = ()
    init_from: str | None = None
    val_every: int = 1000
    log_every: int = 100
    ckpt_every: int = 5000
    keep_checkpoints: int = 2
    seed: int = 0
    bf16: bool | None = None
    threads: int | None = None
    compile: bool = False
    ckpt_minutes: float | None = None
    checkpoint_activations: bool = False
    max_memory_gb: float = 16.0
    window_chunks: int | None = None
    prefetch: int = 4
    name: str = "model"

    def __post_init__(self) -> None:
        self._check_variables()
        for f in ("val_samples", "batch_size", "steps", "val_every", "log_every", "ckpt_every",
                  "keep_checkpoints", "prefetch"):
            _positive_int(getattr(self, f), f)
        _positive_int(self.warmup_steps, "warmup_steps", zero=True)
        if self.window_chunks is not None:
            _positive_int(self.window_chunks, "window_chunks")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ArgumentError(f"seed must be a non-negative integer, got {self.seed!r}.")
        for f in ("lr", "adam_eps", "ema_halflife_samples", "P_std", "sigma_data", "sigma_min",
                  "sigma_max", "max_memory_gb"):
            object.__setattr__(self, f, _number(getattr(self, f), f, positive=True))
        for f in ("weight_decay", "lr_min", "P_mean"):
            object.__setattr__(self, f, _number(getattr(self, f), f))
        for f in ("grad_clip", "ema_rampup_ratio", "ckpt_minutes"):
            object.__setattr__(self, f, _number(getattr(self, f), f, positive=True, optional=True))
        betas = tuple(float(b) for b in self.adam_betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ArgumentError(
                f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}.")
        object.__setattr__(self, "adam_betas", betas)
        if self.sigma_min >= self.sigma_max:
            raise ArgumentError(
                f"sigma_min={self.sigma_min} must be below sigma_max={self.sigma_max}.")
        if self.unet_preset not in _PRESETS:
            raise ArgumentError(f"unet_preset must be one of {_PRESETS}, got {self.unet_preset!r}.")
        if self.lr_decay not in _DECAYS:
            raise ArgumentError(f"lr_decay must be one of {_DECAYS}, got {self.lr_decay!r}.")
        self._check_finetuning()
        object.__setattr__(self, "augment", check_augment(self.augment))
        object.__setattr__(self, "train_exclude", _periods(self.train_exclude, "train_exclude"))
        if self.bf16 not in (None, True, False):
            raise ArgumentError(f"bf16 must be True, False or None (auto), got {self.bf16!r}.")
        if not isinstance(self.unet, Mapping):
            raise ArgumentError(f"unet must be a mapping of UNetConfig fields, got {self.unet!r}.")
        known = {f.name for f in dataclasses.fields(UNetConfig)}
        bad = sorted(set(self.unet) - known)
        if bad:
            raise ArgumentError(
                f"unet has unknown UNetConfig fields {bad}; valid: {sorted(known)}.")
        object.__setattr__(self, "unet", {k: list(v) if isinstance(v, tuple) else v
                                          for k, v in self.unet.items()})

    def _check_finetuning(self) -> None:
        if self.threads is not None:
            _positive_int(self.threads, "threads")
        for f in ("compile", "area_weighted"):
            if not isinstance(getattr(self, f), bool):
                raise ArgumentError(f"{f} must be True or False, got {getattr(self, f)!r}.")
        mix = _number(self.sigma_mix, "sigma_mix")
        if not 0.0 <= mix <= 1.0:
            raise ArgumentError(f"sigma_mix must be a fraction in [0, 1], got {self.sigma_mix!r}.")
        object.__setattr__(self, "sigma_mix", mix)
        rng = tuple(_number(v, "sigma_mix_range", positive=True) for v in self.sigma_mix_range)
        if len(rng) != 2 or rng[0] >= rng[1]:
            raise ArgumentError(f"sigma_mix_range must be (low, high) with 0 < low < high, got "
                                f"{self.sigma_mix_range!r}.")
        object.__setattr__(self, "sigma_mix_range", rng)
        if self.init_from is not None and (not isinstance(self.init_from, str)
                                           or not self.init_from):
            raise ArgumentError(f"init_from must be a model file path or registered name, got "
                                f"{self.init_from!r}.")

    def _check_variables(self) -> None:
        variables, names = self.variables, self.names
        if isinstance(variables, Mapping):
            if names is not None:
                raise ArgumentError("give either a variables mapping or names, not both.")
            names, variables = tuple(variables), tuple(variables.values())
        if isinstance(variables, str) or not isinstance(variables, Sequence) or not variables \
                or not all(isinstance(v, str) and v for v in variables):
            raise ArgumentError(f"variables must be a non-empty list of names such as ['t850', "
                                f"'temperature@500'], got {variables!r}.")
        object.__setattr__(self, "variables", tuple(variables))
        if names is not None:
            names = tuple(str(n) for n in names)
            if len(names) != len(variables):
                raise ArgumentError(f"names {names} need one entry per variable {variables}.")
            if len(set(names)) != len(names):
                raise ArgumentError(f"names {names} contain duplicates.")
        object.__setattr__(self, "names", names)

    def unet_config(self, in_channels: int, img_resolution: tuple[int, int]) -> UNetConfig:
        """The :class:`UNetConfig` for data with ``in_channels`` channels on an (H, W) grid."""
        base = getattr(UNetConfig, self.unet_preset)(in_channels=in_channels,
                                                     img_resolution=img_resolution).to_dict()
        fixed = {"in_channels": in_channels, "out_channels": in_channels,
                 "img_resolution": list(img_resolution)}
        for k, v in fixed.items():
            if k in self.unet and self.unet[k] != v:
                raise ArgumentError(f"unet[{k!r}]={self.unet[k]!r} contradicts the data ({v!r}); "
                                    "leave it out, it is taken from the data.")
        return UNetConfig.from_dict({**base, **self.unet, **fixed})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict accepted by :meth:`from_dict` (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict` output or a JSON file's content."""
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise ArgumentError(f"unknown TrainConfig keys {bad}; valid keys: {sorted(known)}.")
        kw = dict(data)
        for k in ("variables", "names", "adam_betas", "sigma_mix_range", "augment"):
            if isinstance(kw.get(k), list):
                kw[k] = tuple(kw[k])
        if isinstance(kw.get("train_exclude"), list):
            kw["train_exclude"] = tuple(tuple(p) for p in kw["train_exclude"])
        return cls(**kw)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        """Read a config written by :meth:`to_json` (or by hand)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise ArgumentError(f"cannot read training config {str(path)!r}: {err}") from err

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of the fields whose values differ from ``other``."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if a[k] != b[k])
