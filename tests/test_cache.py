"""The per-process cache: built once per key, counted, cleared; concurrent callers share one."""

from __future__ import annotations

import threading
import time

from xdiffsr.cache import ProcessCache


def test_builds_once_per_key_and_counts():
    cache = ProcessCache("loads", "hits")
    calls = []

    def build(k):
        calls.append(k)
        return object()

    a = cache.get("a", lambda: build("a"))
    assert cache.get("a", lambda: build("a")) is a
    b = cache.get("b", lambda: build("b"))
    assert b is not a and calls == ["a", "b"]
    assert cache.stats() == {"loads": 2, "hits": 1}
    cache.clear()
    assert cache.stats() == {"loads": 0, "hits": 0} and len(cache) == 0
    assert cache.get("a", lambda: build("a")) is not a


def test_exclusive_cache_builds_once_under_concurrency():
    cache = ProcessCache("loads", "hits", exclusive=True)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)
        return object()

    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(o is out[0] for o in out)
    assert cache.stats() == {"loads": 1, "hits": 3}


def test_shared_cache_keeps_the_first_result():
    cache = ProcessCache()
    first = cache.get("k", lambda: [1])
    assert cache.get("k", lambda: [2]) is first
