"""OAuth 2 access tokens for platform services (LTI Security Framework 4.1).

The tool proves who it is with a signed client assertion and gets back a bearer
token for a set of scopes. Tokens are cached per registration and scope set
until shortly before they expire, and concurrent callers that need the same
token share one request: platforms such as Canvas rate-limit their token
endpoint. Workers sharing a store also take the store's lock around a request,
so one asks and the others read its token from the cache. Access tokens and
assertions are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import httpx

from .assertion import assertion_audience, build_client_assertion
from .claims import CLIENT_ASSERTION_TYPE
from .config import Registration
from .exceptions import ServiceError, TokenRequestError
from .keys import KeyProvider
from .retries import retry_after
from .stores import AccessTokenStore, MemoryAccessTokenStore
from .transport import (
    platform_text,
    scrubbed,
    scrubbed_error,
    secrets_of,
    send_bounded,
    where,
)

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "DEFAULT_USER_AGENT",
    "AccessTokenClient",
    "token_cache_key",
]

logger = logging.getLogger(__name__)

#: Seconds a token lives when the platform's answer has no ``expires_in``.
DEFAULT_EXPIRES_IN = 3600.0
#: A cached token is dropped this long before it expires: at most 60 seconds,
#: at most a tenth of its lifetime.
MAX_EXPIRY_MARGIN = 60.0
EXPIRY_MARGIN_FRACTION = 0.1
#: Seconds the cross-worker token lock lasts if its holder dies mid-request;
#: longer than the longest token request (http_timeout is at most 60 s).
TOKEN_LOCK_TTL = 75.0
#: The platform's error body is kept up to this many characters.
MAX_BODY_CHARS = 4096
#: Largest token endpoint answer read, in bytes; a real one is well under 4 KB.
MAX_TOKEN_ANSWER_BYTES = 64 * 1024
DEFAULT_USER_AGENT = "lti-middleware"

_GRANT_TYPE = "client_credentials"
_SECRET_MEMBERS = ("access_token", "refresh_token", "id_token")

Clock = Callable[[], float]


class _Grant(NamedTuple):
    access_token: str
    expires_at: float


def _normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    # A lone string would otherwise be taken apart character by character.
    values = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    for scope in values:
        if not isinstance(scope, str) or not scope or scope != "".join(scope.split()):
            raise ValueError(
                f"a scope must be a non-empty string without spaces: {scope!r}"
            )
    if not values:
        raise ValueError("at least one scope is needed for a token request")

    return tuple(sorted(set(values)))


def token_cache_key(registration: Registration, scopes: Iterable[str]) -> str:
    """The store key for ``registration``'s token for ``scopes``.

    Depends on the issuer, the client_id and the sorted set of scopes, so a
    token for {score} is never reused for {lineitem}. Hashed, so the key is
    short and safe for any store.
    """
    material = json.dumps(
        [registration.issuer, registration.client_id, list(_normalize_scopes(scopes))]
    )

    return "lti-token:" + hashlib.sha256(material.encode("utf-8")).hexdigest()


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "..."


_SECRET_TEXT = re.compile(
    r"((?:access|refresh|id)_token)([\"']?\s*[:=]\s*[\"']?)[^\"'&,;\s}\]]+"
)


def _redacted(body: Any) -> str:
    """A 2xx answer we cannot use may still hold a live token: keep it out.

    JSON objects lose their token members; any other text (a form-encoded
    answer, a list, HTML) has every ``*_token=value`` or ``"*_token": "value"``
    replaced, whatever its shape.
    """
    if isinstance(body, dict):
        body = {
            name: "[redacted]" if name in _SECRET_MEMBERS else value
            for name, value in body.items()
        }
    text = body if isinstance(body, str) else json.dumps(body)

    return _truncate(_SECRET_TEXT.sub(r"\1\2[redacted]", text))


def _hint(registration: Registration, status: int, body: str) -> str:
    """What to check when the token endpoint refuses, from the OAuth error code."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    code = answer.get("error") if isinstance(answer, dict) else None

    if code == "invalid_client":
        return (
            "the platform did not accept the tool's client assertion: check that it "
            f"has the tool's JWKS URL or public key for client_id "
            f"{registration.client_id!r} and that the key's kid is published"
        )
    if code == "invalid_scope":
        return (
            "the platform refused the scopes asked for: enable the service for the "
            "tool on the platform"
        )
    if code == "invalid_grant":
        return (
            "the platform refused the assertion: check the clocks of tool and "
            "platform and the assertion audience "
            f"{assertion_audience(registration)!r} (token_audience)"
        )
    if code == "unauthorized_client":
        return "the platform does not let this client_id request service tokens"
    if status >= 500:
        return (
            "the token endpoint failed; if the platform publishes a token audience "
            "that differs from its token URL (Brightspace does), set token_audience"
        )

    return "check the registration's token_url and client_id"


def _expires_in(value: Any) -> float | None:
    if value is None:
        return DEFAULT_EXPIRES_IN
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None

    return float(value) if math.isfinite(value) else None


_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _read_answer(answer: Any) -> tuple[str, float]:
    """The access token and its lifetime in seconds from a token response.

    Raises ValueError saying what makes the answer unusable.
    """
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")

    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the answer has no access_token")
    # RFC 6750 2.1: a bearer token is b64token characters; anything else
    # could not be sent in a header (or would smuggle one in).
    if not _B64TOKEN.fullmatch(token):
        raise ValueError("the access_token has characters a bearer token cannot")
    # RFC 6749 5.1: token_type is case-insensitive; bearer is all we speak.
    token_type = answer.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ValueError(f"token_type is {token_type!r}, expected 'Bearer'")
    lifetime = _expires_in(answer.get("expires_in"))
    if lifetime is None:
        raise ValueError(f"expires_in is {answer.get('expires_in')!r}, not seconds")

    return token, lifetime


class AccessTokenClient:
    """Gets, caches and shares service access tokens.

    ``store`` caches tokens (in this process's memory by default; give a
    shared store to several workers); ``clock`` returns Unix time in seconds;
    ``user_agent`` is sent with every request, as Canvas asks.
    """

    def __init__(
        self,
        *,
        key_provider: KeyProvider,
        http: httpx.AsyncClient,
        store: AccessTokenStore | None = None,
        clock: Clock = time.time,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self._key_provider = key_provider
        self._http = http
        self._store = (
            store if store is not None else MemoryAccessTokenStore(clock=clock)
        )
        self._clock = clock
        self._user_agent = user_agent
        # Token requests in flight, by cache key; each entry leaves when its
        # request ends, so the map holds at most one per key being fetched.
        self._flights: dict[str, asyncio.Task[str]] = {}

    @property
    def store(self) -> AccessTokenStore:
        """Where tokens are cached."""
        return self._store

    @property
    def user_agent(self) -> str:
        """The User-Agent sent to the platform."""
        return self._user_agent

    async def get_token(self, registration: Registration, scopes: Iterable[str]) -> str:
        """An access token of ``registration`` for ``scopes``.

        Served from the cache while it has more than a safety margin left;
        otherwise requested, once for all concurrent callers. Raises
        TokenRequestError when the platform refuses or answers something
        unusable, and ServiceError when the request cannot be sent.
        """
        scope_list = _normalize_scopes(scopes)
        key = token_cache_key(registration, scope_list)
        cached = await self._cached(key)
        if cached is not None:
            return cached

        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.create_task(self._fetch(registration, scope_list, key))
            self._flights[key] = flight
            flight.add_done_callback(partial(self._land, key))

        # Shielded: a caller that gives up does not cancel the others' request.
        return await asyncio.shield(flight)

    async def invalidate(
        self, registration: Registration, scopes: Iterable[str], token: str
    ) -> None:
        """Drop the cached token for ``scopes`` if it is still ``token``.

        Call it when the platform refused ``token``. A newer token that another
        caller has already fetched is left in place.
        """
        key = token_cache_key(registration, scopes)
        if await self._cached(key, fresh_only=False) == token:
            await self._store.delete(key)

    def _land(self, key: str, flight: asyncio.Task[str]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            # Mark the outcome as seen even if every caller gave up waiting.
            flight.exception()

    async def _cached(self, key: str, *, fresh_only: bool = True) -> str | None:
        raw = await self._store.get(key)
        if raw is None:
            return None

        try:
            entry = json.loads(raw)
            token, expires_at = entry["access_token"], float(entry["expires_at"])
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(token, str) or (fresh_only and expires_at <= self._clock()):
            return None

        return token

    async def _fetch(
        self, registration: Registration, scopes: tuple[str, ...], key: str
    ) -> str:
        # Another process, or a request that just ended, may have filled it.
        cached = await self._cached(key)
        if cached is not None:
            return cached

        # One request across every worker sharing the store: the others wait
        # for the lock, then find the new token in the cache.
        async with self._store.lock(key, ttl=TOKEN_LOCK_TTL):
            cached = await self._cached(key)
            if cached is not None:
                return cached

            grant = await self._request(registration, scopes)
            ttl = grant.expires_at - self._clock()
            if ttl > 0:
                entry = {
                    "access_token": grant.access_token,
                    "expires_at": grant.expires_at,
                }
                await self._store.put(key, json.dumps(entry), ttl)

        return grant.access_token

    async def _request(
        self, registration: Registration, scopes: tuple[str, ...]
    ) -> _Grant:
        key = await self._key_provider.signing_key()
        now = self._clock()
        form = {
            "grant_type": _GRANT_TYPE,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": build_client_assertion(
                registration=registration, key=key, now=now
            ),
            "scope": " ".join(scopes),
        }

        url = registration.token_url
        logger.info(
            "token request: POST %s for %s, scopes %s",
            where(url),
            registration.name,
            form["scope"],
        )
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        request = self._http.build_request("POST", url, data=form, headers=headers)
        try:
            response = await send_bounded(self._http, request, MAX_TOKEN_ANSWER_BYTES)
        except httpx.HTTPError as error:
            cause = scrubbed_error(error)
            raise ServiceError(
                f"token request for {registration.name!r} could not be sent: "
                f"POST {url}: {type(error).__name__}: {cause}"
            ) from cause
        except ServiceError as error:
            raise ServiceError(
                f"token request for {registration.name!r}: {error}"
            ) from error

        if not response.is_success:
            body = _truncate(platform_text(response, len(response.text)))
            hint = _hint(registration, response.status_code, body)
            raise TokenRequestError(
                method="POST",
                url=url,
                status=response.status_code,
                body=body,
                what=f"token request for {registration.name!r} ({hint})",
                retry_after=retry_after(response),
            )

        return self._parse(registration, scopes, response, now)

    def _parse(
        self,
        registration: Registration,
        scopes: tuple[str, ...],
        response: httpx.Response,
        now: float,
    ) -> _Grant:
        try:
            answer: Any = response.json()
        except ValueError:
            raise self._unusable(
                registration,
                response,
                "the answer is not JSON",
                _redacted(response.text),
            ) from None
        try:
            token, lifetime = _read_answer(answer)
        except ValueError as error:
            raise self._unusable(
                registration, response, str(error), _redacted(answer)
            ) from None

        granted = answer.get("scope")
        if isinstance(granted, str) and not set(scopes) <= set(granted.split()):
            # The platform may narrow the grant; calls needing the rest will fail.
            logger.warning(
                "token for %s grants scopes %s, asked for %s",
                registration.name,
                granted,
                " ".join(scopes),
            )
        margin = min(MAX_EXPIRY_MARGIN, EXPIRY_MARGIN_FRACTION * lifetime)

        return _Grant(token, now + lifetime - margin)

    @staticmethod
    def _unusable(
        registration: Registration, response: httpx.Response, problem: str, body: str
    ) -> TokenRequestError:
        return TokenRequestError(
            method="POST",
            url=registration.token_url,
            status=response.status_code,
            body=_truncate(scrubbed(body, *secrets_of(response.request))),
            what=f"token request for {registration.name!r} ({problem})",
        )
