"""Third-party initiated login: from the platform's request to the auth redirect.

LTI Security Framework 5.1.1. Pure protocol logic: no ASGI, no HTTP client.
The state ties the launch to the browser that started the login (through a
cookie) and to what the login asked for (issuer, client_id, target_link_uri).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from .config import Registration, ToolConfig, find_registrations
from .exceptions import LaunchError

MAX_PARAMETER_LENGTH = 4096
STATE_COOKIE_PREFIX = "lti1p3-state-"
#: The form field a cookieless launch posts the binding in (see storage.py).
BINDING_FIELD = "lti_storage_binding"

_REQUIRED = ("iss", "login_hint", "target_link_uri")
_OPTIONAL = ("client_id", "lti_deployment_id", "lti_message_hint")


@dataclass(frozen=True)
class LoginRequest:
    """The platform's login initiation parameters."""

    iss: str
    login_hint: str
    target_link_uri: str
    client_id: str | None = None
    lti_deployment_id: str | None = None
    lti_message_hint: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> LoginRequest:
        """Read the parameters; raises LaunchError naming a missing one."""
        for name in _REQUIRED:
            if not params.get(name):
                raise LaunchError(
                    "login_parameter_missing",
                    f"the login request has no {name!r} parameter",
                )
        for name in _REQUIRED + _OPTIONAL:
            if len(params.get(name) or "") > MAX_PARAMETER_LENGTH:
                raise LaunchError(
                    "login_parameter_invalid",
                    f"{name!r} is longer than {MAX_PARAMETER_LENGTH} characters",
                )

        optional = {name: params.get(name) or None for name in _OPTIONAL}
        return cls(
            iss=params["iss"],
            login_hint=params["login_hint"],
            target_link_uri=params["target_link_uri"],
            **optional,
        )


@dataclass(frozen=True)
class LoginRecord:
    """What a login remembers under its state, for the launch to check."""

    issuer: str
    client_id: str
    target_link_uri: str
    nonce: str
    binding: str
    deployment_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str) -> LoginRecord:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class LoginRedirect:
    """The answer to a login: where to send the browser and what to remember."""

    url: str
    state: str
    record: LoginRecord
    cookie_name: str


def resolve_registration(
    registrations: Sequence[Registration], issuer: str, client_id: str | None
) -> Registration:
    """The registration for (issuer, client_id); issuers compare exactly.

    Without a client_id the issuer must be unambiguous: hosted Canvas uses one
    issuer for every institution, each with its own client_id.
    """
    candidates = find_registrations(registrations, issuer)
    if not candidates:
        raise LaunchError("unknown_issuer", f"no registration for issuer {issuer!r}")
    if client_id is None:
        if len(candidates) > 1:
            raise LaunchError(
                "ambiguous_registration",
                f"{len(candidates)} registrations have issuer {issuer!r} and the "
                "login sent no client_id",
            )
        return candidates[0]

    for registration in candidates:
        if registration.client_id == client_id:
            return registration
    raise LaunchError(
        "unknown_client_id",
        f"issuer {issuer!r} is registered, but not with client_id {client_id!r}",
    )


def check_target_link_uri(uri: str, config: ToolConfig) -> None:
    """Refuse targets outside the tool, so login cannot be an open redirect."""
    parts = urlsplit(uri)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    allowed = {o.lower() for o in config.allowed_target_origins}
    if parts.scheme not in ("http", "https") or origin not in allowed:
        raise LaunchError(
            "target_link_uri_not_allowed",
            f"target_link_uri {uri!r} is outside the allowed origins "
            f"{sorted(config.allowed_target_origins)}",
        )


def state_cookie_name(state: str) -> str:
    """The cookie that binds ``state`` to a browser; one per concurrent login."""
    digest = hashlib.sha256(state.encode("utf-8")).hexdigest()[:24]
    return STATE_COOKIE_PREFIX + digest


def state_cookie(name: str, value: str, *, path: str, max_age: int) -> str:
    """The Set-Cookie value of a login's state cookie; max_age 0 removes it.

    Sent with the cross-site launch POST, so it must be SameSite=None and
    therefore Secure. Written out rather than through http.cookies (about a
    tenth of a launch's cost): the name is a hex digest and the value a
    URL-safe token, so nothing needs quoting.
    """
    expiry = f"Max-Age={max_age}"
    if max_age <= 0:
        expiry += "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    return f"{name}={value}; {expiry}; Path={path}; Secure; HttpOnly; SameSite=None"


def start_login(
    request: LoginRequest,
    config: ToolConfig,
    *,
    token: Callable[[int], str] = secrets.token_urlsafe,
) -> LoginRedirect:
    """Check a login request and build the redirect to the platform's auth endpoint.

    The redirect_uri is ``config.launch_url`` exactly as configured: platforms
    compare it character for character with the registered one.
    """
    registration = resolve_registration(
        config.registrations, request.iss, request.client_id
    )
    check_target_link_uri(request.target_link_uri, config)

    state = token(32)
    record = LoginRecord(
        issuer=registration.issuer,
        client_id=registration.client_id,
        target_link_uri=request.target_link_uri,
        nonce=token(32),
        binding=token(32),
        deployment_id=request.lti_deployment_id,
    )

    return LoginRedirect(
        url=auth_request_url(registration, config, request, state, record.nonce),
        state=state,
        record=record,
        cookie_name=state_cookie_name(state),
    )


def auth_request_url(
    registration: Registration,
    config: ToolConfig,
    request: LoginRequest,
    state: str,
    nonce: str,
) -> str:
    """The OIDC authentication request, as a URL for a GET redirect.

    A GET keeps the platform's own session cookie, which a cross-site POST
    loses on platforms that set it SameSite=Lax (seen with Moodle).
    """
    params = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": registration.client_id,
        "redirect_uri": config.launch_url,
        "login_hint": request.login_hint,
        "state": state,
        "nonce": nonce,
    }
    if request.lti_message_hint is not None:
        params["lti_message_hint"] = request.lti_message_hint

    parts = urlsplit(registration.auth_login_url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
