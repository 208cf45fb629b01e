"""Redis stores: states, nonces, launches and tokens shared by every worker.

Install the extra (``pip install 'lti-middleware[redis]'``) and name a server
in the TOML configuration::

    [plugins.redis]
    url = "redis://127.0.0.1:6379/0"   # rediss:// for TLS; a password goes in the URL
    prefix = "lti:"                    # every key starts with it
    socket_timeout = 2.0               # seconds a command may take
    connect_timeout = 2.0              # seconds a connection may take
    max_value_bytes = 1048576          # larger values are refused
    lock_wait = 10.0                   # seconds a token-lock waiter waits
    max_connections = 50               # per store and process
    pool_timeout = 5.0                 # seconds a request waits for a connection

This module is also the worked example for plugin writers:

- The store classes follow the protocols in :mod:`lti_middleware.stores.base`
  without inheriting from them, and pass the contract tests in
  :mod:`lti_middleware.testing`.
- :data:`lti_middleware.redis_plugin.plugin` answers the three store hooks
  when ``[plugins.redis]`` is configured, and returns None otherwise so the
  in-memory defaults apply. The stores themselves know nothing of pluggy.
- The package declares that plugin in the ``lti_middleware`` entry-point
  group, so ``LTIMiddleware(app, load_entry_points=True)`` finds it.
- Every Redis error or timeout is raised as
  :class:`~lti_middleware.exceptions.StoreError` naming the store and the
  server (never the password), so a launch fails closed with a 503.

Keys are ``<prefix>once:<h>`` for states and nonces, ``<prefix>launch:<h>``,
``<prefix>token:<h>`` and ``<prefix>token-lock:<h>``, where ``<h>`` is the
SHA-256 of the store's key (states, nonces and launch ids are secrets); each
lives only as long as its TTL. Every command touches one key. Values are not
encrypted: launches hold their claims and the token store holds access
tokens, so give the tool a Redis (or an ACL user) no one else reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError, StoreError
from .base import Consumed

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..config import ToolConfig

__all__ = [
    "RedisAccessTokenStore",
    "RedisLaunchStore",
    "RedisNonceStore",
    "RedisSettings",
    "connect",
]

logger = logging.getLogger(__name__)

#: The ``[plugins.<name>]`` table this plugin reads.
PLUGIN_NAME = "redis"
DEFAULT_PREFIX = "lti:"
DEFAULT_SOCKET_TIMEOUT = 2.0
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
DEFAULT_LOCK_WAIT = 10.0
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_POOL_TIMEOUT = 5.0
#: Longer keys are never written, so reading one finds nothing.
MAX_KEY_CHARS = 1024
#: A command that fails on a dropped connection is sent once more.
RETRIES = 1

_SCHEMES = ("redis", "rediss", "unix")
# A one-time record is "v" + its value until consumed, then the tombstone "u".
_RECORD = "v"
_LOCK_POLL_FIRST = 0.005
_LOCK_POLL_MAX = 0.1

# LTI Security Framework 5.1.3: a nonce is single use. One script, so the read
# and the write are one atomic step for every client of the server.
_CONSUME = """
local record = redis.call('GET', KEYS[1])
if not record then
  return {'unknown'}
end
if string.sub(record, 1, 1) ~= 'v' then
  return {'used'}
end
redis.call('SET', KEYS[1], 'u', 'PX', ARGV[1])
return {'ok', string.sub(record, 2)}
"""

# Delete the lock only if it is still ours: it may have lapsed and been taken.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """The ``[plugins.redis]`` table, checked; durations in seconds."""

    url: str
    prefix: str = DEFAULT_PREFIX
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    lock_wait: float = DEFAULT_LOCK_WAIT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    pool_timeout: float = DEFAULT_POOL_TIMEOUT

    def __post_init__(self) -> None:
        _check_url(self.url)
        if not isinstance(self.prefix, str) or self.prefix != "".join(
            self.prefix.split()
        ):
            raise _setting_error("prefix", "expected a string without spaces")
        for name in ("socket_timeout", "connect_timeout"):
            _check_number(name, getattr(self, name), low=0.01, high=60.0)
        _check_number("lock_wait", self.lock_wait, low=0.0, high=300.0)
        _check_number("pool_timeout", self.pool_timeout, low=0.01, high=60.0)
        count = self.max_connections
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _setting_error("max_connections", "expected an int >= 1")
        size = self.max_value_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 1024:
            raise _setting_error("max_value_bytes", "expected an int >= 1024")

    @classmethod
    def from_config(cls, config: ToolConfig) -> RedisSettings | None:
        """The settings in ``config``, or None when it has no redis table.

        Raises ConfigurationError naming the key that is missing or wrong.
        """
        table = config.plugin_settings.get(PLUGIN_NAME)
        if table is None:
            return None

        return cls.from_table(table)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> RedisSettings:
        """Settings from a parsed ``[plugins.redis]`` table."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise _setting_error(
                unknown[0], f"unknown key; expected one of {sorted(known)}"
            )
        if "url" not in table:
            raise _setting_error("url", "missing; name the server")

        return cls(**table)


def _setting_error(key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"plugins.{PLUGIN_NAME}.{key}", message)


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise _setting_error("url", "expected a string such as redis://host:6379/0")
    parts = urlsplit(url)
    try:
        _ = parts.port  # urlsplit checks the port only when asked
    except ValueError:
        raise _setting_error("url", f"bad port in {_redacted(url)!r}") from None
    if parts.scheme not in _SCHEMES:
        raise _setting_error(
            "url", f"expected a {', '.join(_SCHEMES)} URL, got {_redacted(url)!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise _setting_error("url", f"no host in {_redacted(url)!r}")


def _check_number(key: str, value: object, *, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _setting_error(key, f"expected seconds, got {value!r}")
    if not low <= value <= high:
        raise _setting_error(key, f"expected {low} to {high} seconds, got {value}")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def connect(settings: RedisSettings) -> Redis:
    """A client for ``settings.url``; it connects on first use.

    Raises ConfigurationError when the ``redis`` package is not installed.
    """
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import EqualJitterBackoff
    except ImportError as error:
        raise _setting_error(
            "url", "the redis package is missing: pip install 'lti-middleware[redis]'"
        ) from error

    # A blocking pool: under a burst, requests wait up to pool_timeout for a
    # free connection instead of failing at once when the pool is full.
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        decode_responses=True,
        retry=Retry(EqualJitterBackoff(cap=0.2, base=0.02), RETRIES),
    )
    client: Redis = Redis.from_pool(pool)
    return client


def _text(value: bytes | str | None) -> str | None:
    # Clients made by connect() decode; one given by the caller may not.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _milliseconds(ttl: float) -> int:
    if not math.isfinite(ttl):
        raise ValueError(f"a TTL must be a finite number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class _RedisStore:
    """What the three stores share: keys, limits and error wrapping."""

    _label = "redis store"

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self._prefix = prefix
        self._max_value_bytes = max_value_bytes
        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        options = client.connection_pool.connection_kwargs
        self._password = options.get("password")
        if "path" in options:
            self._where = str(options["path"])
        else:
            host, port = options.get("host", "localhost"), options.get("port", 6379)
            self._where = f"{host}:{port}/{options.get('db', 0)}"

    @property
    def client(self) -> Redis:
        """The redis.asyncio client this store sends its commands through."""
        return self._client

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._client.aclose()

    def _key(self, kind: str, key: str) -> str:
        # States, nonces and launch ids are bearer secrets: hashed, they do
        # not show in SCAN or KEYS output to whoever else can read this Redis.
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{self._prefix}{kind}:{digest}"

    def _check_write(self, key: str, value: str) -> None:
        if len(key) > MAX_KEY_CHARS:
            raise StoreError(
                f"{self._label}: a key of {len(key)} characters is above the "
                f"limit of {MAX_KEY_CHARS}",
                store=self._label,
            )
        size = len(value.encode("utf-8"))
        if size > self._max_value_bytes:
            raise StoreError(
                f"{self._label}: a value of {size} bytes is above the limit of "
                f"{self._max_value_bytes} (max_value_bytes)",
                store=self._label,
            )

    async def _run(self, command: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except self._errors as error:
            raise StoreError(
                self._failure(command, error), store=self._label
            ) from error

    def _failure(self, command: str, error: Exception) -> str:
        text = str(error)[:200]
        if self._password:
            text = text.replace(str(self._password), "***")
        return (
            f"{self._label} at {self._where}: {command} failed: "
            f"{type(error).__name__}: {text}"
        )


class RedisNonceStore(_RedisStore):
    """One-time login states and nonces, consumed atomically.

    ``consume`` is one Lua script: of any number of concurrent consumers, in
    any process using the server, exactly one sees ``ok``. The used record
    stays as a tombstone for ``remember_for`` seconds, so a replay is told
    apart from a key that was never issued.
    """

    _label = "redis nonce store"

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        super().__init__(client, prefix=prefix, max_value_bytes=max_value_bytes)
        self._consume = client.register_script(_CONSUME)

    async def issue(self, key: str, value: str, ttl: float) -> None:
        """Record ``key`` with ``value`` for ``ttl`` seconds (at least 1 ms)."""
        self._check_write(key, value)
        record = self._client.set(
            self._key("once", key), _RECORD + value, px=_milliseconds(ttl)
        )
        await self._run("SET", record)

    async def consume(self, key: str, remember_for: float) -> Consumed:
        """Consume ``key`` and leave a tombstone for ``remember_for`` seconds."""
        if len(key) > MAX_KEY_CHARS:
            return Consumed("unknown")

        call = self._consume(
            keys=[self._key("once", key)], args=[_milliseconds(remember_for)]
        )
        answer = [_text(part) for part in await self._run("consume script", call)]
        if answer[0] == "ok":
            return Consumed("ok", answer[1])
        if answer[0] == "used":
            return Consumed("used")

        return Consumed("unknown")


class RedisLaunchStore(_RedisStore):
    """Validated launches, found again by any worker."""

    _label = "redis launch store"

    async def save(self, launch_id: str, data: str, ttl: float) -> None:
        """Keep ``data`` under ``launch_id`` for ``ttl`` seconds (at least 1 ms)."""
        self._check_write(launch_id, data)
        call = self._client.set(
            self._key("launch", launch_id), data, px=_milliseconds(ttl)
        )
        await self._run("SET", call)

    async def load(self, launch_id: str) -> str | None:
        """The data saved under ``launch_id``, or None."""
        if len(launch_id) > MAX_KEY_CHARS:
            return None

        data = await self._run("GET", self._client.get(self._key("launch", launch_id)))
        return _text(data)


class RedisAccessTokenStore(_RedisStore):
    """The access-token cache, with a lock shared by every worker.

    ``lock`` is ``SET NX PX`` with a random value, polled with a short
    backoff, and released by a script that deletes the key only if it still
    holds that value. A waiter goes on without the lock after ``lock_wait``
    seconds, logging a warning.
    """

    _label = "redis token store"

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        super().__init__(client, prefix=prefix, max_value_bytes=max_value_bytes)
        self._lock_wait = lock_wait
        self._release = client.register_script(_RELEASE)

    async def get(self, key: str) -> str | None:
        """The cached value, or None."""
        if len(key) > MAX_KEY_CHARS:
            return None

        value = await self._run("GET", self._client.get(self._key("token", key)))
        return _text(value)

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Cache ``value`` for ``ttl`` seconds (at least 1 ms)."""
        self._check_write(key, value)
        call = self._client.set(self._key("token", key), value, px=_milliseconds(ttl))
        await self._run("SET", call)

    async def delete(self, key: str) -> None:
        """Drop ``key``."""
        if len(key) <= MAX_KEY_CHARS:
            await self._run("DEL", self._client.delete(self._key("token", key)))

    @contextlib.asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[None]:
        """Hold the lock on ``key``; it lapses after ``ttl`` seconds."""
        name = self._key("token-lock", key)
        token = secrets.token_urlsafe(16)
        held = await self._acquire(name, token, ttl)
        try:
            yield
        finally:
            if held:
                await self._unlock(name, token)

    async def _acquire(self, name: str, token: str, ttl: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        delay = _LOCK_POLL_FIRST
        while True:
            taken = self._client.set(name, token, nx=True, px=_milliseconds(ttl))
            if await self._run("SET NX", taken):
                return True

            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning(
                    "%s at %s: token lock still held after %.1f s; going on without it",
                    self._label,
                    self._where,
                    self._lock_wait,
                )
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _LOCK_POLL_MAX)

    async def _unlock(self, name: str, token: str) -> None:
        try:
            await self._run("unlock script", self._release(keys=[name], args=[token]))
        except StoreError as error:
            # The token is already cached; the lock lapses by its TTL.
            logger.warning("%s", error)
