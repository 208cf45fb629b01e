"""Stores on Django's cache framework, as an optional plugin.

Register :data:`plugin` (or a :class:`DjangoCachePlugin` for another cache
alias) in ``LTI_PLUGINS`` and the nonces, launches and access tokens live in
that cache, shared by every process using the same cache server::

    LTI_PLUGINS = ["lti_middleware.django.cache.plugin"]

Limits, stated plainly:

- Single use of a state or nonce rests on ``cache.add`` being atomic: true
  for Redis, Memcached and the database cache across processes; the local
  memory cache is atomic within one process only; the file cache's ``add``
  is not atomic at all and must not be used.
- A cache may evict entries before they expire. An evicted login state makes
  that login fail (safe); an evicted "used" mark lets a replay of that nonce
  through. Give the cache room, or use the Redis stores for hard guarantees.
- The token lock is a ``cache.add`` lease that lapses after its ttl; release
  reads then deletes, which is not atomic, so a holder that outlived its
  lease may drop the next holder's lease. The worst case is one extra token
  request, which the lock only exists to avoid.

Keys are hashed (SHA-256) under ``prefix``, so they suit Memcached's key
rules whatever the middleware's keys contain. Cache calls run in worker
threads (``asyncio.to_thread``), not through Django's thread-sensitive
``cache.aget`` and kin: those wait for the thread that a sync view holds
while ``call_sync`` waits for them, a deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from django.core.cache import BaseCache, caches  # type: ignore[import-untyped]

from ..config import ToolConfig
from ..exceptions import StoreError
from ..hooks import hookimpl
from ..stores.base import Consumed

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "lti:"
#: Seconds a token-lock waiter waits before it goes on without the lock.
DEFAULT_LOCK_WAIT = 10.0
#: Longest pause, in seconds, between two tries to take a held lock.
LOCK_POLL_MAX = 0.1

_MISSING = object()


class _CacheStore:
    def __init__(self, cache: BaseCache, *, prefix: str, name: str) -> None:
        self.cache = cache
        self.prefix = prefix
        self.name = name

    def key(self, kind: str, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{self.prefix}{kind}:{digest}"

    async def call(self, method: Callable[..., T], *args: object) -> T:
        """Run a cache method in a worker thread; backend errors as StoreError."""
        try:
            return await asyncio.to_thread(method, *args)
        except Exception as error:
            # Backends raise their own errors (redis, pymemcache, database).
            raise StoreError(f"django cache: {error!r}", store=self.name) from error


class DjangoCacheNonceStore(_CacheStore):
    """One-time records in a Django cache; see the module's limits.

    ``consume`` first adds a "used" mark: of concurrent consumers, only the
    one whose ``add`` succeeds reads and deletes the record.
    """

    def __init__(self, cache: BaseCache, *, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(cache, prefix=prefix, name="django cache nonce store")

    async def issue(self, key: str, value: str, ttl: float) -> None:
        await self.call(self.cache.set, self.key("record", key), value, ttl)

    async def consume(self, key: str, remember_for: float) -> Consumed:
        used = self.key("used", key)
        if not await self.call(self.cache.add, used, True, remember_for):
            return Consumed("used")

        record = self.key("record", key)
        value = await self.call(self.cache.get, record, _MISSING)
        if value is _MISSING:
            # Never issued or expired: no mark, so it stays "unknown".
            await self.call(self.cache.delete, used)
            return Consumed("unknown")

        await self.call(self.cache.delete, record)
        return Consumed("ok", str(value))


class DjangoCacheLaunchStore(_CacheStore):
    """Launch records in a Django cache."""

    def __init__(self, cache: BaseCache, *, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(cache, prefix=prefix, name="django cache launch store")

    async def save(self, launch_id: str, data: str, ttl: float) -> None:
        await self.call(self.cache.set, self.key("launch", launch_id), data, ttl)

    async def load(self, launch_id: str) -> str | None:
        value = await self.call(self.cache.get, self.key("launch", launch_id))
        return None if value is None else str(value)


class DjangoCacheAccessTokenStore(_CacheStore):
    """Access tokens in a Django cache, with a lease lock per key."""

    def __init__(
        self,
        cache: BaseCache,
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        super().__init__(cache, prefix=prefix, name="django cache token store")
        self.lock_wait = lock_wait

    async def get(self, key: str) -> str | None:
        value = await self.call(self.cache.get, self.key("token", key))
        return None if value is None else str(value)

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self.call(self.cache.set, self.key("token", key), value, ttl)

    async def delete(self, key: str) -> None:
        await self.call(self.cache.delete, self.key("token", key))

    @contextlib.asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[None]:
        lease = self.key("lock", key)
        owner = secrets.token_hex(16)
        held = await self._acquire(lease, owner, ttl)
        try:
            yield
        finally:
            if held and await self.call(self.cache.get, lease) == owner:
                await self.call(self.cache.delete, lease)

    async def _acquire(self, lease: str, owner: str, ttl: float) -> bool:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lock_wait
        delay = 0.005
        while not await self.call(self.cache.add, lease, owner, ttl):
            if loop.time() >= give_up:
                logger.warning(
                    "django cache token store: lock still held after %.1f s; "
                    "going on without it",
                    self.lock_wait,
                )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, LOCK_POLL_MAX)

        return True


class DjangoCachePlugin:
    """Answers the store hooks with stores on the Django cache ``alias``.

    The cache is looked up when the middleware is built, so Django must be
    set up by then (it is inside ``get_asgi_application``).
    """

    name = "django_cache"

    def __init__(
        self,
        alias: str = "default",
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        self.alias = alias
        self.prefix = prefix
        self.lock_wait = lock_wait

    @hookimpl
    def lti_nonce_store(self, config: ToolConfig) -> DjangoCacheNonceStore:
        return DjangoCacheNonceStore(caches[self.alias], prefix=self.prefix)

    @hookimpl
    def lti_launch_store(self, config: ToolConfig) -> DjangoCacheLaunchStore:
        return DjangoCacheLaunchStore(caches[self.alias], prefix=self.prefix)

    @hookimpl
    def lti_access_token_store(self, config: ToolConfig) -> DjangoCacheAccessTokenStore:
        return DjangoCacheAccessTokenStore(
            caches[self.alias], prefix=self.prefix, lock_wait=self.lock_wait
        )


#: The plugin on the ``default`` cache, for ``LTI_PLUGINS`` by dotted path.
plugin = DjangoCachePlugin()
