"""In-memory stores: the default for a single process.

Bounded by entry count as well as by expiry, so a flood of logins cannot grow
memory without limit; when full, the entries closest to expiry go first. Not
shared between processes: several workers need a shared store such as Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from cachetools import TLRUCache

from .base import Consumed

DEFAULT_MAX_ENTRIES = 100_000

Clock = Callable[[], float]


class _Entry(NamedTuple):
    value: str | None
    used: bool
    expires: float


def _expiry(_key: str, entry: _Entry, _now: float) -> float:
    return entry.expires


class _TimedMap:
    """A bounded map whose entries each carry their own expiry time."""

    def __init__(self, max_entries: int, clock: Clock) -> None:
        self._clock = clock
        self._cache: TLRUCache[str, _Entry] = TLRUCache(
            maxsize=max_entries, ttu=_expiry, timer=clock
        )

    def get(self, key: str) -> _Entry | None:
        return self._cache.get(key)

    def set(self, key: str, value: str | None, ttl: float, *, used: bool) -> None:
        self._cache[key] = _Entry(value, used, self._clock() + ttl)

    def pop(self, key: str) -> None:
        self._cache.pop(key, None)


class MemoryNonceStore:
    """One-time records in this process's memory.

    ``consume`` runs without awaiting, so on one event loop it is atomic.
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Clock = time.time
    ) -> None:
        self._records = _TimedMap(max_entries, clock)

    async def issue(self, key: str, value: str, ttl: float) -> None:
        self._records.set(key, value, ttl, used=False)

    async def consume(self, key: str, remember_for: float) -> Consumed:
        entry = self._records.get(key)
        if entry is None:
            return Consumed("unknown")
        if entry.used:
            return Consumed("used")

        self._records.set(key, None, remember_for, used=True)
        return Consumed("ok", entry.value)


class MemoryLaunchStore:
    """Launch records in this process's memory."""

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Clock = time.time
    ) -> None:
        self._records = _TimedMap(max_entries, clock)

    async def save(self, launch_id: str, data: str, ttl: float) -> None:
        self._records.set(launch_id, data, ttl, used=False)

    async def load(self, launch_id: str) -> str | None:
        entry = self._records.get(launch_id)
        return None if entry is None else entry.value


class MemoryAccessTokenStore:
    """Access tokens in this process's memory."""

    def __init__(self, *, max_entries: int = 10_000, clock: Clock = time.time) -> None:
        self._records = _TimedMap(max_entries, clock)

    async def get(self, key: str) -> str | None:
        entry = self._records.get(key)
        return None if entry is None else entry.value

    async def put(self, key: str, value: str, ttl: float) -> None:
        self._records.set(key, value, ttl, used=False)

    async def delete(self, key: str) -> None:
        self._records.pop(key)
