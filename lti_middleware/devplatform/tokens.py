"""The OAuth 2 token endpoint: client credentials with a JWT assertion.

LTI Security Framework 4.1 and RFC 7523: the tool proves itself with a JWT
signed by a key in its published key set. The checks are strict on purpose,
as a judge of the tool: header ``kid`` in the tool's key set, RS256,
``iss`` = ``sub`` = client_id, ``aud`` the token audience as one value,
``iat`` present, ``exp`` in the future and at most five minutes after
``iat``, and a ``jti`` never seen before.

Errors are RFC 6749 5.2 JSON bodies. ``invalid_client`` comes with 401 when
the signature could not be verified (unknown kid, bad signature, key set
unreachable) and with 400 when a verified assertion carries wrong claims;
an ``aud`` array of two or more values is refused with 400, as Brightspace
does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse

from .. import claims
from .forms import FormError, read_form
from .settings import PlatformSettings
from .state import PlatformState, TokenRequestRecord
from .toolkeys import SignerRefusedError, ToolKeySet, signing_key_of

logger = logging.getLogger(__name__)

MAX_ASSERTION_LIFETIME = 300
CLOCK_SKEW = 60
# RFC 6749 5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_DECODE_OPTIONS: jwt.types.Options = {
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "enforce_minimum_key_length": True,
}


class TokenRequestError(Exception):
    """A token request refused with an RFC 6749 error code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


async def issue_token(
    request: Request,
    settings: PlatformSettings,
    state: PlatformState,
    key_set: ToolKeySet,
) -> JSONResponse:
    """Answer one token request, and record it for ``/stats``."""
    scopes: tuple[str, ...] = ()
    try:
        form = await _read_token_form(request)
        scopes = tuple(s for s in form.get("scope", "").split(" ") if s)
        await verify_assertion(form, settings, state, key_set)
        granted = check_scopes(form.get("scope", ""), settings.service_scopes)
    except TokenRequestError as error:
        logger.info("token request refused: %s", error.error)
        state.token_requests.append(TokenRequestRecord(scopes, False, error.error))
        body = {"error": error.error, "error_description": error.description}
        return JSONResponse(body, status_code=error.status, headers=_NO_STORE)

    lifetime = settings.access_token_lifetime
    token = state.issue_access_token(granted, expires_at=settings.clock() + lifetime)
    state.token_requests.append(TokenRequestRecord(scopes, True))
    granted_body: dict[str, str | int] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(sorted(granted)),
    }

    return JSONResponse(granted_body, headers=_NO_STORE)


async def _read_token_form(request: Request) -> dict[str, str]:
    try:
        form = await read_form(request)
    except FormError as error:
        raise TokenRequestError("invalid_request", str(error)) from error

    if form.get("grant_type") != "client_credentials":
        raise TokenRequestError(
            "unsupported_grant_type", "grant_type must be 'client_credentials'"
        )
    if form.get("client_assertion_type") != claims.CLIENT_ASSERTION_TYPE:
        raise TokenRequestError(
            "invalid_request",
            f"client_assertion_type must be {claims.CLIENT_ASSERTION_TYPE!r}",
        )
    if not form.get("client_assertion"):
        raise TokenRequestError("invalid_request", "client_assertion is missing")

    return form


def check_scopes(scope: str, allowed: Iterable[str]) -> frozenset[str]:
    """The requested scopes, each one granted to the tool; else ``invalid_scope``.

    RFC 6749 3.3: scopes are separated by single spaces and compared
    exactly, so ``lineitem.readonly`` never implies ``lineitem``.
    """
    requested = scope.split(" ")
    if not scope or "" in requested:
        raise TokenRequestError(
            "invalid_scope", "scope must be one or more scopes separated by one space"
        )
    unknown = sorted(set(requested) - set(allowed))
    if unknown:
        raise TokenRequestError(
            "invalid_scope", f"scope {unknown[0]!r} is not granted to this tool"
        )

    return frozenset(requested)


async def verify_assertion(
    form: dict[str, str],
    settings: PlatformSettings,
    state: PlatformState,
    key_set: ToolKeySet,
) -> dict[str, Any]:
    """The verified claims of the client assertion; raises TokenRequestError."""
    assertion = form["client_assertion"]
    key = await _find_key(assertion, key_set)
    try:
        payload = jwt.decode(
            assertion, key, algorithms=["RS256"], options=_DECODE_OPTIONS
        )
    except jwt.InvalidSignatureError as error:
        raise _invalid_client("the signature does not verify", 401) from error
    except jwt.PyJWTError as error:
        raise _invalid_client(f"the assertion cannot be read: {error}") from error

    _check_parties(payload, settings)
    now = settings.clock()
    _check_times(payload, now)

    jti = payload.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _invalid_client("jti is missing")
    if not state.remember_jti(jti, until=payload["exp"] + CLOCK_SKEW, now=now):
        raise _invalid_client("jti was already used; each assertion is single use")

    return payload


async def _find_key(assertion: str, key_set: ToolKeySet) -> jwt.PyJWK:
    try:
        return await signing_key_of(assertion, key_set, "client_assertion")
    except SignerRefusedError as error:
        raise _invalid_client(str(error), error.status) from error


def _check_parties(payload: dict[str, Any], settings: PlatformSettings) -> None:
    client_id = settings.client_id
    if payload.get("iss") != client_id or payload.get("sub") != client_id:
        raise _invalid_client(f"iss and sub must both be the client_id {client_id!r}")

    expected = settings.expected_token_audience
    aud = payload.get("aud")
    if isinstance(aud, list):
        if len(aud) != 1:
            raise _invalid_client(
                f"aud must be the single value {expected!r}, not a list of {len(aud)}"
            )
        aud = aud[0]
    if aud != expected:
        raise _invalid_client(f"aud must be {expected!r}, got {aud!r}")


def _check_times(payload: dict[str, Any], now: float) -> None:
    iat, exp = _seconds(payload, "iat"), _seconds(payload, "exp")
    if exp <= now:
        raise _invalid_client("the assertion has expired")
    if iat > now + CLOCK_SKEW:
        raise _invalid_client("iat is in the future")
    if exp - iat > MAX_ASSERTION_LIFETIME:
        raise _invalid_client(
            f"exp - iat is {exp - iat:g} s; at most {MAX_ASSERTION_LIFETIME} allowed"
        )

    if "nbf" in payload and _seconds(payload, "nbf") > now + CLOCK_SKEW:
        raise _invalid_client("nbf is in the future")


def _seconds(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_client(f"{name} must be a number of seconds")

    return float(value)


def _invalid_client(description: str, status: int = 400) -> TokenRequestError:
    return TokenRequestError("invalid_client", description, status)
