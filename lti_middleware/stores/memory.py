"""In-memory stores: the default for a single process.

Bounded by entry count as well as by expiry, so a flood of logins cannot grow
memory without limit; when full, the entries closest to expiry go first. Not
shared between processes: several workers need a shared store such as Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from cachetools import TLRUCache

from .base import Consumed

logger = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 100_000
#: Seconds a token lock waiter waits before it goes on without the lock.
DEFAULT_LOCK_WAIT = 10.0

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


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    # Event-loop time at which the holder's lease lapses.
    lapses_at: float = math.inf


class MemoryAccessTokenStore:
    """Access tokens in this process's memory.

    :meth:`lock` is an asyncio lock per key: it serialises token requests of
    several clients sharing this store on one event loop. A waiter goes on
    without it after ``lock_wait`` seconds, or once the holder has kept it
    longer than its ``ttl``.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        clock: Clock = time.time,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        self._records = _TimedMap(max_entries, clock)
        self._lock_wait = lock_wait
        # Only keys someone holds or waits for, so the map stays small.
        self._locks: dict[str, _KeyLock] = {}

    async def get(self, key: str) -> str | None:
        entry = self._records.get(key)
        return None if entry is None else entry.value

    async def put(self, key: str, value: str, ttl: float) -> None:
        self._records.set(key, value, ttl, used=False)

    async def delete(self, key: str) -> None:
        self._records.pop(key)

    @contextlib.asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            held = await self._acquire(entry, ttl)
            try:
                yield
            finally:
                if held:
                    entry.lapses_at = math.inf
                    entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def _acquire(self, entry: _KeyLock, ttl: float) -> bool:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._lock_wait
        while True:
            try:
                async with asyncio.timeout_at(min(give_up, entry.lapses_at)):
                    await entry.lock.acquire()
            except TimeoutError:
                now = loop.time()
                if now >= give_up:
                    logger.warning(
                        "memory token store: lock still held after %.1f s; going "
                        "on without it",
                        self._lock_wait,
                    )
                    return False
                if now >= entry.lapses_at:
                    # The holder outlived its ttl: treat the lock as lapsed.
                    return False
                continue

            entry.lapses_at = loop.time() + ttl
            return True
