"""Client assertions: the JWT a tool signs to ask for a service token.

RFC 7523 section 2.2, as LTI Security Framework 4.1 profiles it: ``iss`` and
``sub`` are both the client_id the platform issued, ``aud`` names the token
endpoint (or the audience the platform publishes for it), and the header names
the signing key by ``kid``. Pure functions: no clock, no HTTP.
"""

from __future__ import annotations

import math
import secrets

import jwt

from .config import Registration
from .keys import ToolKey

__all__ = ["DEFAULT_ASSERTION_LIFETIME", "assertion_audience", "build_client_assertion"]

#: Seconds a client assertion stays valid; short, since it is used at once.
DEFAULT_ASSERTION_LIFETIME = 300.0

_JTI_BYTES = 24


def assertion_audience(registration: Registration) -> str:
    """The ``aud`` for ``registration``'s token requests, as one string.

    The platform's declared token audience when it has one (Brightspace),
    else the token URL character for character. Never an array: Brightspace
    answers 500 to an ``aud`` array with more than one value.
    """
    return registration.token_audience or registration.token_url


def build_client_assertion(
    *,
    registration: Registration,
    key: ToolKey,
    now: float,
    lifetime: float = DEFAULT_ASSERTION_LIFETIME,
    jti: str | None = None,
) -> str:
    """Sign a client assertion for ``registration`` with ``key``.

    ``now`` is the current Unix time in seconds; ``exp`` is ``lifetime``
    seconds after ``iat``. ``jti`` defaults to a fresh random value, so no two
    assertions share one. Raises ValueError for a lifetime that is not a
    positive number of seconds.
    """
    if not math.isfinite(lifetime) or lifetime <= 0:
        raise ValueError(f"lifetime must be a positive number of seconds: {lifetime}")

    issued_at = int(now)
    claims = {
        "iss": registration.client_id,
        "sub": registration.client_id,
        "aud": assertion_audience(registration),
        "iat": issued_at,
        "exp": issued_at + max(1, int(lifetime)),
        "jti": jti or secrets.token_urlsafe(_JTI_BYTES),
    }

    # The key object is already parsed; PyJWT signs with it directly.
    return jwt.encode(
        claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid}
    )
