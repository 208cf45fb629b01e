"""Platform key sets: fetched, cached and refetched when a new kid appears.

OIDC Core 10.1.1: a platform rotates its keys by publishing a new ``kid``, so a
cache that lacks the token's kid is not final; we refetch once. To keep forged
kids from making us hammer the platform, refetches of one key set are shared by
concurrent requests and happen at most once per ``min_refetch_interval``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from .exceptions import LaunchError, ServiceError
from .transport import send_bounded, where

logger = logging.getLogger(__name__)

DEFAULT_TTL = 300.0
MAX_TTL = 24 * 3600.0
MIN_REFETCH_INTERVAL = 30.0
MAX_KEY_SET_BYTES = 256 * 1024
MAX_KEYS = 100
FETCH_TIMEOUT = 10.0
MIN_RSA_BITS = 2048

_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


@dataclass
class _KeySet:
    keys: dict[str, dict[str, Any]]
    fetched_at: float
    expires_at: float
    parsed: dict[tuple[str, str], jwt.PyJWK] = field(default_factory=dict)


def cache_lifetime(cache_control: str | None) -> float:
    """Seconds to keep a key set, from the response's Cache-Control.

    ``no-store`` and ``no-cache`` still allow reuse within the refetch interval:
    the kid-miss refetch is what keeps us current after a rotation.
    """
    if not cache_control:
        return DEFAULT_TTL
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return MIN_REFETCH_INTERVAL

    match = _MAX_AGE.search(lowered)
    if match is None:
        return DEFAULT_TTL
    return min(max(float(match.group(1)), MIN_REFETCH_INTERVAL), MAX_TTL)


def parse_key_set(document: bytes) -> dict[str, dict[str, Any]]:
    """Signing keys by kid from a JWKS document; keys without kid are skipped."""
    try:
        data = json.loads(document)
    except ValueError:
        # Often a login or maintenance page served in place of the key set.
        raise ValueError(
            f"the answer is not JSON (it starts {document[:40]!r})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document: no 'keys' array")

    keys: dict[str, dict[str, Any]] = {}
    duplicates: set[str] = set()
    for jwk in data["keys"][:MAX_KEYS]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if not _for_signatures(jwk):
            continue
        if jwk["kid"] in keys:
            duplicates.add(jwk["kid"])
        keys[jwk["kid"]] = jwk

    # Two keys under one kid: which one signed is a guess, so neither is used.
    for kid in duplicates:
        logger.warning("platform key set lists kid %r twice; ignoring it", kid)
        del keys[kid]
    return keys


def _for_signatures(jwk: dict[str, Any]) -> bool:
    """RFC 7517 4.2 and 4.3: ``use`` and ``key_ops`` may restrict a key."""
    if jwk.get("use", "sig") != "sig":
        return False
    operations = jwk.get("key_ops")
    return operations is None or (
        isinstance(operations, list) and "verify" in operations
    )


class PlatformKeySets:
    """Finds the platform key that signed an id_token."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        min_refetch_interval: float = MIN_REFETCH_INTERVAL,
        user_agent: str = "lti-middleware",
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self._http = http
        self._clock = clock
        self._min_refetch_interval = min_refetch_interval
        self._user_agent = user_agent
        self._timeout = timeout
        self._sets: dict[str, _KeySet] = {}
        self._fetches: dict[str, asyncio.Future[_KeySet | None]] = {}
        self._attempted: dict[str, float] = {}
        # Why each key set URL last failed, for the refusal; one per URL.
        self._failures: dict[str, str] = {}
        self.fetch_count = 0

    async def key_for(self, key_set_url: str, kid: str, alg: str) -> jwt.PyJWK:
        """The key named ``kid`` in the key set at ``key_set_url``, for ``alg``.

        Raises LaunchError ``unknown_kid`` when the set lacks it after at most
        one refetch, ``key_set_unavailable`` when no set could be fetched.
        """
        key_set = self._sets.get(key_set_url)
        now = self._clock()
        if key_set is None or now >= key_set.expires_at or kid not in key_set.keys:
            key_set = await self._refresh(key_set_url, key_set, now)

        jwk = key_set.keys.get(kid)
        if jwk is None:
            raise LaunchError(
                "unknown_kid",
                f"no key with kid {kid!r} in {key_set_url} "
                f"(it has {sorted(key_set.keys)})",
            )

        return self._parse(key_set, kid, jwk, alg)

    async def _refresh(self, url: str, current: _KeySet | None, now: float) -> _KeySet:
        if current is not None:
            if now - current.fetched_at < self._min_refetch_interval:
                return current
        # A fetch in flight is shared. Otherwise a failed fetch counts too: a
        # platform whose key set is down must not be asked again for every
        # forged kid.
        if url not in self._fetches:
            attempted = self._attempted.get(url)
            if attempted is not None and now - attempted < self._min_refetch_interval:
                if current is not None:
                    return current
                raise LaunchError(
                    "key_set_unavailable",
                    f"the key set at {url} could not be fetched moments ago "
                    f"({self._failures.get(url, 'unknown cause')}); retrying after "
                    f"{self._min_refetch_interval:.0f}s",
                )
            self._attempted[url] = now

        fresh = await self._fetch_once(url)
        if fresh is not None:
            return fresh
        if current is not None:
            # A network failure must not stop launches signed with keys we hold.
            return current
        raise LaunchError(
            "key_set_unavailable",
            f"could not fetch the key set at {url} "
            f"({self._failures.get(url, 'unknown cause')})",
        )

    async def _fetch_once(self, url: str) -> _KeySet | None:
        pending = self._fetches.get(url)
        if pending is not None:
            return await asyncio.shield(pending)

        future: asyncio.Future[_KeySet | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._fetches[url] = future
        try:
            result = await self._fetch(url)
            future.set_result(result)
            return result
        except BaseException as error:
            future.set_exception(error)
            future.exception()
            raise
        finally:
            del self._fetches[url]

    async def _fetch(self, url: str) -> _KeySet | None:
        self.fetch_count += 1
        logger.info("fetching platform key set %s", where(url))
        try:
            body, cache_control = await self._download(url)
            keys = parse_key_set(body)
        except (httpx.HTTPError, ServiceError, ValueError, RecursionError) as error:
            self._failures[url] = failure = _describe(error, self._timeout)
            logger.warning("platform key set %s unusable: %s", url, failure)
            return None

        self._failures.pop(url, None)
        now = self._clock()
        key_set = _KeySet(keys, now, now + cache_lifetime(cache_control))
        self._sets[url] = key_set
        return key_set

    async def _download(self, url: str) -> tuple[bytes, str | None]:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        request = self._http.build_request(
            "GET", url, headers=headers, timeout=self._timeout
        )
        response = await send_bounded(self._http, request, MAX_KEY_SET_BYTES)
        response.raise_for_status()

        return response.content, response.headers.get("cache-control")

    def _parse(
        self, key_set: _KeySet, kid: str, jwk: dict[str, Any], alg: str
    ) -> jwt.PyJWK:
        cached = key_set.parsed.get((kid, alg))
        if cached is not None:
            return cached

        # A JWK may lack "alg"; it is then usable with any allowed algorithm of
        # its key type. When present it must match the token's header.
        declared = jwk.get("alg")
        if declared is not None and declared != alg:
            raise LaunchError(
                "signature_invalid",
                f"key {kid!r} is for {declared} but the id_token says {alg}",
            )
        if jwk.get("kty") != _KTY_FOR_ALG.get(alg[:2]):
            raise LaunchError(
                "signature_invalid",
                f"key {kid!r} has kty {jwk.get('kty')!r}, unusable with {alg}",
            )
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            # The algorithm's own checks of a key object (an EC key's curve,
            # which PyJWK skips) run once here, not on every launch.
            key.Algorithm.prepare_key(key.key)
        except (jwt.PyJWTError, ValueError) as error:
            raise LaunchError(
                "signature_invalid", f"key {kid!r} in the platform key set is invalid"
            ) from error
        size = getattr(key.key, "key_size", MIN_RSA_BITS)
        if jwk.get("kty") == "RSA" and size < MIN_RSA_BITS:
            raise LaunchError(
                "signature_invalid",
                f"key {kid!r} is RSA with {size} bits; at least {MIN_RSA_BITS} needed",
            )

        key_set.parsed[(kid, alg)] = key
        return key


def _describe(error: Exception, timeout: float) -> str:
    """What went wrong with a key set fetch, in words an admin can act on."""
    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g}s ([tool] http_timeout)"
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} from the platform"
    if isinstance(error, httpx.HTTPError):
        return f"{type(error).__name__}: {error}"[:200]
    if isinstance(error, RecursionError):
        return "the key set is nested too deeply"
    return str(error)[:200]
