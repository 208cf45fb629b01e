"""The tool's public key set, fetched from its JWKS URL and cached.

A kid missing from the cache triggers one refetch, since a tool that rotated
its key publishes the new one under a new kid. Concurrent misses share a
single fetch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import jwt

from .state import PlatformState

logger = logging.getLogger(__name__)

FETCH_TIMEOUT = 5.0


class KeySetError(Exception):
    """The tool's key set could not be fetched or read."""


class ToolKeySet:
    """Keys of the tool, by kid, from ``jwks_url``.

    ``client`` is used for fetches when given (tests pass one with a mock
    transport); otherwise each fetch opens and closes its own client.
    """

    def __init__(
        self,
        jwks_url: str,
        state: PlatformState,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._jwks_url = jwks_url
        self._state = state
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = asyncio.Lock()

    async def find(self, kid: str) -> jwt.PyJWK | None:
        """The key named ``kid``, refetching the set once when unknown."""
        if kid in self._keys:
            return self._keys[kid]

        generation = self._state.tool_jwks_fetches
        async with self._lock:
            # Another request may have refetched while this one waited.
            if self._state.tool_jwks_fetches == generation:
                self._keys = await self._fetch()

        return self._keys.get(kid)

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        self._state.tool_jwks_fetches += 1
        logger.info("GET tool key set")
        try:
            if self._client is not None:
                response = await self._client.get(self._jwks_url)
            else:
                async with httpx.AsyncClient(timeout=FETCH_TIMEOUT) as client:
                    response = await client.get(self._jwks_url)
        except httpx.HTTPError as error:
            raise KeySetError(f"cannot fetch the tool key set: {error}") from error
        if response.status_code != 200:
            raise KeySetError(f"the tool key set answered {response.status_code}")

        try:
            document = response.json()
        except ValueError as error:
            raise KeySetError("the tool key set is not JSON") from error

        return _parse_key_set(document)


def _parse_key_set(document: Any) -> dict[str, jwt.PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeySetError('the tool key set must be {"keys": [...]}')

    keys: dict[str, jwt.PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            raise KeySetError("every key in the tool key set needs a kid")
        if any(member in jwk for member in ("d", "p", "q")):
            raise KeySetError("the tool key set publishes a private key member")
        if jwk.get("kty") != "RSA" or jwk.get("alg", "RS256") != "RS256":
            raise KeySetError(f"key {jwk['kid']!r} is not an RS256 RSA key")
        if jwk.get("use", "sig") != "sig":
            raise KeySetError(f"key {jwk['kid']!r} is not a signing key")
        try:
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256")
        except jwt.PyJWTError as error:
            raise KeySetError(f"key {jwk['kid']!r} is unusable: {error}") from error

    return keys


class SignerRefusedError(Exception):
    """A tool-signed JWT names no usable key; ``status`` is 400 or 401."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def signing_key_of(token: str, key_set: ToolKeySet, what: str) -> jwt.PyJWK:
    """The tool's key that signed ``token``, found by its header's kid.

    Only RS256 is accepted, and only a key the tool publishes under that kid
    (platforms such as Canvas look keys up by kid and try no other).
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise SignerRefusedError(f"{what} is not a JWT") from error

    if header.get("alg") != "RS256":
        raise SignerRefusedError(
            f"header alg must be 'RS256', got {header.get('alg')!r}"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignerRefusedError(
            "header kid is missing; keys are looked up by kid", 401
        )

    try:
        key = await key_set.find(kid)
    except KeySetError as error:
        raise SignerRefusedError(str(error), 401) from error
    if key is None:
        raise SignerRefusedError(f"kid {kid!r} is not in the tool's key set", 401)

    return key
