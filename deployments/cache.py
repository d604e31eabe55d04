"""A small TTL + LRU cache with single-flight loading, for the judge's three caches.

Why not cachetools: the judge also needs single-flight (concurrent misses on one key run the loader once, the
rest await it), which cachetools does not do for coroutines; the whole thing is ~60 lines with no dependency.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """At most `size` entries, each valid for `ttl_s`; least recently used evicted first. size 0: no caching."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[V]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.size <= 0:
            return
        self._data[key] = (self._clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    async def get_or_load(
        self, key: Hashable, load: Callable[[], Awaitable[V]], keep: Callable[[V], bool] = lambda _: True
    ) -> tuple[V, bool]:
        """(value, was_cached). `keep(value)` decides whether a fresh value is stored (e.g. not degraded ones)."""
        value = self.get(key)
        if value is not None:
            self.hits += 1
            return value, True
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending), True
        self.misses += 1
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            value = await load()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it; nobody waiting is fine too
            raise
        finally:
            self._inflight.pop(key, None)
        if keep(value):
            self.put(key, value)
        fut.set_result(value)
        return value, False
