"""Per-process caches of expensive objects (loaded models, regridding operators), with counters.

Build once, use many times: a dask worker process loads a model file or builds a regridding
operator once and every task it runs shares it. ``stats()`` tells how often each cache built and
how often it was hit (``client.run(xdiffsr.reconstruct.cache_stats)`` on a cluster).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["ProcessCache"]


class ProcessCache:
    """A thread-safe map from keys to built objects, with a built counter and a hit counter.

    Parameters
    ----------
    built, hits : str
        Names of the two counters in :meth:`stats` (e.g. ``"loads"`` and ``"hits"``).
    exclusive : bool
        Build under the lock (one build per key even when threads race; for models), or build
        outside it and keep the first result stored (for cheap, pure builders).
    """

    def __init__(self, built: str = "built", hits: str = "hits", *, exclusive: bool = False):
        self._lock = threading.RLock()
        self._items: dict[Hashable, Any] = {}
        self._names = (built, hits)
        self._counts = {built: 0, hits: 0}
        self._exclusive = exclusive

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The object of ``key``, built with ``build()`` the first time."""
        with self._lock:
            if key in self._items:
                self._counts[self._names[1]] += 1
                return self._items[key]
            if self._exclusive:
                return self._store(key, build())
        value = build()
        with self._lock:
            return self._items[key] if key in self._items else self._store(key, value)

    def _store(self, key: Hashable, value: Any) -> Any:
        self._items[key] = value
        self._counts[self._names[0]] += 1
        return value

    def stats(self) -> dict[str, int]:
        """The two counters since the last :meth:`clear`."""
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        """Forget every object and reset the counters."""
        with self._lock:
            self._items.clear()
            self._counts = dict.fromkeys(self._names, 0)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ProcessCache({len(self)} objects, {self.stats()})"
