"""Deep linking on the development platform: the request and the tool's answer.

An instructor's "Add content" link launches the deep-linking placement; its
id_token is an ``LtiDeepLinkingRequest`` whose settings name this platform's
return URL and carry ``data``: a short JWT the platform signs for itself, so
the answer can be tied to a request it issued and used once.

The tool answers with a form POST of one field, ``JWT``, checked strictly as
a judge of the tool (Deep Linking 2.0, 4.2): header ``kid`` of a key in the
tool's key set and alg RS256; ``iss`` our client_id; ``aud`` our issuer as
one string; ``iat`` and a short ``exp``; a ``nonce`` never seen before; our
deployment_id, the message type and version; ``data`` echoed exactly. The
items are checked against the settings sent, then placed all together: an
``ltiResourceLink`` becomes a resource link of the course (its ``lineItem``
a gradebook column bound to it), ``link`` and ``html`` items are listed on
the home page.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import claims
from .forms import FormError, read_form
from .pages import render_deep_linking_result, render_error
from .settings import DevResourceLink, DevUser, PlatformSettings
from .state import LineItemRecord, PlacedContent, PlatformState
from .toolkeys import SignerRefusedError, ToolKeySet, signing_key_of

logger = logging.getLogger(__name__)

ACCEPT_TYPES = ("ltiResourceLink", "link", "html")
ACCEPT_TARGETS = ("iframe", "window")
#: Seconds an instructor has to pick content before ``data`` expires.
DATA_LIFETIME = 3600
MAX_RESPONSE_LIFETIME = 600
CLOCK_SKEW = 60
_DATA_PURPOSE = "deep_linking_request"
_OPTIONS: jwt.types.Options = {
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "enforce_minimum_key_length": True,
}


class ResponseRefusedError(Exception):
    """The tool's deep-linking response broke a rule; the message says which."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def course_settings(
    settings: PlatformSettings, state: PlatformState
) -> PlatformSettings:
    """``settings`` with the resource links placed by deep linking added.

    Every handler sees the course as it is now, so a placed link launches,
    takes scores and shows in the gradebook like a configured one.
    """
    if not state.placed_links:
        return settings

    links = settings.resource_links + tuple(state.placed_links)
    return dataclasses.replace(settings, resource_links=links)


def settings_claim(
    settings: PlatformSettings, *, user: DevUser, now: float
) -> dict[str, Any]:
    """The ``deep_linking_settings`` claim of a request made by ``user``."""
    return {
        "deep_link_return_url": settings.deep_linking_return_url,
        "accept_types": list(ACCEPT_TYPES),
        "accept_presentation_document_targets": list(ACCEPT_TARGETS),
        "accept_multiple": True,
        "accept_lineitem": True,
        "auto_create": True,
        "title": f"Add content to {settings.context_title}",
        "text": "Pick what to place in the course.",
        "data": _sign_data(settings, user, now),
    }


def _sign_data(settings: PlatformSettings, user: DevUser, now: float) -> str:
    issued_at = int(now)
    payload = {
        "iss": settings.issuer,
        "aud": settings.issuer,
        "sub": user.id,
        "purpose": _DATA_PURPOSE,
        "iat": issued_at,
        "exp": issued_at + DATA_LIFETIME,
        "jti": secrets.token_urlsafe(16),
    }
    key = settings.signing_key

    return jwt.encode(
        payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid}
    )


async def receive_response(
    request: Request,
    settings: PlatformSettings,
    state: PlatformState,
    key_set: ToolKeySet,
) -> Response:
    """The return endpoint: verify the tool's response, place its items."""
    try:
        token = await _read_token(request)
        payload = await verify_response(token, settings, state, key_set)
        items = _content_items(payload)
        placed = place_items(items, settings, state)
    except ResponseRefusedError as error:
        state.deep_linking_refused += 1
        logger.info("deep linking response refused: %s", error)
        page = render_error("Deep linking response refused", str(error))
        return HTMLResponse(page, status_code=error.status)

    state.deep_linking_responses += 1
    logger.info("deep linking response: %d items placed", len(placed))
    page = render_deep_linking_result(
        settings,
        placed,
        msg=_optional_text(payload, claims.DEEP_LINKING_MSG),
        errormsg=_optional_text(payload, claims.DEEP_LINKING_ERRORMSG),
    )

    return HTMLResponse(page)


async def _read_token(request: Request) -> str:
    try:
        form = await read_form(request)
    except FormError as error:
        raise ResponseRefusedError(str(error)) from error

    if set(form) != {"JWT"}:
        raise ResponseRefusedError(
            f"the form must carry exactly one field, JWT; got {sorted(form)}"
        )
    return form["JWT"]


async def verify_response(
    token: str, settings: PlatformSettings, state: PlatformState, key_set: ToolKeySet
) -> dict[str, Any]:
    """The verified claims of a response JWT; raises ResponseRefusedError."""
    key = await _tool_key(token, key_set)
    try:
        payload: dict[str, Any] = jwt.decode(
            token, key, algorithms=["RS256"], options=_OPTIONS
        )
    except jwt.InvalidSignatureError as error:
        raise ResponseRefusedError("the signature does not verify", 401) from error
    except jwt.PyJWTError as error:
        raise ResponseRefusedError(f"the JWT cannot be read: {error}") from error

    _check_parties(payload, settings)
    now = settings.clock()
    exp = _check_times(payload, now)
    _check_message(payload, settings)

    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise ResponseRefusedError("nonce is missing")
    if not state.remember_once(
        state.deep_linking_nonces, nonce, until=exp + CLOCK_SKEW, now=now
    ):
        raise ResponseRefusedError("nonce was already used; responses are single use")
    _check_data(payload, settings, state, now)

    return payload


async def _tool_key(token: str, key_set: ToolKeySet) -> jwt.PyJWK:
    try:
        return await signing_key_of(token, key_set, "JWT")
    except SignerRefusedError as error:
        raise ResponseRefusedError(str(error), error.status) from error


def _check_parties(payload: dict[str, Any], settings: PlatformSettings) -> None:
    if payload.get("iss") != settings.client_id:
        raise ResponseRefusedError(
            f"iss must be the client_id {settings.client_id!r}, "
            f"got {payload.get('iss')!r}"
        )
    aud = payload.get("aud")
    if aud != settings.issuer:
        raise ResponseRefusedError(
            f"aud must be the single string {settings.issuer!r}, got {aud!r}"
        )
    if "azp" in payload and payload["azp"] != settings.client_id:
        raise ResponseRefusedError(f"azp must be {settings.client_id!r}")


def _seconds(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResponseRefusedError(f"{name} must be a number of seconds")
    return float(value)


def _check_times(payload: dict[str, Any], now: float) -> float:
    iat, exp = _seconds(payload, "iat"), _seconds(payload, "exp")
    if exp <= now:
        raise ResponseRefusedError("the response has expired")
    if iat > now + CLOCK_SKEW:
        raise ResponseRefusedError("iat is in the future")
    if exp - iat > MAX_RESPONSE_LIFETIME:
        raise ResponseRefusedError(
            f"exp - iat is {exp - iat:g} s; at most {MAX_RESPONSE_LIFETIME} allowed"
        )

    return exp


def _check_message(payload: dict[str, Any], settings: PlatformSettings) -> None:
    expected = {
        claims.DEPLOYMENT_ID: settings.deployment_id,
        claims.MESSAGE_TYPE: claims.DEEP_LINKING_RESPONSE,
        claims.VERSION: claims.LTI_VERSION,
    }
    for name, value in expected.items():
        if payload.get(name) != value:
            raise ResponseRefusedError(
                f"{name} must be {value!r}, got {payload.get(name)!r}"
            )
    for name in (
        claims.DEEP_LINKING_MSG,
        claims.DEEP_LINKING_LOG,
        claims.DEEP_LINKING_ERRORMSG,
        claims.DEEP_LINKING_ERRORLOG,
    ):
        if name in payload and not isinstance(payload[name], str):
            raise ResponseRefusedError(f"{name} must be a string")


def _check_data(
    payload: dict[str, Any],
    settings: PlatformSettings,
    state: PlatformState,
    now: float,
) -> None:
    data = payload.get(claims.DEEP_LINKING_DATA)
    if not isinstance(data, str):
        raise ResponseRefusedError(
            f"{claims.DEEP_LINKING_DATA} must echo the request's data exactly"
        )
    public_key = settings.signing_key.private_key.public_key()
    try:
        record = jwt.decode(
            data,
            public_key,
            algorithms=["RS256"],
            audience=settings.issuer,
            issuer=settings.issuer,
            options={
                "require": ["exp", "iat", "jti"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as error:
        raise ResponseRefusedError(
            f"{claims.DEEP_LINKING_DATA} is not the data this platform sent: {error}"
        ) from error

    # The platform's own clock decides, so tests can move it.
    if record["exp"] <= now:
        raise ResponseRefusedError("the deep-linking request has expired")
    if record.get("purpose") != _DATA_PURPOSE:
        raise ResponseRefusedError("data was not issued for deep linking")
    if not state.remember_once(
        state.deep_linking_data, str(record["jti"]), until=record["exp"], now=now
    ):
        raise ResponseRefusedError("this deep-linking request was already answered")


def _optional_text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) else None


def _content_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    # DL 2.0: content_items may be empty, or absent when nothing was picked.
    items = payload.get(claims.CONTENT_ITEMS, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ResponseRefusedError(
            f"{claims.CONTENT_ITEMS} must be an array of objects"
        )
    for number, item in enumerate(items, 1):
        _check_item(number, item)

    return items


def _check_item(number: int, item: dict[str, Any]) -> None:
    kind = item.get("type")
    if kind not in ACCEPT_TYPES:
        raise ResponseRefusedError(
            f"item {number}: type {kind!r} is not one of {list(ACCEPT_TYPES)}"
        )
    for target in ("iframe", "window", "embed"):
        if target in item and target not in ACCEPT_TARGETS:
            raise ResponseRefusedError(
                f"item {number}: presentation target {target!r} was not accepted"
            )
        if target in item and not isinstance(item[target], dict):
            raise ResponseRefusedError(f"item {number}: {target} must be an object")
    for name in ("title", "text"):
        if name in item and not isinstance(item[name], str):
            raise ResponseRefusedError(f"item {number}: {name} must be a string")

    if kind == "link":
        _check_url(number, item.get("url"), required=True)
    elif kind == "html":
        if not isinstance(item.get("html"), str) or not item["html"]:
            raise ResponseRefusedError(f"item {number}: html is required")
    else:
        _check_url(number, item.get("url"), required=False)
        _check_custom(number, item.get("custom"))
        _check_line_item(number, item.get("lineItem"))
        for name in ("available", "submission"):
            _check_window(number, name, item.get(name))


def _check_url(number: int, url: object, *, required: bool) -> None:
    if url is None and not required:
        return
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ResponseRefusedError(
            f"item {number}: url must be an absolute http(s) URL, got {url!r}"
        )


def _check_custom(number: int, custom: object) -> None:
    if custom is None:
        return
    if not isinstance(custom, dict) or not all(
        isinstance(value, str) for value in custom.values()
    ):
        raise ResponseRefusedError(
            f"item {number}: custom must be an object of string values"
        )


def _check_line_item(number: int, line_item: object) -> None:
    if line_item is None:
        return
    if not isinstance(line_item, dict):
        raise ResponseRefusedError(f"item {number}: lineItem must be an object")
    maximum = line_item.get("scoreMaximum")
    if (
        isinstance(maximum, bool)
        or not isinstance(maximum, int | float)
        or maximum <= 0
    ):
        raise ResponseRefusedError(
            f"item {number}: lineItem.scoreMaximum must be a number > 0"
        )
    label = line_item.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ResponseRefusedError(f"item {number}: lineItem.label must not be blank")
    for name in ("resourceId", "tag"):
        if name in line_item and not isinstance(line_item[name], str):
            raise ResponseRefusedError(f"item {number}: lineItem.{name} must be text")
    released = line_item.get("gradesReleased")
    if released is not None and not isinstance(released, bool):
        raise ResponseRefusedError(
            f"item {number}: lineItem.gradesReleased must be a boolean"
        )


def _check_window(number: int, name: str, window: object) -> None:
    if window is None:
        return
    if not isinstance(window, dict):
        raise ResponseRefusedError(f"item {number}: {name} must be an object")
    for member in ("startDateTime", "endDateTime"):
        value = window.get(member)
        if value is None:
            continue
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            moment = None
        if not isinstance(value, str) or moment is None or moment.tzinfo is None:
            raise ResponseRefusedError(
                f"item {number}: {name}.{member} must be ISO 8601 with a time zone"
            )


def place_items(
    items: list[dict[str, Any]], settings: PlatformSettings, state: PlatformState
) -> list[str]:
    """Put checked ``items`` in the course; returns what was placed, as titles.

    An ``ltiResourceLink`` must point at the tool's origin, as platforms
    require of links they will launch with the tool's registration.
    """
    tool_origin = _origin(settings.tool_target_link_uri)
    for number, item in enumerate(items, 1):
        url = item.get("url")
        if item["type"] == "ltiResourceLink" and url and _origin(url) != tool_origin:
            raise ResponseRefusedError(
                f"item {number}: url {url!r} is not on the tool's origin {tool_origin}"
            )

    placed = []
    for item in items:
        title = item.get("title") or item.get("url") or item["type"]
        if item["type"] == "ltiResourceLink":
            state.placed_links.append(_resource_link(item, title, state))
        else:
            state.placed_content.append(
                PlacedContent(item["type"], title, item.get("url"), item.get("html"))
            )
        placed.append(title)

    return placed


def _resource_link(
    item: dict[str, Any], title: str, state: PlatformState
) -> DevResourceLink:
    number = len(state.placed_links) + 1
    line_item = item.get("lineItem")
    custom = item.get("custom") or {}
    link = DevResourceLink(
        id=f"dl-link-{number}",
        title=title,
        line_item_id=f"dl-{number}",
        line_item_label=title,
        custom=tuple(sorted(custom.items())),
        url=item.get("url"),
        graded=line_item is not None,
    )
    if line_item is None:
        return link

    link = dataclasses.replace(
        link,
        line_item_label=line_item.get("label") or title,
        score_maximum=float(line_item["scoreMaximum"]),
    )
    # Recorded now, so the line item service finds it by resourceId and tag.
    state.line_items[link.line_item_id] = LineItemRecord(
        id=link.line_item_id,
        label=link.line_item_label,
        score_maximum=link.score_maximum,
        resource_link_id=link.id,
        resource_id=line_item.get("resourceId"),
        tag=line_item.get("tag"),
        grades_released=line_item.get("gradesReleased"),
    )
    return link


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
