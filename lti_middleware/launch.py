"""Launch validation: the platform's answer to our login, checked in full.

LTI Security Framework 5.1.3 and LTI Core 5. Each refusal raises
:class:`LaunchError` with its own reason code. The steps run in order:
state, browser binding, JWT header, platform key and signature, issuer and
audience, times, nonce, deployment, version, message type, required claims,
target_link_uri. No ASGI here: inputs are the posted form and the cookies.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import claims as c
from . import jws
from .claim_shapes import check_claim_shapes, check_deep_linking_settings, shown
from .config import Registration, ToolConfig
from .exceptions import LaunchError, PlatformAuthError
from .login import BINDING_FIELD, LoginRecord, state_cookie_name
from .platform_keys import PlatformKeySets
from .stores.base import NonceStore

logger = logging.getLogger(__name__)

SUPPORTED_MESSAGE_TYPES = frozenset({c.RESOURCE_LINK_REQUEST, c.DEEP_LINKING_REQUEST})
MAX_ID_TOKEN_LENGTH = 64 * 1024
#: Deepest nesting of arrays and objects accepted in an id_token's claims.
MAX_CLAIM_DEPTH = 32
#: Longest kid accepted; longer ones are refused before any lookup.
MAX_KID_LENGTH = 256


#: Claim members that hold a URL the tool sends its access token to.
def state_key(state: str) -> str:
    return "state:" + state


def nonce_key(nonce: str) -> str:
    return "nonce:" + nonce


@dataclass(frozen=True)
class ValidatedLaunch:
    """A launch whose every check passed."""

    registration: Registration
    claims: dict[str, Any]
    state: str
    #: The claims as the platform signed them: JSON text, checked to parse
    #: to ``claims``; saved as it is instead of serialising them again.
    claims_json: str = ""


class LaunchValidator:
    """Checks launch requests against the configuration and the stores."""

    def __init__(
        self,
        *,
        config: ToolConfig,
        key_sets: PlatformKeySets,
        nonces: NonceStore,
        clock: Callable[[], float] = time.time,
        accept_deployment: Callable[[Registration, str], bool] | None = None,
    ) -> None:
        self._config = config
        self._key_sets = key_sets
        self._nonces = nonces
        self._clock = clock
        self._accept_deployment = accept_deployment
        self._registrations = {r.key: r for r in config.registrations}

    async def validate(
        self, form: Mapping[str, str], cookies: Mapping[str, str]
    ) -> ValidatedLaunch:
        """Validate a launch POST; raises LaunchError with the failed check."""
        state = form.get("state") or ""
        if form.get("error"):
            await self._discard_state(state)
            raise PlatformAuthError(
                form["error"][:200], (form.get("error_description") or "")[:500]
            )
        id_token = form.get("id_token")
        if not id_token:
            raise LaunchError("id_token_missing", "the form has no id_token field")
        if not state:
            raise LaunchError("state_missing", "the form has no state field")

        record = await self._consume_state(state)
        try:
            self._check_binding(state, record, cookies, form.get(BINDING_FIELD))
            registration = self._registration(record)
            claims, text = await self._check_token(
                id_token, registration, record, state
            )
        except LaunchError as error:
            # Name the platform in the refusal, for the admin reading the log.
            error.issuer, error.client_id = record.issuer, record.client_id
            raise

        return ValidatedLaunch(
            registration=registration, claims=claims, state=state, claims_json=text
        )

    async def _check_token(
        self, id_token: str, registration: Registration, record: LoginRecord, state: str
    ) -> tuple[dict[str, Any], str]:
        claims, text = await self._verify_signature(id_token, registration)
        try:
            check_issuer_and_audience(claims, registration)
            check_times(claims, self._config, self._clock())
            await self._consume_nonce(claims, state)
            self._check_deployment(claims, registration)
            check_message(claims, record)
        except LaunchError as error:
            deployment_id = claims.get(c.DEPLOYMENT_ID)
            if isinstance(deployment_id, str):
                error.deployment_id = deployment_id
            raise

        return claims, text

    async def _discard_state(self, state: str) -> None:
        # CASE-03: an error answer still ends the login; its state must not
        # serve a later launch.
        if state:
            await self._nonces.consume(state_key(state), self._config.nonce_memory)

    async def _consume_state(self, state: str) -> LoginRecord:
        found = await self._nonces.consume(state_key(state), self._config.nonce_memory)
        if found.status == "used":
            raise LaunchError(
                "state_already_used", "this state was already used for a launch"
            )
        if found.status != "ok" or found.value is None:
            raise LaunchError(
                "state_unknown", "the state was not issued here or has expired"
            )

        return LoginRecord.from_json(found.value)

    def _check_binding(
        self,
        state: str,
        record: LoginRecord,
        cookies: Mapping[str, str],
        stored: str | None,
    ) -> None:
        # The cookie, else the value the platform's storage gave back to our
        # page (lti_middleware.storage); both must equal the login's binding.
        name = state_cookie_name(state)
        value, source = cookies.get(name), f"the {name} cookie"
        if value is None and stored:
            value, source = stored, "the platform storage value"
        if value is None:
            raise LaunchError(
                "state_cookie_missing",
                f"the request carries no {name} cookie (third-party cookies blocked?)",
            )
        if not hmac.compare_digest(value.encode(), record.binding.encode()):
            raise LaunchError("state_mismatch", f"{source} does not match this state")

    def _registration(self, record: LoginRecord) -> Registration:
        registration = self._registrations.get((record.issuer, record.client_id))
        if registration is None:
            raise LaunchError(
                "unknown_client_id",
                f"registration {record.issuer!r} {record.client_id!r} was removed",
            )

        return registration

    async def _verify_signature(
        self, id_token: str, registration: Registration
    ) -> tuple[dict[str, Any], str]:
        if len(id_token) > MAX_ID_TOKEN_LENGTH:
            raise LaunchError(
                "token_malformed", f"id_token longer than {MAX_ID_TOKEN_LENGTH} bytes"
            )
        try:
            token = jws.parse(id_token)
        except jws.MalformedJWS as error:
            raise LaunchError("token_malformed", f"unreadable JWT: {error}") from error

        alg = token.header.get("alg")
        if alg not in self._config.allowed_algorithms:
            raise LaunchError(
                "alg_not_allowed",
                f"header alg {shown(alg)}; allowed: "
                f"{list(self._config.allowed_algorithms)}",
            )
        kid = token.header.get("kid")
        if kid is None or kid == "":
            raise LaunchError("kid_missing", "the JWT header has no kid")
        if not isinstance(kid, str):
            raise LaunchError(
                "token_malformed", f"the JWT header's kid is a {type(kid).__name__}"
            )
        if len(kid) > MAX_KID_LENGTH:
            raise LaunchError(
                "token_malformed", f"the kid is longer than {MAX_KID_LENGTH} characters"
            )

        key = await self._key_sets.key_for(registration.key_set_url, kid, alg)
        if not token.verify(key):
            raise LaunchError(
                "signature_invalid",
                f"signature does not verify with key {kid!r} of "
                f"{registration.key_set_url}",
            )

        return _json_object(token.payload)

    async def _consume_nonce(self, claims: Mapping[str, Any], state: str) -> None:
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise LaunchError("nonce_missing", "the id_token has no nonce claim")

        found = await self._nonces.consume(nonce_key(nonce), self._config.nonce_memory)
        if found.status == "used":
            raise LaunchError(
                "nonce_replayed", "this id_token's nonce was already used"
            )
        if found.status != "ok" or found.value is None:
            raise LaunchError(
                "nonce_unknown", "the id_token's nonce was not issued by this tool"
            )
        if not hmac.compare_digest(found.value.encode(), state.encode()):
            raise LaunchError(
                "nonce_mismatch", "the nonce was issued for a different login"
            )

    def _check_deployment(
        self, claims: Mapping[str, Any], registration: Registration
    ) -> None:
        deployment_id = claims.get(c.DEPLOYMENT_ID)
        if not isinstance(deployment_id, str) or not deployment_id:
            raise LaunchError(
                "deployment_id_missing", f"the id_token has no {c.DEPLOYMENT_ID} claim"
            )
        if deployment_id in registration.deployment_ids:
            return

        if self._accept_deployment and self._accept_deployment(
            registration, deployment_id
        ):
            logger.warning(
                "accepted unregistered deployment_id %r for %s",
                deployment_id,
                registration.name,
            )
            return
        raise LaunchError(
            "unknown_deployment",
            f"deployment_id {deployment_id!r} is not registered for issuer "
            f"{registration.issuer!r} client_id {registration.client_id!r}",
        )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but becomes inf, which no JSON writer takes back.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


# One decoder for every launch: json.loads with an option builds a new one
# per call.
_claims_decoder = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float
)


def _nested_deeper_than(value: object, limit: int) -> bool:
    """True when ``value`` holds arrays or objects more than ``limit`` deep."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)

    return False


def _json_object(payload: bytes) -> tuple[dict[str, Any], str]:
    """The payload's claims, and the payload as text."""
    try:
        # RFC 8259 has no NaN or Infinity; Python's parser would let them in,
        # and they break the app the first time it writes the claims as JSON.
        # RFC 7519 7.2: the claims are UTF-8. json.loads would also take
        # UTF-16 or UTF-32, and UTF-8-encoded surrogates ("surrogatepass").
        text = payload.decode("utf-8")
        claims = _claims_decoder.decode(text)
        # A lone surrogate ("\ud800") is valid JSON but not text: it would
        # crash the app the first time it writes the claim out. Past the
        # strict decode above only a \u escape can make one, so the costly
        # re-encoding runs only for payloads that hold one.
        if b"\\u" in payload:
            json.dumps(claims, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError) as error:
        raise LaunchError(
            "token_malformed", "the JWT payload holds invalid Unicode"
        ) from error
    except (ValueError, RecursionError) as error:
        raise LaunchError("token_malformed", "the JWT payload is not JSON") from error
    if not isinstance(claims, dict):
        raise LaunchError("token_malformed", "the JWT payload is not a JSON object")
    # Real claims nest four or five deep. Far deeper ones parse here but make
    # the app's own json.dumps fail with RecursionError; counting brackets
    # keeps the walk off the path of ordinary launches.
    if payload.count(b"{") + payload.count(b"[") > MAX_CLAIM_DEPTH and (
        _nested_deeper_than(claims, MAX_CLAIM_DEPTH)
    ):
        raise LaunchError(
            "token_malformed",
            f"the JWT payload nests more than {MAX_CLAIM_DEPTH} levels deep",
        )

    return claims, text


def check_issuer_and_audience(
    claims: Mapping[str, Any], registration: Registration
) -> None:
    """iss exact; aud holds our client_id; others trusted; azp when needed.

    OIDC Core 3.1.3.7: reject extra audiences the client does not trust; with
    several audiences azp must be present, and when present it must be us.
    """
    if claims.get("iss") != registration.issuer:
        raise LaunchError(
            "iss_mismatch",
            f"iss is {claims.get('iss')!r}, the login's issuer is "
            f"{registration.issuer!r}",
        )

    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(
        isinstance(a, str) for a in audiences
    ):
        raise LaunchError("claim_invalid", "aud must be a string or array of strings")
    if registration.client_id not in audiences:
        raise LaunchError(
            "aud_mismatch",
            f"aud {audiences!r} does not contain client_id {registration.client_id!r}",
        )

    others = [
        a
        for a in audiences
        if a != registration.client_id and a not in registration.trusted_audiences
    ]
    if others:
        raise LaunchError("aud_untrusted", f"aud also names {others!r}")
    azp = claims.get("azp")
    if azp is None and len(audiences) > 1:
        raise LaunchError("azp_required", f"aud has {len(audiences)} values, no azp")
    if azp is not None and azp != registration.client_id:
        raise LaunchError(
            "azp_mismatch",
            f"azp is {azp!r}, expected client_id {registration.client_id!r}",
        )


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    try:
        seconds = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds):
        raise LaunchError("claim_invalid", f"{name} must be a number of seconds")

    return seconds


def check_times(claims: Mapping[str, Any], config: ToolConfig, now: float) -> None:
    """exp, iat and nbf against ``now``, with one leeway for all three."""
    leeway = config.leeway
    exp = _number(claims, "exp")
    iat = _number(claims, "iat")
    nbf = _number(claims, "nbf")
    if exp is None:
        raise LaunchError("exp_missing", "the id_token has no exp claim")
    if iat is None:
        raise LaunchError("iat_missing", "the id_token has no iat claim")

    if now > exp + leeway:
        raise LaunchError(
            "token_expired",
            f"expired {now - exp:.0f}s ago (leeway {leeway:.0f}s)",
        )
    if iat > now + leeway:
        raise LaunchError(
            "iat_in_future",
            f"iat is {iat - now:.0f}s ahead of the tool's clock (leeway {leeway:.0f}s)",
        )
    if nbf is not None and nbf > now + leeway:
        raise LaunchError(
            "token_not_yet_valid",
            f"nbf is {nbf - now:.0f}s ahead of the tool's clock (leeway {leeway:.0f}s)",
        )

    if now - iat > config.max_token_age + leeway:
        raise LaunchError(
            "token_too_old",
            f"issued {now - iat:.0f}s ago; max_token_age is {config.max_token_age:.0f}s",
        )
    if exp - iat > config.max_token_lifetime:
        raise LaunchError(
            "token_lifetime_too_long",
            f"exp - iat is {exp - iat:.0f}s; max_token_lifetime is "
            f"{config.max_token_lifetime:.0f}s",
        )


def check_message(claims: Mapping[str, Any], record: LoginRecord) -> None:
    """Version, message type, required claims and target_link_uri (LTI Core 5)."""
    version = claims.get(c.VERSION)
    if version != c.LTI_VERSION:
        raise LaunchError(
            "version_unsupported", f"version is {version!r}, expected '1.3.0'"
        )
    message_type = claims.get(c.MESSAGE_TYPE)
    if not isinstance(message_type, str) or message_type not in SUPPORTED_MESSAGE_TYPES:
        raise LaunchError(
            "message_type_unsupported",
            f"message_type {message_type!r}; supported: "
            f"{sorted(SUPPORTED_MESSAGE_TYPES)}",
        )

    # Each message type has its own required claims: a deep-linking request
    # has deep_linking_settings and no resource_link (DL 2.0, 4.4).
    for name in c.REQUIRED_CLAIMS.get(message_type, ()):
        if name not in claims:
            raise LaunchError("claim_missing", f"the id_token has no {name} claim")
    check_claim_shapes(claims)
    if message_type == c.DEEP_LINKING_REQUEST:
        check_deep_linking_settings(claims)

    target = claims.get(c.TARGET_LINK_URI)
    if target != record.target_link_uri:
        logger.warning(
            "target_link_uri %r differs from the login's %r",
            target,
            record.target_link_uri,
        )
        raise LaunchError(
            "target_link_uri_mismatch",
            f"target_link_uri {target!r} differs from the login's "
            f"{record.target_link_uri!r}",
        )
