"""Third-party initiated login and the OIDC authorization endpoint.

LTI Security Framework 5.1.1: the platform starts a login by sending the
browser to the tool's login URL with ``iss``, ``login_hint``,
``target_link_uri`` and ``lti_message_hint``. The tool answers with an OIDC
authentication request, checked here strictly; a valid one is answered by a
form POST of ``id_token`` and ``state`` to the registered ``redirect_uri``.

The hints are opaque random strings kept server-side; each may start one
launch, within ``hint_lifetime`` seconds, after which the endpoint answers
``launch_no_longer_valid`` as Canvas does.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..claims import RESOURCE_LINK_REQUEST
from .forms import FormError, read_params
from .idtoken import build_claims, sign_id_token
from .pages import render_error, render_form_post
from .settings import INSTRUCTOR, PlatformSettings
from .state import LaunchIntent, PlatformState, fingerprint
from .storage import storage_params

logger = logging.getLogger(__name__)

#: Parameter, expected value, OIDC error code when it differs.
_FIXED_PARAMETERS = (
    ("response_type", "id_token", "unsupported_response_type"),
    ("scope", "openid", "invalid_scope"),
    ("response_mode", "form_post", "invalid_request"),
    ("prompt", "none", "invalid_request"),
)


class AuthRequestError(Exception):
    """An auth request refused with an OIDC error code and description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


async def start_login(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """Send the browser to the tool's login URL for one user and resource link."""
    user = settings.find_user(request.query_params.get("user_id", ""))
    link_id = request.query_params.get(
        "resource_link_id", settings.resource_links[0].id
    )
    link = settings.find_resource_link(link_id)
    if user is None or link is None:
        message = "Unknown user_id or resource_link_id; start from the home page."
        return HTMLResponse(render_error("Cannot launch", message), status_code=404)

    if link.message_type != RESOURCE_LINK_REQUEST and INSTRUCTOR not in user.roles:
        message = "Only instructors may add content to the course."
        return HTMLResponse(render_error("Cannot launch", message), status_code=403)

    now = settings.clock()
    intent = state.issue_intent(
        user.id, link.id, expires_at=now + settings.hint_lifetime, now=now
    )
    params = {
        "iss": settings.issuer,
        "login_hint": intent.login_hint,
        # A link placed by deep linking opens at the URL the tool gave it.
        "target_link_uri": link.url or settings.tool_target_link_uri,
        "client_id": settings.client_id,
        "lti_deployment_id": settings.deployment_id,
        "lti_message_hint": intent.message_hint,
        **storage_params(settings),
    }
    logger.debug("login initiation for resource link %s", link.id)

    if settings.login_method == "POST":
        page = render_form_post(settings.tool_login_url, params, title="Launching")
        return HTMLResponse(page)
    separator = "&" if "?" in settings.tool_login_url else "?"
    location = settings.tool_login_url + separator + urlencode(params)

    return RedirectResponse(location, status_code=302)


async def authorize(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """The OIDC authorization endpoint, by GET or POST."""
    state.auth_requests += 1
    try:
        params = await read_params(request)
    except FormError as error:
        return _error_page(str(error))

    # OIDC Core 3.1.2.6: with an unknown client or an unregistered
    # redirect_uri, tell the user and never redirect.
    if params.get("client_id") != settings.client_id:
        return _error_page(f"client_id must be {settings.client_id!r}")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in settings.tool_redirect_uris:
        registered = ", ".join(settings.tool_redirect_uris)
        return _error_page(
            f"redirect_uri {redirect_uri!r} is not registered; expected exactly "
            f"one of: {registered}"
        )

    try:
        intent = _check_request(params, settings, state)
    except AuthRequestError as error:
        logger.info("auth request refused: %s", error.error)
        fields = {"error": error.error, "error_description": error.description}
        if "state" in params:
            fields["state"] = params["state"]
        return HTMLResponse(render_form_post(redirect_uri, fields, title="Error"))

    id_token = _issue_id_token(settings, state, intent, nonce=params["nonce"])
    fields = {"id_token": id_token, "state": params["state"]}
    fields.update(storage_params(settings))

    return HTMLResponse(render_form_post(redirect_uri, fields, title="Launching"))


def _check_request(
    params: dict[str, str], settings: PlatformSettings, state: PlatformState
) -> LaunchIntent:
    for name, expected, error in _FIXED_PARAMETERS:
        if params.get(name) != expected:
            raise AuthRequestError(
                error, f"{name} must be {expected!r}, got {params.get(name)!r}"
            )
    for name in ("state", "nonce", "login_hint"):
        if not params.get(name):
            raise AuthRequestError("invalid_request", f"{name} is missing")

    intent = state.intents.get(params["login_hint"])
    if intent is None:
        raise AuthRequestError(
            "invalid_request", "login_hint was not issued by this platform"
        )
    if intent.used or intent.expires_at <= settings.clock():
        raise AuthRequestError(
            "launch_no_longer_valid", "this launch was already used or has expired"
        )
    if params.get("lti_message_hint") != intent.message_hint:
        raise AuthRequestError(
            "invalid_request",
            "lti_message_hint must be echoed exactly as sent with login_hint",
        )

    return intent


def _issue_id_token(
    settings: PlatformSettings,
    state: PlatformState,
    intent: LaunchIntent,
    *,
    nonce: str,
) -> str:
    user = settings.find_user(intent.user_id)
    link = settings.find_resource_link(intent.resource_link_id)
    if user is None or link is None:  # pragma: no cover - intents name known ones
        raise LookupError("launch intent names an unknown user or resource link")

    intent.used = True
    payload = build_claims(
        settings, user=user, link=link, nonce=nonce, now=settings.clock()
    )
    id_token = sign_id_token(settings, payload)
    state.id_tokens.add(fingerprint(id_token))
    state.id_tokens_issued += 1

    return id_token


def _error_page(message: str) -> HTMLResponse:
    return HTMLResponse(render_error("Invalid login request", message), status_code=400)
