"""Command line: ``python -m xdiffsr.train`` (also under ``torchrun``).

Examples
--------
::

    python -m xdiffsr.train --data era5.zarr --variables temperature@850 geopotential@500 \\
        --train-end 2015-12-31 --val-end 2016-12-31 --steps 200000 --out runs/era5
    torchrun --nproc_per_node 4 -m xdiffsr.train --config run.json --out runs/era5
    python -m xdiffsr.train --config run.json --out runs/era5 --max-steps-this-run 5000

Exit status: 0 on success; 2 for a usage error or invalid input (an unknown option, a bad value,
a missing ``--config`` or ``--data`` path, bad JSON, ``--device cuda`` without CUDA, any
:class:`~xdiffsr.errors.XDiffSRError`); 1 when reading or writing data fails while training (an
``OSError``); 130 when interrupted. Each error is one line on stderr,
``xdiffsr.train: error: ...``; ``--debug`` shows the Python traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence

import torch

from xdiffsr._cli import run_cli
from xdiffsr.errors import ArgumentError

from .augment import SYMMETRIES
from .config import TrainConfig
from .loop import train

PROG = "xdiffsr.train"


def _version() -> str:
    # the package's own __version__ is in the entry layer, which train may not import
    try:
        return importlib.metadata.version("xdiffsr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"

# Options given on the command line override the --config file.
_SIMPLE = {
    "data": str, "train_start": str, "train_end": str, "val_start": str, "val_end": str,
    "val_samples": int, "unet_preset": str, "batch_size": int, "lr": float,
    "weight_decay": float, "warmup_steps": int, "lr_decay": str, "steps": int,
    "ema_halflife_samples": float, "grad_clip": float, "P_mean": float, "P_std": float,
    "sigma_data": float, "val_every": int, "log_every": int, "ckpt_every": int, "seed": int,
    "max_memory_gb": float, "name": str,
}


class _Parser(argparse.ArgumentParser):
    """Errors are one line on stderr, exit status 2, starting with ``label``."""

    label = PROG

    def error(self, message: str):
        self.exit(2, f"{self.label}: error: {message} (see {self.prog} --help)\n")


def _existing(text: str) -> str:
    if "://" not in text and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file or directory: {text!r}")
    return text


def _checked(typ, nonneg: bool = True):
    """``typ`` that also refuses negative numbers (if ``nonneg``) and NaN (the config checks
    the rest)."""
    def parse(text: str):
        try:
            value = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {typ.__name__}") from None
        if typ in (int, float) and not (value >= 0 or (not nonneg and value == value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'>= 0' if nonneg else 'a number'}")
        return value

    parse.__name__ = typ.__name__
    return parse


def _period(text: str) -> list[str]:
    start, sep, end = text.partition("..")
    if not sep or not start or not end:
        raise ArgumentError(f"--train-exclude {text!r}: write a period as START..END, e.g. "
                            "2000-05-11..2000-07-24T18")
    return [start, end]


def _device(text: str) -> str:
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available; use --device cpu")
    return text


def parser(prog: str = "python -m xdiffsr.train", label: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of ``python -m xdiffsr.train`` (also ``xdiffsr train``).

    Parameters
    ----------
    prog : str
        The command shown in usage and help.
    label : str
        The name that starts error lines (``label: error: ...``).
    """
    p = _Parser(prog=prog,
                description="Train an EDM diffusion prior on xarray/zarr data.",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.label = label
    p.add_argument("--version", action="version", version=f"xdiffsr {_version()}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    p.add_argument("--config", type=_existing, help="JSON file of TrainConfig fields")
    p.add_argument("--out", required=True, help="output folder (checkpoints, log, model)")
    p.add_argument("--variables", nargs="+",
                   help="channels: flat names (t850) or name@level_hPa (temperature@850)")
    p.add_argument("--names", nargs="+", help="channel names (one per variable)")
    for name, typ in _SIMPLE.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name,
                       type=_existing if name == "data" else _checked(typ, name != "P_mean"),
                       help=f"TrainConfig.{name} (default: from --config or TrainConfig)")
    p.add_argument("--train-exclude", nargs="+", metavar="START..END",
                   help="inclusive periods left out of the training split, e.g. "
                        "2000-05-11..2000-07-24")
    p.add_argument("--augment", nargs="+", choices=list(SYMMETRIES),
                   help="symmetries of the data's climate applied to the training batches "
                        "(zonally/hemispherically symmetric climates only: docs/training.md)")
    p.add_argument("--unet", help="JSON object of UNetConfig overrides, e.g. "
                                  "'{\"model_channels\": 32}'")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default=None,
                   help="bfloat16 autocast (default: from --config, else auto)")
    p.add_argument("--device", type=_device,
                   help="torch device (default cuda:LOCAL_RANK or cpu)")
    p.add_argument("--max-steps-this-run", type=_checked(int), help="stop after this many steps")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge ``--config`` (if any) with the options given on the command line."""
    base = TrainConfig.from_json(args.config).to_dict() if args.config else {}
    over = {k: getattr(args, k) for k in (*_SIMPLE, "variables", "names", "augment")
            if getattr(args, k) is not None}
    if args.train_exclude is not None:
        over["train_exclude"] = [_period(text) for text in args.train_exclude]
    if args.unet is not None:
        try:
            over["unet"] = json.loads(args.unet)
        except json.JSONDecodeError as err:
            raise ArgumentError(
                f"--unet {args.unet!r} is not valid JSON ({err}); give an object such as "
                '\'{"model_channels": 32}\''
            ) from None
    if args.bf16 is not None:
        over["bf16"] = {"auto": None, "on": True, "off": False}[args.bf16]
    merged = {**base, **over}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict({k: v for k, v in merged.items() if k in known})


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "python -m xdiffsr.train",
    label: str = PROG,
) -> int:
    """Train; returns the exit status (see the module docstring).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).
    prog, label : str
        The command in usage and help, and the name starting error lines: ``xdiffsr train``
        passes ``"xdiffsr train"`` and ``"xdiffsr"``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_cli(lambda args: _main(args, prog, label), argv, label)


def _main(argv: list[str], prog: str, label: str) -> int:
    args = parser(prog, label).parse_args(argv)
    cfg = config_from_args(args)
    path = train(cfg, out_dir=args.out, resume=not args.no_resume, device=args.device,
                 max_steps_this_run=args.max_steps_this_run, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
