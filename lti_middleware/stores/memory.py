"""In-memory stores: the default for a single process.

Bounded by entry count as well as by expiry, so a flood of logins cannot grow
memory without limit; when full, the entries closest to expiry go first. Not
shared between processes: several workers need a shared store such as Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

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


class _TimedMap:
    """A bounded map whose entries each carry their own expiry time.

    A dict holds the entries; a heap of ``(expires, sequence, key)`` tuples
    orders them by expiry. Overwriting a key leaves its old heap item behind,
    recognised as stale by its sequence number and dropped when it reaches
    the top. Tuples compare in C: cachetools' TLRUCache, used before, compared
    Python objects and cost about 4 us per write, a tenth of a launch.
    """

    def __init__(self, max_entries: int, clock: Clock) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[_Entry, int]] = {}
        self._expiry: list[tuple[float, int, str]] = []
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> _Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0].expires <= self._clock():
            self._drop_expired()
            return None

        return found[0]

    def set(self, key: str, value: str | None, ttl: float, *, used: bool) -> None:
        expires = self._clock() + ttl
        self._sequence += 1
        if key not in self._entries and len(self._entries) >= self._max_entries:
            self._make_room()

        self._entries[key] = (_Entry(value, used, expires), self._sequence)
        heapq.heappush(self._expiry, (expires, self._sequence, key))
        if len(self._expiry) > 2 * self._max_entries + 16:
            self._compact()

    def pop(self, key: str) -> None:
        self._entries.pop(key, None)

    def _make_room(self) -> None:
        # Expired entries go first; when none has expired, the one closest to
        # expiry makes way (it had the least time left to be useful).
        self._drop_expired()
        while len(self._entries) >= self._max_entries and self._expiry:
            _, sequence, key = heapq.heappop(self._expiry)
            self._forget(key, sequence)

    def _drop_expired(self) -> None:
        now = self._clock()
        while self._expiry and self._expiry[0][0] <= now:
            _, sequence, key = heapq.heappop(self._expiry)
            self._forget(key, sequence)

    def _forget(self, key: str, sequence: int) -> None:
        found = self._entries.get(key)
        if found is not None and found[1] == sequence:
            del self._entries[key]

    def _compact(self) -> None:
        # Keys overwritten again and again (a token refreshed before its
        # expiry) leave stale heap items; rebuild from the live entries.
        self._expiry = [
            (entry.expires, sequence, key)
            for key, (entry, sequence) in self._entries.items()
        ]
        heapq.heapify(self._expiry)


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
