"""Exceptions and warnings raised by xdiffsr.

Every error a user can trigger with bad input is a subclass of :class:`XDiffSRError`, and its
message
names the argument, the offending value and the fix. Most also derive from the matching builtin
(``ValueError``, ``KeyError``) so that generic handlers keep working.
"""

from __future__ import annotations


class XDiffSRError(Exception):
    """Base class of every error raised by xdiffsr on bad input."""


class ArgumentError(XDiffSRError, ValueError):
    """A keyword argument has a value that cannot be used (wrong length, sign, type or choice)."""


class CoordinateError(XDiffSRError, ValueError):
    """Latitude, longitude, time or vertical coordinates are missing, irregular or inconsistent."""


class UnitsError(XDiffSRError, ValueError):
    """Units are missing, unknown, or cannot be converted to the units the model expects."""


class ObservationError(XDiffSRError, ValueError):
    """Observations that cannot be used: unknown variables, points outside the grid, bad schema."""


class ModelError(XDiffSRError, ValueError):
    """A model or weights file that cannot be loaded (unknown name, bad metadata, hash mismatch)."""


class FormatError(XDiffSRError, ValueError):
    """A data file (IGRA, regridding weights) that does not follow its documented format."""


class DivergenceError(XDiffSRError, FloatingPointError):
    """Sampling produced non-finite states (a guidance step far too large for the observations)."""


class StoreLockedError(XDiffSRError, RuntimeError):
    """A zarr store is being written by another run (its lock is held)."""


class XDiffSRWarning(UserWarning):
    """Base class of warnings from xdiffsr (dropped NaN observations, missing times, ...)."""
