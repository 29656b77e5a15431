"""The training loop of EDM priors: single process, or DistributedDataParallel under torchrun.

One optimiser step ``s`` on rank ``r``:

1. the batch is rank ``r``'s share of the global batch ``s`` (:func:`~.data.batch_indices`);
2. the global torch RNG (dropout) and the noise generator are seeded from ``(seed, s, r)``,
   so that the randomness of a step does not depend on how the run was split into stretches;
3. EDM loss (Karras et al. 2022, Eq. 8; optionally cos-latitude weighted, with a log-uniform
   share of mid/high noise levels) under bf16 autocast where the device has native bf16 (GPUs,
   CPUs with avx512_bf16/amx_bf16), backward (DDP averages the gradients over ranks),
   global-norm clipping, AdamW with linear warm-up;
4. EMA of the weights with a half-life in samples and EDM's ramp-up.

Rank 0 writes the log (``log.jsonl``), checkpoints (``ckpt-XXXXXX.safetensors``) and the
final model (EMA weights) as a :class:`xdiffsr.DiffusionModel`.

References
----------
.. [1] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the design space of
   diffusion-based generative models", NeurIPS 2022 (``training/training_loop.py``: EMA
   half-life in images with ramp-up, learning-rate ramp-up).
.. [2] I. Loshchilov, F. Hutter, "Decoupled weight decay regularization", ICLR 2019 (AdamW).
.. [3] A. Chakraborty et al., "Multimodal atmospheric super-resolution with deep generative
   models", 2025.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import xarray as xr
from torch import nn

from xdiffsr.core.precond import EDMLoss, EDMPrecond
from xdiffsr.core.runtime import bf16_supported
from xdiffsr.core.unet import SongUNet
from xdiffsr.errors import ArgumentError, XDiffSRError
from xdiffsr.grid import find_time, grid_of
from xdiffsr.models.diffusion import DiffusionModel
from xdiffsr.models.registry import load_model
from xdiffsr.progress import progress_bar

from . import checkpoint as ck
from .augment import Augmentation
from .config import RESUMABLE_CHANGES, TrainConfig
from .data import (
    ChunkedSource,
    MemorySource,
    batch_stream,
    normalisation_stats,
    open_data,
    select_variables,
    split_by_time,
)
from .finetune import check_base_model, lat_weights, load_base_weights, network_config

__all__ = ["Trainer", "derived_seed", "ema_beta", "learning_rate", "train"]


def derived_seed(*keys: int) -> int:
    """A 63-bit seed that depends only on ``keys`` (numpy ``SeedSequence``)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Learning rate of ``step``: linear warm-up, then constant or cosine decay to ``lr_min``."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_decay == "constant" or step < cfg.warmup_steps:
        return cfg.lr * warm
    frac = min(1.0, (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))


def ema_beta(cfg: TrainConfig, samples_seen: int) -> float:
    """EMA decay per step, ``0.5 ** (batch_size / halflife)`` (Karras et al. 2022).

    The half-life (in samples) is ``min(ema_halflife_samples, ema_rampup_ratio * samples_seen)``
    so that early weights are forgotten quickly.
    """
    half = cfg.ema_halflife_samples
    if cfg.ema_rampup_ratio is not None:
        half = min(half, samples_seen * cfg.ema_rampup_ratio)
    return 0.5 ** (cfg.batch_size / max(half, 1e-8))


class _Dist:
    """Process-group state from the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

    def __init__(self, device: str | torch.device | None) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.owner = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owner = True
        self.active = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def broadcast(self, obj: Any) -> Any:
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owner and dist.is_initialized():
            dist.destroy_process_group()


def json_attrs(attrs: dict) -> dict:
    """The JSON-serialisable entries of a variable's attributes (numpy scalars as Python)."""
    out = {}
    for k, v in attrs.items():
        v = v.item() if isinstance(v, np.generic) else v
        if isinstance(v, str | int | float | bool):
            out[str(k)] = v
    return out


def _describe(ds: xr.Dataset | None) -> dict[str, Any] | None:
    if ds is None:
        return None
    t = ds[find_time(ds)].values
    step = pd.Series(t).diff().median()
    return {"start": str(pd.Timestamp(t[0])), "end": str(pd.Timestamp(t[-1])), "times": len(t),
            "time_step_hours": None if pd.isna(step) else step / pd.Timedelta(hours=1)}


class Trainer:
    """A training run: data, model, EMA, optimiser and their checkpointed state.

    Parameters
    ----------
    config : TrainConfig
        The run's configuration.
    out_dir : path
        Folder of checkpoints, log and final model (created).
    dataset : xarray.Dataset, optional
        Training data; default ``open_data(config.data)``.
    resume : bool, default True
        Continue from the latest checkpoint in ``out_dir`` if there is one.
    device : str or torch.device, optional
        Default ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
    progress : bool
        Progress bar (rank 0).

    Attributes
    ----------
    precond, ema : EDMPrecond
        Trained and EMA denoisers (unwrapped).
    step : int
        Optimiser steps done.
    """

    def __init__(self, config: TrainConfig, *, out_dir: str | Path,
                 dataset: xr.Dataset | None = None, resume: bool = True,
                 device: str | torch.device | None = None, progress: bool = True) -> None:
        if not isinstance(config, TrainConfig):
            raise ArgumentError(f"config must be a TrainConfig, got {type(config).__name__}.")
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.dist = _Dist(device)
        self.device = self.dist.device
        if self.dist.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        ckpt = ck.latest_checkpoint(self.out_dir) if resume else None
        tensors, header = ck.read_checkpoint(ckpt) if ckpt else (None, None)
        if header is not None:
            self._check_resume(TrainConfig.from_dict(header["config"]))
        # Fine-tuning: the base model gives the weights and the normalisation (not on resume:
        # the checkpoint holds both).
        self.base = load_model(config.init_from) if config.init_from and header is None else None
        self._prepare_data(dataset, header)
        self._build_model(header)
        self.step = 0
        if tensors is not None:
            ck.load_into(tensors, header, model=self.precond, ema=self.ema,
                         optimizer=self.optimizer)
            ck.restore_rng(tensors, header)
            self.step = int(header["step"])
        self.base_info = header.get("base_model") if header else self._base_info()
        self.bf16 = self._choose_bf16(config.bf16)
        self.loss_fn = EDMLoss(P_mean=config.P_mean, P_std=config.P_std,
                               sigma_data=config.sigma_data, mix=config.sigma_mix,
                               mix_range=config.sigma_mix_range)
        self._stop = threading.Event()

    # ---------------------------------------------------------------- setup

    def _choose_bf16(self, wanted: bool | None) -> bool:
        ok, why = bf16_supported(self.device)
        if wanted and not ok:
            raise ArgumentError(f"bf16=True, but {why}; pass bf16=None (automatic) or False.")
        if wanted is None and not ok and self.dist.rank == 0:
            print(f"xdiffsr.train: training in fp32: {why}", file=sys.stderr)
        return ok if wanted is None else bool(wanted)

    def _base_info(self) -> dict[str, Any] | None:
        if self.base is None:
            return None
        ref = getattr(self.base, "reference", None)
        training = self.base.metadata.get("training", {})
        return {"init_from": self.config.init_from, "name": self.base.name,
                "sha256": getattr(ref, "sha256", None),
                "samples_seen": training.get("samples_seen"), "steps": training.get("steps")}

    def _check_resume(self, old: TrainConfig) -> None:
        diff = [k for k in self.config.differences(old) if k not in RESUMABLE_CHANGES]
        if diff:
            raise ArgumentError(
                f"the checkpoint in {str(self.out_dir)!r} was written with different settings "
                f"for {diff}; resume with the same values, pass resume=False, or use a new "
                "out_dir.")

    def _prepare_data(self, dataset: xr.Dataset | None, header: dict | None) -> None:
        cfg = self.config
        if dataset is None:
            if cfg.data is None:
                raise ArgumentError("no training data: set config.data to a zarr/netCDF path or "
                                    "pass dataset=.")
            dataset = open_data(cfg.data)
        flat = select_variables(dataset, cfg.variables, cfg.names)
        self.train_ds, self.val_ds = split_by_time(flat, cfg.train_start, cfg.train_end,
                                                   cfg.val_start, cfg.val_end, cfg.train_exclude)
        self.variables = list(map(str, flat.data_vars))
        self.grid = grid_of(flat, argname="data")
        self.augmentation = Augmentation(cfg.augment, self.grid, self.variables)
        if self.base is not None:
            check_base_model(self.base, self.variables, self.grid, self.config.init_from)
            center, scale = self.base.center, self.base.scale
        elif header is not None:
            center, scale = np.asarray(header["center"]), np.asarray(header["scale"])
        else:
            stats = normalisation_stats(self.train_ds) if self.dist.rank == 0 else None
            center, scale = self.dist.broadcast(stats)
        self.center, self.scale = np.asarray(center, float), np.asarray(scale, float)
        self.source = self._make_source()
        self.val_x = self._validation_tensor()
        self.loss_weight = (lat_weights(self.grid).to(self.device)
                            if self.config.area_weighted else None)

    def _make_source(self):
        cfg, ds = self.config, self.train_ds
        nbytes = 4 * int(np.prod([ds.sizes[d] for d in next(iter(ds.data_vars.values())).dims]))
        nbytes *= len(ds.data_vars)
        if nbytes <= cfg.max_memory_gb * 1e9:
            dev = self.device
            if dev.type == "cuda" and nbytes > 0.5 * torch.cuda.mem_get_info(dev)[0]:
                dev = torch.device("cpu")
            return MemorySource(ds, self.center, self.scale, dev)
        return ChunkedSource(ds, self.center, self.scale, window=cfg.window_chunks,
                             max_bytes=cfg.max_memory_gb * 1e9)

    def _validation_tensor(self) -> torch.Tensor | None:
        if self.val_ds is None:
            return None
        tname = find_time(self.val_ds)
        n = self.val_ds.sizes[tname]
        idx = np.unique(np.linspace(0, n - 1, min(n, self.config.val_samples)).round().astype(int))
        src = MemorySource(self.val_ds.isel({tname: idx}), self.center, self.scale, self.device)
        return src.data

    def _build_model(self, header: dict | None) -> None:
        cfg = self.config
        self.unet_config = network_config(cfg, header, self.base, self.variables, self.grid)
        if cfg.batch_size % self.dist.world:
            raise ArgumentError(f"batch_size={cfg.batch_size} must be divisible by the number of "
                                f"processes ({self.dist.world}).")
        torch.manual_seed(cfg.seed)
        net = SongUNet.from_config(self.unet_config, checkpoint=cfg.checkpoint_activations)
        self.precond = EDMPrecond(net, sigma_data=cfg.sigma_data, sigma_min=cfg.sigma_min,
                                  sigma_max=cfg.sigma_max).to(self.device).train()
        if self.base is not None:  # the released (EMA) weights start both copies
            load_base_weights(self.precond, self.base)
        self.ema = copy.deepcopy(self.precond).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.precond.parameters(), lr=cfg.lr,
                                           betas=cfg.adam_betas, eps=cfg.adam_eps,
                                           weight_decay=cfg.weight_decay)
        self.ddp: nn.Module = self.precond
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.precond, device_ids=ids)
        if cfg.compile:
            self.ddp = torch.compile(self.ddp)

    # ---------------------------------------------------------------- steps

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _train_step(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        cfg, step, rank = self.config, self.step, self.dist.rank
        torch.manual_seed(derived_seed(cfg.seed, step, rank, 0))
        gen.manual_seed(derived_seed(cfg.seed, step, rank, 1))
        for g in self.optimizer.param_groups:
            g["lr"] = learning_rate(cfg, step)
        self.optimizer.zero_grad(set_to_none=True)
        if self.augmentation:  # its own stream: runs without augmentation keep their noise
            gen.manual_seed(derived_seed(cfg.seed, step, rank, 3))
            x = self.augmentation(x, gen)
            gen.manual_seed(derived_seed(cfg.seed, step, rank, 1))
        with self._autocast():
            loss = self._weighted(self.loss_fn(self.ddp, x, generator=gen)).mean()
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.precond.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        self._update_ema()
        return loss.detach()

    def _weighted(self, loss: torch.Tensor) -> torch.Tensor:
        """The per-element loss (B, C, H, W) times the cos-latitude weights, if asked for."""
        return loss if self.loss_weight is None else loss * self.loss_weight

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = ema_beta(self.config, self.step * self.config.batch_size)
        for p_ema, p in zip(self.ema.parameters(), self.precond.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.ema.buffers(), self.precond.buffers(), strict=True):
            b_ema.copy_(b)

    @torch.no_grad()
    def validation_loss(self, model: nn.Module | None = None) -> float | None:
        """Mean EDM loss of ``model`` (default the EMA) on the fixed validation subset.

        The noise of validation batch ``i`` is seeded by ``(seed, i)``, so values at different
        steps are comparable. None without a validation split.
        """
        if self.val_x is None:
            return None
        model = self.ema if model is None else model
        was_training = model.training
        model.eval()
        gen = torch.Generator(self.device)
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        bs = max(1, self.config.batch_size // self.dist.world)
        local = torch.arange(self.val_x.shape[0], device=self.device)
        local = local[self.dist.rank::self.dist.world]
        for i in range(0, local.numel(), bs):
            gen.manual_seed(derived_seed(self.config.seed, i // bs, self.dist.rank, 2))
            with self._autocast():
                loss = self._weighted(self.loss_fn(model, self.val_x[local[i:i + bs]],
                                                   generator=gen))
            total += torch.stack([loss.mean(dim=(1, 2, 3)).sum().double(),
                                  torch.tensor(loss.shape[0], device=self.device)])
        model.train(was_training)
        total = self.dist.all_sum(total)
        return float(total[0] / total[1])

    # ---------------------------------------------------------------- output

    def _header(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(), "step": self.step,
            "samples_seen": self.step * self.config.batch_size,
            "variables": self.variables, "center": self.center.tolist(),
            "scale": self.scale.tolist(), "world_size": self.dist.world,
            "unet_config": self.unet_config.to_dict(), "base_model": self.base_info,
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``ckpt-<step>.safetensors`` (rank 0) and prune old ones."""
        path = None
        if self.dist.rank == 0:
            path = ck.write_checkpoint(ck.checkpoint_path(self.out_dir, self.step),
                                       model=self.precond, ema=self.ema,
                                       optimizer=self.optimizer, header=self._header())
            for _, old in ck.list_checkpoints(self.out_dir)[:-self.config.keep_checkpoints]:
                old.unlink(missing_ok=True)
        self.dist.barrier()
        return path

    def model(self) -> DiffusionModel:
        """The EMA denoiser as a :class:`DiffusionModel` with the run's metadata."""
        cfg = self.config
        units = {v: str(self.train_ds[v].attrs.get("units", "")) for v in self.variables}
        attrs = {v: json_attrs(self.train_ds[v].attrs) for v in self.variables}
        meta = {
            "training": {
                "steps": self.step, "complete": self.step >= cfg.steps,
                "samples_seen": self.step * cfg.batch_size, "world_size": self.dist.world,
                "config": cfg.to_dict(), "precision": "bf16" if self.bf16 else "fp32",
                "fine_tuned_from": self.base_info,
            },
            "data": {"source": cfg.data or "xarray.Dataset passed to train()",
                     "selectors": list(cfg.variables),
                     "train": _describe(self.train_ds), "validation": _describe(self.val_ds)},
            "normalisation": {
                "method": "per-variable mean and standard deviation over (time, lat, lon) of "
                          "the training split; x = (state - center) / scale",
                "center": self.center.tolist(), "scale": self.scale.tolist()},
        }
        if cfg.train_exclude:
            meta["data"]["train"]["excluded"] = [list(p) for p in cfg.train_exclude]
        if cfg.augment:
            meta["data"]["augment"] = list(cfg.augment)
        precond = copy.deepcopy(self.ema).cpu().eval()
        return DiffusionModel(precond, self.variables, units, self.grid, self.center,
                              self.scale, attrs=attrs, name=cfg.name, metadata=meta)

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.rank == 0:
            with open(self.out_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    # ---------------------------------------------------------------- run

    def batches(self) -> Iterator[torch.Tensor]:
        """This rank's batches from the current step on."""
        return batch_stream(self.source, self.step, self.config.batch_size, self.config.seed,
                            rank=self.dist.rank, world=self.dist.world, device=self.device,
                            prefetch=self.config.prefetch)

    def run(self, max_steps: int | None = None) -> Path:
        """Train until ``config.steps`` (or ``max_steps`` more steps); return the model path.

        A checkpoint is written every ``ckpt_every`` steps, every ``ckpt_minutes`` of wall time
        and when the run stops; the model file (EMA weights, :meth:`DiffusionModel.save`) is
        rewritten at every stop. SIGTERM or SIGINT (in the main thread) stops the run after the
        step in progress, with a checkpoint and the model file, so a run can be stopped at any
        minute and resumed later with the same call.
        """
        with self._stop_on_signals():
            return self._run(max_steps)

    @contextlib.contextmanager
    def _stop_on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._stop.clear()
        old = {sig: signal.signal(sig, lambda *_: self._stop.set())
               for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _stop_or_checkpoint(self, last_t: float) -> tuple[bool, bool]:
        """(stop now, checkpoint now by the clock), agreed by every rank."""
        cfg = self.config
        due = cfg.ckpt_minutes is not None and time.monotonic() - last_t >= 60 * cfg.ckpt_minutes
        flags = (self._stop.is_set(), due)
        if self.dist.active:  # rank 0 decides, at log steps only (one broadcast per log period)
            flags = self.dist.broadcast(flags) if self.step % cfg.log_every == 0 else (False, False)
        return flags

    def _run(self, max_steps: int | None) -> Path:
        cfg = self.config
        if self.dist.rank == 0:
            cfg.to_json(self.out_dir / "config.json")
        end = cfg.steps if max_steps is None else min(cfg.steps, self.step + int(max_steps))
        gen = torch.Generator(self.device)
        stream = self.batches() if self.step < end else iter(())
        bar = _progress(self.progress and self.dist.rank == 0, self.step, cfg.steps)
        acc = torch.zeros((), device=self.device)
        n_acc, t0, ckpt_step, last_t = 0, time.perf_counter(), None, time.monotonic()
        if self.step == 0 and self.val_x is not None and end > 0:
            self._log({"step": 0, "val_loss": self.validation_loss(self.precond),
                       "val_loss_ema": self.validation_loss(self.ema)})
        with contextlib.closing(bar) if bar else contextlib.nullcontext():
            while self.step < end:
                acc += self._train_step(next(stream), gen)
                n_acc += 1
                if self.step % cfg.log_every == 0 or self.step % cfg.val_every == 0 \
                        or self.step == end:
                    rec = self._report(acc, n_acc, t0)
                    acc.zero_()
                    n_acc, t0 = 0, time.perf_counter()
                    if bar:
                        bar.set_postfix(loss=f"{rec['loss']:.4g}")
                stop, due = self._stop_or_checkpoint(last_t)
                if self.step % cfg.ckpt_every == 0 or due:
                    self.save_checkpoint()
                    ckpt_step, last_t = self.step, time.monotonic()
                if bar:
                    bar.update(1)
                if stop:
                    self._log({"step": self.step, "stopped": "signal"})
                    break
        if hasattr(stream, "close"):
            stream.close()
        if ckpt_step != self.step:  # same decision on every rank
            self.save_checkpoint()
        path = self.out_dir / f"{cfg.name}.safetensors"
        if self.dist.rank == 0:
            self.model().save(path)
        self.dist.barrier()
        return path

    def _report(self, acc: torch.Tensor, n: int, t0: float) -> dict[str, Any]:
        cfg = self.config
        loss = float(self.dist.all_sum(acc.clone().reshape(1))[0]) / (n * self.dist.world)
        if not math.isfinite(loss):
            raise XDiffSRError(f"training diverged at step {self.step} (loss {loss}); lower lr "
                               f"(now {cfg.lr}) or set grad_clip.")
        dt = time.perf_counter() - t0
        rec = {"step": self.step, "loss": loss, "lr": learning_rate(cfg, self.step - 1),
               "samples_per_s": n * cfg.batch_size / max(dt, 1e-9)}
        if self.step % cfg.val_every == 0 or self.step == cfg.steps:
            rec["val_loss"] = self.validation_loss(self.precond)
            rec["val_loss_ema"] = self.validation_loss(self.ema)
        self._log(rec)
        return rec


def _progress(enabled: bool, initial: int, total: int):
    if not enabled:
        return None
    return progress_bar(total=total, initial=initial, desc="train", unit="step")


def train(config: TrainConfig, *, out_dir: str | Path, dataset: xr.Dataset | None = None,
          resume: bool = True, device: str | torch.device | None = None,
          max_steps_this_run: int | None = None, progress: bool = True) -> Path:
    """Train an EDM prior and write it as a safetensors model loadable by ``xdiffsr.load_model``.

    Parameters
    ----------
    config : TrainConfig
        Data, architecture and optimisation settings.
    out_dir : path
        Output folder: ``ckpt-XXXXXX.safetensors`` checkpoints, ``log.jsonl``, ``config.json``
        and ``<config.name>.safetensors`` (the EMA model).
    dataset : xarray.Dataset, optional
        Training data in place of ``config.data`` (any layout :func:`select_variables` reads).
    resume : bool, default True
        Continue from the latest checkpoint in ``out_dir``: weights, EMA, optimiser, step and
        RNG are restored, and the continued run equals an uninterrupted one step for step.
    device : str or torch.device, optional
        Default ``cuda:LOCAL_RANK`` if CUDA is available, else CPU.
    max_steps_this_run : int, optional
        Stop (with a checkpoint) after this many steps, to train in short stretches.
    progress : bool, default True
        Progress bar on rank 0.

    Returns
    -------
    pathlib.Path
        Path of the model file (EMA weights at the last step done).

    Notes
    -----
    Under ``torchrun --nproc_per_node N`` every process runs this function; the process group
    is initialised from the environment (NCCL on CUDA, gloo on CPU), each rank takes every
    N-th sample of the global batch, and rank 0 writes the files.
    """
    trainer = Trainer(config, out_dir=out_dir, dataset=dataset, resume=resume, device=device,
                      progress=progress)
    try:
        return trainer.run(max_steps_this_run)
    finally:
        trainer.dist.close()
