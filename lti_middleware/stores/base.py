"""Protocols for the stores the middleware keeps its state in.

Stores do not import pluggy or know about ASGI: a plugin returns an object that
has these async methods, whether or not it inherits from anything here. Times
are in seconds. Every store must bound its memory or rely on expiry.
"""

from __future__ import annotations

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
    """Cache of OAuth2 access tokens, keyed by registration and scope set."""

    async def get(self, key: str) -> str | None:
        """The cached value, or None when absent or expired."""
        ...

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Cache ``value`` for ``ttl`` seconds."""
        ...

    async def delete(self, key: str) -> None:
        """Drop ``key``, for example after the platform refused the token."""
        ...
