"""Errors raised by lti_middleware.

Every error derives from :class:`LTIError`::

    LTIError
    ├── ConfigurationError         bad settings, raised at start-up
    ├── LaunchError                a login or launch was refused (reason code, status)
    │   └── PlatformAuthError      the platform answered the login with an OIDC error
    ├── StoreError                 a state, launch or token store cannot be used
    ├── ScoreError                 a score or line item failed local validation
    ├── DeepLinkingError           a content item or response failed local checks
    │                              (in lti_middleware.content_items)
    └── ServiceError               a call to a platform service could not be made
        ├── ScopeNotGrantedError   the launch did not grant the scope the call needs
        ├── PaginationError        a paged listing looped or passed its page cap
        ├── ServiceUnavailableError
        │                          retries of a call safe to repeat ran out; try later
        └── PlatformResponseError  a service endpoint answered with a non-2xx status
            └── TokenRequestError  the token endpoint refused the token request

Messages say what was expected and what came. They never contain a token, a key,
or personal data from claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scores import Score

__all__ = [
    "REASONS",
    "ConfigurationError",
    "LTIError",
    "LaunchError",
    "PaginationError",
    "PlatformAuthError",
    "PlatformResponseError",
    "Reason",
    "ScopeNotGrantedError",
    "ScoreError",
    "ServiceError",
    "ServiceUnavailableError",
    "StoreError",
    "TokenRequestError",
]


class LTIError(Exception):
    """Root of every error this package raises."""


class ConfigurationError(LTIError):
    """Settings are missing or invalid; names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class Reason:
    """What a reason code means to the person who meets it."""

    status: int
    summary: str
    hint: str


_COOKIES = (
    "The browser did not send the tool's state cookie. Browsers that block "
    "third-party cookies (Safari, Chrome with tracking protection) do this when "
    "the tool runs in an iframe. Open the tool in a new window, or allow "
    "third-party cookies for the tool's site."
)
_RELAUNCH = "Go back to the course and launch the tool again."
_CHECK_REGISTRATION = (
    "Compare the platform's registration of this tool with the tool's "
    "configuration (issuer, client_id, URLs)."
)

#: Stable reason codes for refused logins and launches: status, meaning, advice.
REASONS: dict[str, Reason] = {
    # Login initiation (LTI Security Framework 5.1.1).
    "login_parameter_missing": Reason(
        400, "A login parameter the spec requires is missing.", _CHECK_REGISTRATION
    ),
    "login_parameter_invalid": Reason(
        400, "A login parameter is malformed or too long.", _CHECK_REGISTRATION
    ),
    "unknown_issuer": Reason(
        400, "No registration has this issuer.", _CHECK_REGISTRATION
    ),
    "unknown_client_id": Reason(
        400, "The issuer is known but not with this client_id.", _CHECK_REGISTRATION
    ),
    "ambiguous_registration": Reason(
        400,
        "Several registrations share this issuer and the login named no client_id.",
        "Configure the platform to send client_id with the login request.",
    ),
    "target_link_uri_not_allowed": Reason(
        400,
        "The login asked to go to a URL outside this tool.",
        "Set the link's target to a URL of this tool (see allowed_target_origins).",
    ),
    # The answer from the platform's auth endpoint.
    "platform_error": Reason(
        400,
        "The platform could not complete the login and sent an error instead.",
        "Likely causes: the login expired or was reused, the platform's session "
        "cookie was blocked in the iframe, or the tool's auth URL is wrong. "
        + _RELAUNCH,
    ),
    "id_token_missing": Reason(
        400, "The launch request carries no id_token.", _RELAUNCH
    ),
    "state_missing": Reason(400, "The launch request carries no state.", _RELAUNCH),
    "state_unknown": Reason(
        400,
        "The launch's state was never issued here or has expired.",
        "Relaunch from the course. If this persists, every worker must share "
        "one state store (see the Redis store).",
    ),
    "state_already_used": Reason(
        400,
        "This launch was already used; a page refresh sends it again.",
        _RELAUNCH,
    ),
    "state_cookie_missing": Reason(401, "The state cookie is missing.", _COOKIES),
    "state_mismatch": Reason(
        401,
        "The state cookie does not belong to this launch.",
        "The launch may have been started in another browser. " + _RELAUNCH,
    ),
    # The id_token (LTI Security Framework 5.1.3).
    "token_malformed": Reason(
        400, "The id_token is not a well-formed JWT.", _CHECK_REGISTRATION
    ),
    "alg_not_allowed": Reason(
        401, "The id_token's algorithm is not allowed.", _CHECK_REGISTRATION
    ),
    "kid_missing": Reason(
        401, "The id_token's header names no key (kid).", _CHECK_REGISTRATION
    ),
    "iss_mismatch": Reason(
        401, "The id_token's issuer differs from the login's.", _CHECK_REGISTRATION
    ),
    "aud_mismatch": Reason(
        401, "The id_token is not addressed to this tool.", _CHECK_REGISTRATION
    ),
    "aud_untrusted": Reason(
        401,
        "The id_token names audiences this tool does not trust.",
        "List them in the registration's trusted_audiences if they are expected.",
    ),
    "azp_required": Reason(
        401,
        "The id_token has several audiences but no azp.",
        _CHECK_REGISTRATION,
    ),
    "azp_mismatch": Reason(
        401, "The id_token's azp is not this tool's client_id.", _CHECK_REGISTRATION
    ),
    "key_set_unavailable": Reason(
        502,
        "The platform's key set could not be fetched.",
        "Check the registration's key_set_url and that the platform is reachable.",
    ),
    "unknown_kid": Reason(
        401,
        "The platform's key set has no key with the id_token's kid.",
        "Check the registration's key_set_url points at this platform's keys.",
    ),
    "signature_invalid": Reason(
        401, "The id_token's signature does not verify.", _CHECK_REGISTRATION
    ),
    "exp_missing": Reason(401, "The id_token has no exp.", _CHECK_REGISTRATION),
    "iat_missing": Reason(401, "The id_token has no iat.", _CHECK_REGISTRATION),
    "token_expired": Reason(
        401,
        "The id_token has expired.",
        "Check the clocks of the platform and the tool. " + _RELAUNCH,
    ),
    "iat_in_future": Reason(
        401,
        "The id_token was issued in the future.",
        "Check the clocks of the platform and the tool (NTP), or raise leeway.",
    ),
    "token_not_yet_valid": Reason(
        401,
        "The id_token's nbf is in the future.",
        "Check the clocks of the platform and the tool (NTP), or raise leeway.",
    ),
    "token_too_old": Reason(401, "The id_token was issued too long ago.", _RELAUNCH),
    "token_lifetime_too_long": Reason(
        401,
        "The id_token's lifetime (exp - iat) exceeds the allowed maximum.",
        "Raise max_token_lifetime if the platform issues long-lived tokens.",
    ),
    "nonce_missing": Reason(401, "The id_token has no nonce.", _CHECK_REGISTRATION),
    "nonce_mismatch": Reason(
        401, "The id_token's nonce is not the one this login issued.", _RELAUNCH
    ),
    "nonce_unknown": Reason(
        401, "The id_token's nonce was never issued by this tool.", _RELAUNCH
    ),
    "nonce_replayed": Reason(
        401, "The id_token was already used for a launch.", _RELAUNCH
    ),
    "deployment_id_missing": Reason(
        401, "The id_token has no deployment_id.", _CHECK_REGISTRATION
    ),
    "unknown_deployment": Reason(
        403,
        "The deployment is not registered with this tool.",
        "Add the deployment_id to the registration's deployment_ids.",
    ),
    "version_unsupported": Reason(
        400, "The launch is not LTI version 1.3.0.", _CHECK_REGISTRATION
    ),
    "message_type_unsupported": Reason(
        400,
        "The tool does not handle this LTI message type.",
        "Check which placements the tool is installed in on the platform.",
    ),
    "claim_missing": Reason(
        400, "A claim this message type requires is missing.", _CHECK_REGISTRATION
    ),
    "claim_invalid": Reason(
        400, "A claim has the wrong type or form.", _CHECK_REGISTRATION
    ),
    "target_link_uri_mismatch": Reason(
        401,
        "The id_token's target_link_uri differs from the login's.",
        _RELAUNCH,
    ),
    "store_unavailable": Reason(
        503,
        "The tool's state store is unavailable, so the launch cannot be checked.",
        "Try again in a moment. Administrators: check the store named in the log "
        "(for example that Redis is reachable).",
    ),
    # Requests after the launch.
    "launch_not_found": Reason(
        401,
        "This page's launch is unknown or has expired.",
        _RELAUNCH,
    ),
    "request_too_large": Reason(
        413, "The request body is larger than allowed.", _RELAUNCH
    ),
    "request_malformed": Reason(
        400,
        "The request is not a form this route accepts.",
        "LTI routes take application/x-www-form-urlencoded forms or a query string.",
    ),
    "method_not_allowed": Reason(
        405, "This LTI route does not take that HTTP method.", _CHECK_REGISTRATION
    ),
}


class LaunchError(LTIError):
    """A login or launch was refused.

    ``reason`` is a stable code from :data:`REASONS`; ``status`` the HTTP status
    to answer with; ``detail`` what was expected and what came. ``issuer``,
    ``client_id`` and ``deployment_id`` are filled in once they are known.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unregistered reason code {reason!r}")
        self.reason = reason
        self.detail = detail
        self.issuer: str | None = None
        self.client_id: str | None = None
        self.deployment_id: str | None = None
        super().__init__(f"{reason}: {detail}")

    @property
    def status(self) -> int:
        """HTTP status for this refusal."""
        return REASONS[self.reason].status

    @property
    def summary(self) -> str:
        """One sentence on what failed."""
        return REASONS[self.reason].summary

    @property
    def hint(self) -> str:
        """What the person who meets the error can do."""
        return REASONS[self.reason].hint


class PlatformAuthError(LaunchError):
    """The platform's auth endpoint sent an OIDC error instead of an id_token."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description
        detail = f"the platform answered {code!r}"
        if description:
            detail += f": {description}"
        super().__init__("platform_error", detail)


class StoreError(LTIError):
    """A store could not be reached or answered wrongly; names the store.

    Store plugins raise it (``from`` the backend's error) so that the
    middleware can fail closed with a 503 rather than a 500. ``store`` is a
    short public name ("redis nonce store"); the message, which may name the
    server, goes to the log only.
    """

    def __init__(self, message: str, *, store: str = "state store") -> None:
        self.store = store
        super().__init__(message)


class ScoreError(LTIError, ValueError):
    """A score or line item is invalid before anything is sent."""


class ServiceError(LTIError):
    """A platform service call could not be made or was refused.

    ``retryable`` is True only on errors whose call may succeed later and is
    safe to repeat unchanged (:class:`ServiceUnavailableError`).
    """

    retryable: bool = False


class ScopeNotGrantedError(ServiceError):
    """The launch's service claim does not grant the scope an operation needs."""

    reason = "scope_not_granted"

    def __init__(self, scope: str, granted: list[str]) -> None:
        self.scope = scope
        self.granted = list(granted)
        super().__init__(
            f"scope_not_granted: the operation needs {scope} but the launch "
            f"granted {self.granted or 'no scopes'}; enable the service for the "
            "tool on the platform"
        )


class PaginationError(ServiceError):
    """A paged listing looped or exceeded its page cap; no partial result."""


_TRY_LATER = "Try the call again later; it is safe to repeat."
_POST_AGAIN = (
    "The score may not have been recorded: post it again later (this error "
    "keeps it as .score, with .lineitem). Repeating it is safe: the platform "
    "keeps one score per user and timestamp, so a repeat replaces it."
)


class ServiceUnavailableError(ServiceError):
    """A call that is safe to repeat kept failing in a way that may pass.

    Raised when the tries allowed for a 429, 502, 503 or 504 answer, a
    timeout or a connection failure are spent, or the next would start past
    the retry deadline. Carries ``method``; ``endpoint`` (host and path, no
    query); the platform's ``issuer``; ``attempts`` (tries of the call);
    ``status`` and ``body`` of the last answer (None and "" when the last
    try got no answer); ``failure``, the last failure in words;
    ``retry_after``, the seconds the platform last asked to wait, or None.
    A score post's error also keeps the ``score`` and its ``lineitem`` URL,
    so nothing is lost. The cause is the last failure.
    """

    retryable = True

    def __init__(
        self,
        *,
        what: str,
        method: str,
        endpoint: str,
        issuer: str,
        attempts: int,
        status: int | None,
        body: str,
        failure: str,
        stopped: str,
        retry_after: float | None = None,
    ) -> None:
        self.what = what
        self.method = method
        self.endpoint = endpoint
        self.issuer = issuer
        self.attempts = attempts
        self.status = status
        self.body = body
        self.failure = failure
        self.stopped = stopped
        self.retry_after = retry_after
        self.score: Score | None = None
        self.lineitem: str | None = None
        super().__init__(self._message(_TRY_LATER))

    def with_score(self, score: Score, lineitem: str) -> ServiceUnavailableError:
        """This error for a score post: keeps ``score`` and says to post it again."""
        error = ServiceUnavailableError(
            what=self.what,
            method=self.method,
            endpoint=self.endpoint,
            issuer=self.issuer,
            attempts=self.attempts,
            status=self.status,
            body=self.body,
            failure=self.failure,
            stopped=self.stopped,
            retry_after=self.retry_after,
        )
        error.score = score
        error.lineitem = lineitem
        error.args = (error._message(_POST_AGAIN),)

        return error

    def _message(self, advice: str) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return (
            f"{self.what} failed: {self.method} {self.endpoint} at {self.issuer} "
            f"did not succeed in {tries} (last: {self.failure}); {self.stopped}. "
            f"{advice}"
        )


class PlatformResponseError(ServiceError):
    """A platform endpoint answered with an error status.

    Carries ``method``, ``url``, ``status`` and the platform's ``body`` (text,
    cut to a few kilobytes) so nothing the platform said is lost, and
    ``retry_after``: the seconds its ``Retry-After`` asked to wait, or None.
    """

    def __init__(
        self,
        *,
        method: str,
        url: str,
        status: int,
        body: str,
        what: str,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.retry_after = retry_after
        super().__init__(
            f"{what} failed: {method} {url} answered {status}: {body[:500]}"
        )


class TokenRequestError(PlatformResponseError):
    """The platform's token endpoint refused the client_credentials request."""
