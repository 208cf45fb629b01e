"""Names and Role Provisioning Services 2.0: the course roster, for tools.

A GET of the context memberships URL needs ``Authorization: Bearer`` with an
access token granted the ``contextmembership.readonly`` scope, compared
exactly, and an ``Accept`` header, when sent, that admits the membership
container media type. Query parameters (NRPS 2.0): ``role`` (a role URI, or
a short membership name such as ``Learner``), ``limit`` (members per page,
at most ``nrps_page_size`` whatever is asked) and ``rlid`` (members who can
use that resource link, each with the claims its launch would carry, in
``message``). A page with more after it links to the next with
``Link: rel="next"``; every answer links to the changes since it was made
with ``rel="differences"``.

Status changes come from the roster page and are numbered; a differences
URL carries the number current when it was made (``since``). A Deleted
member appears only in differences. The roster page changes state without
CSRF protection: the platform is for local development, never the internet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import claims
from .ags import ServiceRequestError, check_bearer
from .deep_linking import course_settings
from .forms import FormError, read_form, read_params
from .pages import render_error, render_roster
from .settings import (
    NRPS_PATH,
    ROSTER_PATH,
    DevResourceLink,
    DevUser,
    PlatformSettings,
)
from .state import PlatformState

logger = logging.getLogger(__name__)

NRPS_SCOPES = frozenset({claims.SCOPE_NRPS})
ACTIVE, INACTIVE, DELETED = "Active", "Inactive", "Deleted"
STATUSES = (ACTIVE, INACTIVE, DELETED)
_ACCEPTABLE = frozenset({claims.MEDIA_TYPE_MEMBERSHIPS, "application/*", "*/*"})
# Larger numbers are refused rather than parsed.
_MAX_DIGITS = 9


class Memberships:
    """Each user's membership status, and the numbered log of changes."""

    def __init__(self, users: Iterable[DevUser]) -> None:
        self.status: dict[str, str] = {user.id: ACTIVE for user in users}
        self.changed_at: dict[str, int] = {}
        self.sequence = 0

    def set_status(self, user_id: str, status: str) -> bool:
        """Give ``user_id`` ``status``; False when it had it already."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if self.status[user_id] == status:
            return False

        self.sequence += 1
        self.status[user_id] = status
        self.changed_at[user_id] = self.sequence
        return True

    def changed_since(self, since: int) -> set[str]:
        """Ids of the users whose status changed after change ``since``."""
        return {user for user, number in self.changed_at.items() if number > since}


@dataclass(frozen=True)
class MembershipQuery:
    """A membership request's parameters, checked."""

    role: str | None
    limit: int | None
    link: DevResourceLink | None
    page: int
    since: int | None

    @property
    def role_uri(self) -> str | None:
        """``role`` as a URI: a short name is a membership role."""
        if self.role is None or "://" in self.role:
            return self.role
        return claims.MEMBERSHIP_ROLE + self.role

    def params(self, **changes: int | None) -> dict[str, str]:
        """The query string of this request, with ``changes`` applied."""
        values: dict[str, Any] = {
            "role": self.role,
            "limit": self.limit,
            "rlid": self.link.id if self.link else None,
            "since": self.since,
            "page": None,
        }
        values.update(changes)
        return {name: str(value) for name, value in values.items() if value is not None}


class NRPSService:
    """The membership endpoint and the roster page of one platform."""

    def __init__(self, settings: PlatformSettings, state: PlatformState) -> None:
        self.settings = settings
        self.state = state
        self.memberships = Memberships(settings.users)

    def routes(self) -> list[Route]:
        """The routes to add to the platform app."""
        memberships = NRPS_PATH + "/{context_id}/memberships"
        return [
            Route(memberships, self.get_memberships, methods=["GET"]),
            Route(ROSTER_PATH, self.roster, methods=["GET", "POST"]),
        ]

    async def get_memberships(self, request: Request) -> Response:
        """One page of the membership container, or a JSON refusal."""
        settings = self.settings
        try:
            if request.path_params.get("context_id") != settings.context_id:
                raise ServiceRequestError(404, "not_found", "no such context")
            check_bearer(request, settings, self.state, NRPS_SCOPES)
            _check_accept(request)
            query = await self._read_query(request)
        except ServiceRequestError as error:
            logger.info("membership request refused: %s", error.error)
            return error.response()

        users = self._select(query)
        size = min(query.limit or settings.nrps_page_size, settings.nrps_page_size)
        start = (query.page - 1) * size
        links = {
            "first": query.params(page=1),
            "differences": query.params(since=self.memberships.sequence),
        }
        if start + size < len(users):
            links["next"] = query.params(page=query.page + 1)
        header = ", ".join(
            f'<{self._url(params)}>; rel="{rel}"' for rel, params in links.items()
        )
        body = {
            "id": str(request.url),
            "context": {
                "id": settings.context_id,
                "label": settings.context_label,
                "title": settings.context_title,
            },
            "members": [self._member(u, query) for u in users[start : start + size]],
        }

        return JSONResponse(
            body,
            media_type=claims.MEDIA_TYPE_MEMBERSHIPS,
            headers={"Link": header},
        )

    async def roster(self, request: Request) -> Response:
        """The roster page; a POST changes one member's status."""
        if request.method == "POST":
            return await self._change_status(request)

        rows = [(u, self.memberships.status[u.id]) for u in self.settings.users]
        return HTMLResponse(render_roster(self.settings, rows, STATUSES))

    async def _change_status(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as error:
            return _error_page(str(error), 400)
        user = self.settings.find_user(form.get("user_id", ""))
        if user is None:
            return _error_page("Unknown user_id.", 404)
        status = form.get("status", "")
        if status not in STATUSES:
            return _error_page(f"status must be one of {', '.join(STATUSES)}.", 400)

        if self.memberships.set_status(user.id, status):
            logger.info("membership status changed to %s", status)
        return RedirectResponse(self.settings.roster_url, status_code=303)

    async def _read_query(self, request: Request) -> MembershipQuery:
        try:
            params = await read_params(request)
        except FormError as error:
            raise ServiceRequestError(400, "invalid_request", str(error)) from error

        role = params.get("role")
        if role is not None and not role.strip():
            raise ServiceRequestError(400, "invalid_request", "role is empty")
        link = None
        if "rlid" in params:
            # Links placed by deep linking count as much as configured ones.
            course = course_settings(self.settings, self.state)
            link = course.find_resource_link(params["rlid"])
            if link is None:
                raise ServiceRequestError(
                    400,
                    "invalid_request",
                    "rlid names no resource link of this context",
                )
        since = _number(params, "since", 0)
        if since is not None and since > self.memberships.sequence:
            raise ServiceRequestError(
                400, "invalid_request", "since is later than this platform's changes"
            )

        return MembershipQuery(
            role=role,
            limit=_number(params, "limit", 1),
            link=link,
            page=_number(params, "page", 1) or 1,
            since=since,
        )

    def _select(self, query: MembershipQuery) -> list[DevUser]:
        status = self.memberships.status
        if query.since is None:
            users = [u for u in self.settings.users if status[u.id] != DELETED]
        else:
            changed = self.memberships.changed_since(query.since)
            users = [u for u in self.settings.users if u.id in changed]
        # Every member of this course can use every resource link, so an
        # rlid adds each member's launch claims but removes no one.
        role = query.role_uri
        if role is not None:
            users = [u for u in users if role in u.roles]

        return users

    def _member(self, user: DevUser, query: MembershipQuery) -> dict[str, Any]:
        member: dict[str, Any] = {
            "status": self.memberships.status[user.id],
            "user_id": user.id,
            "roles": list(user.roles),
            "name": user.name,
            "email": user.email,
        }
        if query.link is not None:
            member["message"] = [
                {
                    claims.MESSAGE_TYPE: claims.RESOURCE_LINK_REQUEST,
                    claims.CUSTOM: {},
                }
            ]

        return member

    def _url(self, params: dict[str, str]) -> str:
        url = self.settings.context_memberships_url
        return f"{url}?{urlencode(params)}" if params else url


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return

    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    if not ranges & _ACCEPTABLE:
        raise ServiceRequestError(
            406,
            "not_acceptable",
            f"this service answers {claims.MEDIA_TYPE_MEMBERSHIPS}; the Accept "
            "header does not admit it",
        )


def _number(params: dict[str, str], name: str, minimum: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > _MAX_DIGITS:
        raise ServiceRequestError(
            400, "invalid_request", f"{name} must be a whole number, got {value!r}"
        )
    number = int(value)
    if number < minimum:
        raise ServiceRequestError(
            400, "invalid_request", f"{name} must be at least {minimum}"
        )

    return number


def _error_page(message: str, status: int) -> HTMLResponse:
    page = render_error("Cannot change the roster", message)
    return HTMLResponse(page, status_code=status)
