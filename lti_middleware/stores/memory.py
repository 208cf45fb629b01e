"""In-memory stores: the default for a single process.

Bounded by entry count as well as by expiry, so a flood of logins cannot grow
memory without limit; when full, expired entries go first, then spent
records (consumed states and nonces), then the oldest live ones. Not shared
between processes: several workers need a shared store such as Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
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

    Entries sit in one of two insertion-ordered queues: spent records (a
    consumed state or nonce, kept only to name a replay) and live ones. When
    the map is full, expired entries go first, then the oldest spent record,
    and only when none is left the oldest live one. Dropping a spent record
    never lets a replay through: a state or nonce this tool has no record of
    is refused as unknown. Dropping the entry closest to expiry instead would
    throw out the newest login whenever spent records, kept longer than a
    login lives, fill the map.
    """

    def __init__(self, max_entries: int, clock: Clock) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._spent: OrderedDict[str, _Entry] = OrderedDict()
        self._live: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._spent) + len(self._live)

    def get(self, key: str) -> _Entry | None:
        entry = self._live.get(key) or self._spent.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self.pop(key)
            return None

        return entry

    def set(self, key: str, value: str | None, ttl: float, *, used: bool) -> None:
        self.pop(key)
        if len(self) >= self._max_entries:
            self._make_room()

        queue = self._spent if used else self._live
        queue[key] = _Entry(value, used, self._clock() + ttl)

    def pop(self, key: str) -> None:
        self._live.pop(key, None)
        self._spent.pop(key, None)

    def _make_room(self) -> None:
        self._drop_expired()
        while len(self) >= self._max_entries:
            queue = self._spent or self._live
            queue.popitem(last=False)

    def _drop_expired(self) -> None:
        # Each queue is close to expiry order (a store writes one kind of
        # record with one lifetime), so expired entries gather at the front.
        now = self._clock()
        for queue in (self._spent, self._live):
            while queue and next(iter(queue.values())).expires <= now:
                queue.popitem(last=False)


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
