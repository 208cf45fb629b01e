"""Shapes of the claims a launch carries: what the app reads must be readable.

LTI Core 5 and the service specs give each claim a type; a claim of another
shape, or a service URL no HTTP client can send to, would pass validation
and then fail in the app. Each check here refuses it at launch with
``claim_invalid``, naming the claim and the member.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from . import claims as c
from .config import check_url
from .deep_linking import DeepLinkingSettings
from .exceptions import ConfigurationError, LaunchError

MAX_SUB_LENGTH = 255
SERVICE_URL_MEMBERS = (
    (c.AGS_ENDPOINT, "lineitem"),
    (c.AGS_ENDPOINT, "lineitems"),
    (c.NRPS_SERVICE, "context_memberships_url"),
)


def shown(value: object, limit: int = 60) -> str:
    """``value`` for an error message, cut short: it came from the request."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _require_object(claims: Mapping[str, Any], name: str, member: str) -> None:
    value = claims.get(name)
    if not isinstance(value, dict):
        raise LaunchError("claim_invalid", f"{name} must be a JSON object")
    if not isinstance(value.get(member), str) or not value[member]:
        raise LaunchError("claim_invalid", f"{name} must have a string {member!r}")


def check_claim_shapes(claims: Mapping[str, Any]) -> None:
    """Claims that are present must have the shape the spec gives them."""
    sub = claims.get("sub")
    if sub is not None and (
        not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH
    ):
        raise LaunchError("claim_invalid", "sub must be a string of 1 to 255 chars")

    roles = claims.get(c.ROLES)
    if roles is not None and (
        not isinstance(roles, list) or not all(isinstance(r, str) for r in roles)
    ):
        raise LaunchError("claim_invalid", f"{c.ROLES} must be an array of strings")
    if c.RESOURCE_LINK in claims:
        _require_object(claims, c.RESOURCE_LINK, "id")
    if c.CONTEXT in claims:
        _require_object(claims, c.CONTEXT, "id")
    if c.TOOL_PLATFORM in claims:
        _require_object(claims, c.TOOL_PLATFORM, "guid")
    for name in (c.CUSTOM, c.LAUNCH_PRESENTATION, c.AGS_ENDPOINT):
        if name in claims and not isinstance(claims[name], dict):
            raise LaunchError("claim_invalid", f"{name} must be a JSON object")

    _check_context_type(claims)
    for name, member in SERVICE_URL_MEMBERS:
        service = claims.get(name)
        if isinstance(service, dict):
            _check_service_url(name, member, service.get(member))


def _check_context_type(claims: Mapping[str, Any]) -> None:
    # LTI Core 5.4.1 gives an array of strings; platforms also send a single
    # string, which LTILaunch.context reads as an array of one.
    context = claims.get(c.CONTEXT)
    kinds = context.get("type") if isinstance(context, dict) else None
    if kinds is None or isinstance(kinds, str):
        return
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise LaunchError(
            "claim_invalid",
            f"{c.CONTEXT} 'type' must be a string or an array of strings, "
            f"got {shown(kinds)}",
        )


def _check_service_url(claim: str, member: str, value: object) -> None:
    """Refuse a service URL the service clients could not send to.

    Null and "" are read as absent, as the clients read them. A URL that
    httpx (which sends the calls) or urllib cannot parse would otherwise
    fail in the app, at launch.ags or at a score post, with a bare
    ValueError; the rest is the tool's rule for every platform URL.
    """
    if value is None or value == "":
        return
    where = f"{claim} {member!r}"
    if not isinstance(value, str):
        raise LaunchError("claim_invalid", f"{where} must be a URL string")

    problem = _service_url_problem(value)
    if problem is not None:
        raise LaunchError("claim_invalid", f"{where} {problem}: {shown(value)}")


# A course's service URLs come back launch after launch, and parsing one
# costs more than the rest of the claim checks together.
@functools.lru_cache(maxsize=4096)
def _service_url_problem(value: str) -> str | None:
    """What is wrong with service URL ``value``, or None."""
    if not value.isprintable() or " " in value:
        return "holds whitespace or control characters"

    try:
        # .port raises for a port that is not a number up to 65535.
        if urlsplit(value).port == 0:
            raise ValueError("port 0 is no port a service listens on")
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL) as error:
        return f"does not parse as a URL ({str(error)[:80]})"

    try:
        check_url("service URL", value)
    except ConfigurationError:
        return (
            "must be an absolute https URL (http only for localhost) without a fragment"
        )
    return None


def check_deep_linking_settings(claims: Mapping[str, Any]) -> None:
    """The deep_linking_settings claim reads; its return URL is http(s)."""
    settings = claims.get(c.DEEP_LINKING_SETTINGS)
    url = settings.get("deep_link_return_url") if isinstance(settings, dict) else None
    try:
        # urlsplit's own message ("Invalid IPv6 URL") names no member.
        urlsplit(url if isinstance(url, str) else "")
    except ValueError as error:
        raise LaunchError(
            "claim_invalid",
            f"{c.DEEP_LINKING_SETTINGS}: deep_link_return_url does not parse as "
            f"a URL ({error}): {shown(url)}",
        ) from error

    try:
        DeepLinkingSettings.from_claim(settings)
    except ValueError as error:
        raise LaunchError(
            "claim_invalid", f"{c.DEEP_LINKING_SETTINGS}: {error}"
        ) from error
