"""The package version, in a foundation module so that every layer can record it."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
