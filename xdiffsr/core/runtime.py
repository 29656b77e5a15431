"""Speed options of the network inside a denoiser: bf16 autocast, channels-last, torch.compile
and activation checkpointing, applied without touching the (shared, cached) model.

:func:`with_network_options` returns a new :class:`~xdiffsr.core.precond.EDMPrecond` whose
network is a :class:`NetworkRunner` around the same network (same parameters, no copy): the
preconditioning arithmetic, its fp32 output and everything around it (likelihoods, conjugate
gradients, sampler state) are unchanged; only the call of the network changes. Pure torch (no
xarray).

References
----------
.. [1] PyTorch automatic mixed precision, ``torch.autocast``.
.. [2] ``torch.compile`` and ``torch.utils.checkpoint`` (non-reentrant).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentError, XDiffSRWarning
from .precond import EDMPrecond

__all__ = ["AUTO", "COMPILE_MODES", "PRECISIONS", "NetworkRunner", "bf16_supported",
           "check_network_options", "check_precision", "resolve_channels_last",
           "resolve_precision", "with_network_options"]

PRECISIONS = ("fp32", "bf16")
#: The automatic precision: bf16 where the device runs it natively, else fp32
#: (:func:`resolve_precision`).
AUTO = "auto"
_FALLBACK_SAID: set[str] = set()  # device types whose fp32 fallback was said (once per process)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

_COMPILED: dict[str, Any] = {}  # mode -> compiled _run (one per process); None: it failed


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_supported(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` runs bf16 matrix products natively, and why (one line).

    CUDA: compute capability 8.0 or newer (``torch.cuda.is_bf16_supported``). CPU: the
    ``avx512_bf16`` or ``amx_bf16`` instructions (x86, read from ``/proc/cpuinfo``); elsewhere
    bf16 is emulated and slower than fp32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, "CUDA bf16" if ok else "this GPU has no native bf16"
    found = sorted({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    if found:
        return True, f"CPU with {' and '.join(found)}"
    return False, "this CPU has neither avx512_bf16 nor amx_bf16 (bf16 would be emulated)"


def check_precision(precision: str, device: torch.device | str) -> None:
    """Refuse ``precision='bf16'`` on a device without native bf16 (emulated bf16 is slower
    than fp32: never silently slower).

    Raises
    ------
    ArgumentError
        Naming the device and the missing capability.
    """
    if precision != "bf16":
        return
    ok, why = bf16_supported(device)
    if not ok:
        raise ArgumentError(
            f"precision='bf16' on {torch.device(device)}, but {why}; pass precision='fp32'."
        )


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision the network runs in on ``device``: ``'auto'`` is ``'bf16'`` where the
    device runs bf16 natively (:func:`bf16_supported`), else ``'fp32'``, said in one logged
    line per process and device type; ``'fp32'`` and ``'bf16'`` are returned as given.

    bf16 is the automatic choice because it was measured faster at equal quality for the
    sampler (``benchmarks/RESULTS.md``, issue 28: 0.71x the CPU time of fp32, RMSE and CRPS
    within 0.3 % on every variable).
    """
    if precision != AUTO:
        return precision
    ok, why = bf16_supported(device)
    if ok:
        return "bf16"
    kind = torch.device(device).type
    if kind not in _FALLBACK_SAID:
        _FALLBACK_SAID.add(kind)
        logging.getLogger("xdiffsr").warning("xdiffsr: precision='auto' runs the network in "
                                             "fp32 on %s: %s", kind, why)
    return "fp32"


def resolve_channels_last(channels_last: bool | str, device: torch.device | str) -> bool:
    """Whether the network runs channels-last on ``device``: ``'auto'`` is True on the CPU
    (measured faster there: 0.70x the time in fp32, 0.91x in bf16, same members to float
    rounding; ``benchmarks/RESULTS.md``, issue 28) and False elsewhere (not measured on GPUs);
    True and False are returned as given."""
    if channels_last != AUTO:
        return channels_last
    return torch.device(device).type == "cpu"


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"{name}={value!r} must be True or False.")
    return value


def check_network_options(
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool | str = False,
    checkpoint: bool = False,
) -> dict[str, Any]:
    """Validate the network options; returns them normalised (``compile``: False or a mode).
    ``precision`` and ``channels_last`` may be ``AUTO`` ("auto"), resolved for the network's
    device by :func:`with_network_options` (:func:`resolve_precision`,
    :func:`resolve_channels_last`).

    Raises
    ------
    ArgumentError
        A precision other than ``PRECISIONS`` or "auto", a compile mode other than
        ``COMPILE_MODES``, or a flag that is not a bool (or "auto" for ``channels_last``).
    """
    if precision not in (*PRECISIONS, AUTO):
        raise ArgumentError(f"precision={precision!r}; choose one of {(*PRECISIONS, AUTO)}.")
    if isinstance(compile, bool):
        mode: bool | str = "default" if compile else False
    elif isinstance(compile, str) and compile in COMPILE_MODES:
        mode = compile
    else:
        raise ArgumentError(
            f"compile={compile!r}; give True, False or a torch.compile mode {COMPILE_MODES}."
        )
    return dict(
        precision=precision,
        channels_last=AUTO if channels_last == AUTO else _check_flag(channels_last,
                                                                     "channels_last"),
        compile=mode,
        checkpoint=_check_flag(checkpoint, "checkpoint"),
    )


def _run(net: nn.Module, x: torch.Tensor, noise_labels: torch.Tensor, precision: str,
         channels_last: bool, checkpoint: bool) -> torch.Tensor:
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    kw = {"checkpoint": True} if checkpoint else {}
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return net(x, noise_labels, **kw)


def _compiled(mode: str):
    """``torch.compile(_run)`` for ``mode``, built once per process: the network is an
    argument (not captured), so nothing is attached to the shared model and dynamo's cache
    serves every network of the same architecture."""
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(_run, mode=None if mode == "default" else mode)
    return _COMPILED[mode]


class NetworkRunner(nn.Module):
    """Calls a network ``F(x, c_noise)`` under speed options (the weights are shared).

    Parameters
    ----------
    net : torch.nn.Module
        The network, e.g. :class:`~xdiffsr.core.unet.SongUNet`.
    precision : {'fp32', 'bf16'}
        'bf16': the network runs under ``torch.autocast(x.device.type, torch.bfloat16)``
        (matrix products and convolutions in bf16); its output is bf16 and the preconditioning
        casts it back to fp32.
    channels_last : bool
        Pass the input in channels-last memory format (NHWC): convolutions then run in that
        layout. The weights are not converted (the shared model stays as it is).
    compile : False or str
        A :func:`torch.compile` mode: the network is compiled once per process and mode.
    checkpoint : bool
        Activation checkpointing of every block while gradients are enabled (the guided
        backward): less memory, one more forward per backward. Needs a network whose forward
        takes ``checkpoint=`` (SongUNet).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool | str = False,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        opts = check_network_options(
            precision=precision, channels_last=channels_last, compile=compile,
            checkpoint=checkpoint,
        )
        if opts["checkpoint"] and not hasattr(net, "checkpoint"):
            raise ArgumentError(
                f"checkpoint=True needs a network with activation checkpointing (SongUNet), got "
                f"{type(net).__name__}; pass checkpoint=False."
            )
        self.net = net
        self.precision = opts["precision"]
        self.channels_last = opts["channels_last"]
        self.compile = opts["compile"]
        self.checkpoint = opts["checkpoint"]

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        """``F(x, c_noise)`` of shape (B, C, H, W), bf16 under ``precision='bf16'``.

        A compilation that fails falls back to the eager network, with one warning naming the
        cause (per process and mode: later calls run eagerly without trying again).
        """
        args = (self.net, x, noise_labels, self.precision, self.channels_last, self.checkpoint)
        if not self.compile or _COMPILED.get(self.compile, True) is None:
            return _run(*args)
        try:
            return _compiled(self.compile)(*args)
        except Exception as err:  # inductor needs a C++ compiler, dynamo may not trace, ...
            _COMPILED[self.compile] = None
            cause = (str(err).strip().splitlines() or [""])[0]
            warnings.warn(
                f"compile={self.compile!r}: torch.compile failed ({type(err).__name__}: "
                f"{cause}); running the network eagerly (pass compile=False to silence this).",
                XDiffSRWarning, stacklevel=2,
            )
            return _run(*args)

    def extra_repr(self) -> str:
        return (f"precision={self.precision!r}, channels_last={self.channels_last}, "
                f"compile={self.compile!r}, checkpoint={self.checkpoint}")


def with_network_options(denoiser: nn.Module, **options: Any) -> nn.Module:
    """``denoiser`` with its network run under ``options`` (see :class:`NetworkRunner`).

    An :class:`EDMPrecond` gives a new ``EDMPrecond`` around a :class:`NetworkRunner` of the same
    network (nothing is copied or mutated); with the default options, or for a denoiser without
    a network (e.g. :class:`~xdiffsr.core.gaussian.GaussianDenoiser`, exact in fp32), the
    denoiser itself is returned.

    Parameters
    ----------
    denoiser : torch.nn.Module
        ``D(x, sigma)``.
    **options
        ``precision``, ``channels_last``, ``compile``, ``checkpoint`` (validated by
        :func:`check_network_options`; "auto" resolved for the device of the denoiser's
        parameters, and an explicit bf16 refused where that device lacks it,
        :func:`check_precision`).

    Returns
    -------
    torch.nn.Module
        A denoiser with the same signature and fp32 output.
    """
    opts = check_network_options(**options)
    if not isinstance(denoiser, EDMPrecond):
        return denoiser
    param = next(denoiser.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    opts["precision"] = resolve_precision(opts["precision"], device)
    check_precision(opts["precision"], device)  # never emulated bf16
    opts["channels_last"] = resolve_channels_last(opts["channels_last"], device)
    if opts == check_network_options():
        return denoiser
    runner = NetworkRunner(denoiser.net, **opts)
    return EDMPrecond(
        runner,
        sigma_data=denoiser.sigma_data,
        sigma_min=denoiser.sigma_min,
        sigma_max=denoiser.sigma_max,
    )
