"""The command line's sampler options, generated from :class:`SamplerSettings`: names
(``--cg-iters`` for ``cg_iters``), types (the field's annotation), defaults (the field's, or an
experiment driver's own where it has one), help (the field's ``help`` metadata) and validation
(:class:`SamplerSettings` itself), so that the command line and the library cannot disagree."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from xdiffsr.core.guidance.registry import guidance_names
from xdiffsr.errors import ArgumentError
from xdiffsr.reconstruct.settings import SamplerSettings

__all__ = ["add_sampler_arguments", "driver_defaults", "sampler_options"]

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def add_sampler_arguments(parser: argparse.ArgumentParser, names: Sequence[str], *,
                          defaults: Mapping[str, Any] | None = None) -> None:
    """Add ``--name`` options for the fields ``names`` of :class:`SamplerSettings` to ``parser``
    (destination: the field's name).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    names : sequence of str
        Fields of :class:`SamplerSettings`.
    defaults : mapping, optional
        Defaults other than the settings' own (an experiment driver's, :func:`driver_defaults`);
        each is validated as a value given on the command line.
    """
    fields = {f.name: f for f in dataclasses.fields(SamplerSettings)}
    hints = typing.get_type_hints(SamplerSettings)
    base = SamplerSettings.from_options(**(defaults or {}))
    library = SamplerSettings()
    for name in names:
        default = getattr(base, name)
        parse = _parser(name, hints[name])
        text = fields[name].metadata["help"]
        if default != getattr(library, name):  # say it: this command's default is its own
            text += f" (this command's own default; the library's is {getattr(library, name)})"
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=parse, default=default,
            choices=guidance_names() if name == "guidance" else None,
            metavar="LO,HI" if name == "mmps_sigmas" else None,
            help=text,
        )


def sampler_options(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The values of the options ``names`` parsed into ``args``, by field name."""
    return {name: getattr(args, name) for name in names}


def driver_defaults(func: Callable, names: Sequence[str]) -> dict[str, Any]:
    """The defaults an experiment driver (:func:`xdiffsr.evaluation.suite.evaluate`, ...) gives
    the sampler options ``names`` it takes, so its command agrees with its function."""
    params = inspect.signature(func).parameters
    return {n: params[n].default for n in names
            if n in params and params[n].default is not inspect.Parameter.empty}


def _parser(name: str, hint: Any) -> Callable[[str], Any]:
    """Text -> value of field ``name``, refused as :class:`SamplerSettings` refuses it."""

    def parse(text: str) -> Any:
        value = _value(text, hint)
        try:
            SamplerSettings.from_options(**{name: value})
        except ArgumentError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    parse.__name__ = name
    return parse


def _value(text: str, hint: Any) -> Any:
    """``text`` as a value of the annotation ``hint`` (``none`` for None where allowed)."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    word = text.strip().lower()
    if word == "none" and type(None) in kinds:
        return None
    for kind in kinds:
        origin = typing.get_origin(kind) or kind
        try:
            if origin is tuple:
                return tuple(float(t) for t in text.split(","))
            if origin is bool and word in _TRUE + _FALSE:
                return word in _TRUE
            if origin in (int, float):
                return origin(text)
        except ValueError:
            continue
        if origin is str:
            return text
    names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise argparse.ArgumentTypeError(f"{text!r} is not {names}")
