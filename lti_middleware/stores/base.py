"""Protocols for the stores the middleware keeps its state in.

Stores do not import pluggy or know about ASGI: a plugin returns an object that
has these async methods, whether or not it inherits from anything here. Times
are in seconds. Every store must bound its memory or rely on expiry. A store
whose backend cannot be reached or times out raises
:class:`~lti_middleware.exceptions.StoreError`, so the middleware fails closed.
:mod:`lti_middleware.testing` holds the contract tests a store must pass.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Literal, NamedTuple, Protocol, runtime_checkable

ConsumeStatus = Literal["ok", "used", "unknown"]


class Consumed(NamedTuple):
    """What :meth:`NonceStore.consume` found.

    ``ok`` with the stored value the first time; ``used`` when an earlier call
    already consumed it; ``unknown`` when never issued or long expired.
    """

    status: ConsumeStatus
    value: str | None = None


@runtime_checkable
class NonceStore(Protocol):
    """One-time records: login states and nonces.

    LTI Security Framework 5.1.3: a nonce is single use. ``consume`` must be
    atomic: of any number of concurrent calls for one key, across every process
    sharing the store, exactly one sees ``ok``.
    """

    async def issue(self, key: str, value: str, ttl: float) -> None:
        """Record ``key`` with ``value``, consumable for ``ttl`` seconds."""
        ...

    async def consume(self, key: str, remember_for: float) -> Consumed:
        """Consume ``key`` atomically and remember it as used for ``remember_for``."""
        ...


@runtime_checkable
class LaunchStore(Protocol):
    """Validated launches, found again by later requests of the same launch."""

    async def save(self, launch_id: str, data: str, ttl: float) -> None:
        """Keep ``data`` (a JSON document) under ``launch_id`` for ``ttl`` seconds."""
        ...

    async def load(self, launch_id: str) -> str | None:
        """The data saved under ``launch_id``, or None when unknown or expired."""
        ...


@runtime_checkable
class AccessTokenStore(Protocol):
    """Cache of OAuth2 access tokens, keyed by registration and scope set.

    Platforms such as Canvas rate-limit their token endpoint, so workers
    sharing the cache take :meth:`lock` around a token request: one asks, the
    others find its token in the cache.
    """

    async def get(self, key: str) -> str | None:
        """The cached value, or None when absent or expired."""
        ...

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Cache ``value`` for ``ttl`` seconds."""
        ...

    async def delete(self, key: str) -> None:
        """Drop ``key``, for example after the platform refused the token."""
        ...

    def lock(self, key: str, ttl: float) -> AbstractAsyncContextManager[None]:
        """A lock on ``key`` held while one worker requests a token.

        While one holder is inside, other holders of the same key, in any
        process sharing the store, wait. The lock lapses after ``ttl`` seconds
        should its holder die. A waiter gives up after a bounded wait and goes
        on without the lock (logging a warning) rather than block forever: a
        second token request is better than a stuck worker. A store only one
        process uses may lock in memory.
        """
        ...
