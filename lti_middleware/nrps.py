"""Names and Role Provisioning Services 2.0: the roster of the launch's context.

An :class:`NRPSClient` is bound to one launch: the membership URL comes from
the launch's names and role service claim, and calls authenticate with access
tokens for the ``contextmembership.readonly`` scope, never with the id_token.
A launch without the claim was not granted the service, and calls fail before
anything is sent. Every page of a listing is read; a listing whose next link
loops fails with a PaginationError rather than returning part of the roster.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from . import claims as c
from .config import Registration, origin_of
from .exceptions import (
    PaginationError,
    PlatformResponseError,
    ScopeNotGrantedError,
    ServiceError,
)
from .message import Context, Roles
from .retries import RetryPolicy
from .services import MAX_BODY_CHARS, ServiceSession
from .tokens import AccessTokenClient
from .transport import platform_text

__all__ = [
    "Member",
    "MemberStatus",
    "NRPSClient",
    "Roster",
    "parse_member",
]

logger = logging.getLogger(__name__)


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


class MemberStatus(enum.StrEnum):
    """A membership's status (NRPS 2.0); Deleted appears only in differences."""

    ACTIVE = "Active"
    INACTIVE = "Inactive"
    DELETED = "Deleted"


@dataclass(frozen=True, kw_only=True)
class Member:
    """One member of the context, as the platform shared it.

    ``user_id`` is the ``sub`` the member's launches carry. Names, email and
    picture are None unless the platform shares them. ``message`` holds the
    launch claims the platform lists for the member (sent with an ``rlid``
    query), ``custom`` the custom claim of the first one that has it, and
    ``raw`` the member object as received. Personal data is left out of the
    repr, so a logged member shows no name or email.
    """

    user_id: str
    status: MemberStatus | str = MemberStatus.ACTIVE
    roles: tuple[str, ...] = ()
    name: str | None = field(default=None, repr=False)
    given_name: str | None = field(default=None, repr=False)
    family_name: str | None = field(default=None, repr=False)
    middle_name: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    picture: str | None = field(default=None, repr=False)
    lis_person_sourcedid: str | None = None
    lti11_legacy_user_id: str | None = None
    message: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    custom: Mapping[str, Any] = field(default_factory=_empty, repr=False)
    raw: Mapping[str, Any] = field(default_factory=_empty, repr=False)

    @property
    def is_active(self) -> bool:
        """True when the status is Active."""
        return self.status == MemberStatus.ACTIVE

    @property
    def is_instructor(self) -> bool:
        """True for an instructor, teaching assistants included."""
        return Roles(self.roles).is_instructor

    @property
    def is_learner(self) -> bool:
        """True for a learner."""
        return Roles(self.roles).is_learner

    def has_role(self, role: str) -> bool:
        """True when the member holds ``role``; see :meth:`Roles.has`."""
        return Roles(self.roles).has(role)


@dataclass(frozen=True)
class Roster:
    """The members of a context, every page read.

    ``context`` is the container's context (None when the platform sent
    none); ``differences_url`` the ``Link: rel="differences"`` URL, to fetch
    the changes since this listing with :meth:`NRPSClient.get_differences`.
    """

    members: tuple[Member, ...]
    context: Context | None = None
    differences_url: str | None = None
    id: str | None = None

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _identifier(value: object) -> str | None:
    # The spec's ids are strings; some platforms send numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)

    return value if isinstance(value, str) and value else None


def _status(value: object) -> MemberStatus | str:
    # NRPS 2.0: a member without a status is Active.
    if value is None:
        return MemberStatus.ACTIVE
    text = str(value)
    for status in MemberStatus:
        if text.casefold() == status.value.casefold():
            return status

    return text


def _messages(value: object) -> tuple[Mapping[str, Any], ...]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        return ()

    return tuple(MappingProxyType(dict(m)) for m in value if isinstance(m, Mapping))


def parse_member(data: object) -> Member:
    """A :class:`Member` from one entry of a container's ``members``.

    Optional members of the wrong type are read as absent. Raises ValueError
    when the entry is not an object or has no ``user_id``; the message holds
    no personal data.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"a member is a {type(data).__name__}, not an object")
    user_id = _identifier(data.get("user_id"))
    if user_id is None:
        raise ValueError("a member has no user_id")

    roles = data.get("roles")
    if isinstance(roles, str):
        roles = [roles]
    message = _messages(data.get("message"))
    custom: Mapping[str, Any] = next(
        (m[c.CUSTOM] for m in message if isinstance(m.get(c.CUSTOM), Mapping)), {}
    )

    return Member(
        user_id=user_id,
        status=_status(data.get("status")),
        roles=tuple(r for r in roles if isinstance(r, str))
        if isinstance(roles, list)
        else (),
        name=_text(data.get("name")),
        given_name=_text(data.get("given_name")),
        family_name=_text(data.get("family_name")),
        middle_name=_text(data.get("middle_name")),
        email=_text(data.get("email")),
        picture=_text(data.get("picture")),
        lis_person_sourcedid=_identifier(data.get("lis_person_sourcedid")),
        lti11_legacy_user_id=_identifier(data.get("lti11_legacy_user_id")),
        message=message,
        custom=MappingProxyType(dict(custom)),
        raw=MappingProxyType(dict(data)),
    )


def _context(value: object) -> Context | None:
    if not isinstance(value, Mapping):
        return None
    context_id = _identifier(value.get("id"))
    if context_id is None:
        return None

    kinds = value.get("type")
    return Context(
        id=context_id,
        label=_text(value.get("label")),
        title=_text(value.get("title")),
        type=tuple(k for k in kinds if isinstance(k, str))
        if isinstance(kinds, list)
        else (),
    )


def _with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url

    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _malformed(url: str, response: httpx.Response, what: str) -> PlatformResponseError:
    # A membership body holds names and emails: keep it on the error for
    # debugging, but out of the message, which ends up in logs.
    error = PlatformResponseError(
        method=response.request.method,
        url=url,
        status=response.status_code,
        body="(body withheld: it may hold personal data; see .body)",
        what=what,
    )
    error.body = platform_text(response, MAX_BODY_CHARS)
    return error


class _Page(NamedTuple):
    members: list[Member]
    context: Context | None
    id: str | None
    differences_url: str | None


class NRPSClient:
    """The roster of one launch's context.

    ``service`` is the value of the launch's names and role service claim
    (``https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice``),
    None when the launch has none; ``resource_link_id`` the launch's resource
    link, used when a call passes ``resource_link_id=True``. Roster reads are
    tried again after a transient failure as ``retry`` allows (the defaults
    of :class:`~lti_middleware.retries.RetryPolicy` when not given).
    """

    def __init__(
        self,
        *,
        service: Mapping[str, Any] | None,
        registration: Registration,
        tokens: AccessTokenClient,
        http: httpx.AsyncClient,
        resource_link_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._granted = isinstance(service, Mapping)
        service = service if isinstance(service, Mapping) else {}
        url = service.get("context_memberships_url")
        self._url = url if isinstance(url, str) and url else None
        versions = service.get("service_versions")
        self._versions = (
            tuple(v for v in versions if isinstance(v, str))
            if isinstance(versions, list)
            else ()
        )
        self._resource_link_id = resource_link_id
        self._session = ServiceSession(
            registration=registration,
            tokens=tokens,
            http=http,
            origins={origin_of(self._url)} if self._url else set(),
            service="roster service",
            retry=retry,
        )

    @property
    def available(self) -> bool:
        """True when the launch granted the service (its claim is present)."""
        return self._granted and self._url is not None

    @property
    def context_memberships_url(self) -> str | None:
        """The membership container URL from the launch's claim."""
        return self._url

    @property
    def service_versions(self) -> tuple[str, ...]:
        """The NRPS versions the platform declared, e.g. ``("2.0",)``."""
        return self._versions

    async def get_members(
        self,
        *,
        role: str | None = None,
        limit: int | None = None,
        resource_link_id: str | bool | None = None,
    ) -> Roster:
        """The members of the context, every page, filtered as given.

        ``role`` is a role URI (or a short name, for platforms that take
        one); ``limit`` the page size asked for (the platform may send
        fewer); ``resource_link_id`` limits the roster to members who can
        use that resource link, True meaning the launch's own, and makes the
        platform list each member's launch claims (``Member.message``).

        Raises ScopeNotGrantedError when the launch did not grant the
        service, ServiceError for an invalid filter, TokenRequestError when
        no token is issued, PlatformResponseError when the platform refuses
        or sends something other than a membership container, and
        PaginationError when a next link loops. Nothing is sent when a local
        check fails.
        """
        url = self._query_url(role, limit, resource_link_id)

        return await self._read_roster(url, "membership listing")

    async def iter_members(
        self,
        *,
        role: str | None = None,
        limit: int | None = None,
        resource_link_id: str | bool | None = None,
    ) -> AsyncIterator[Member]:
        """The members one by one, a page fetched when the previous is used up.

        Takes and raises what :meth:`get_members` does. For large courses:
        only one page is held at a time. An error on a later page comes after
        the members of the earlier pages; treat the listing as incomplete.
        """
        url = self._query_url(role, limit, resource_link_id)
        async for page in self._pages(url, "membership listing"):
            for member in page.members:
                yield member

    async def get_differences(self, url: str) -> Roster:
        """The changes since an earlier listing, at its ``differences_url``.

        Members who left come with status Deleted. The URL must be on the
        origin of the launch's membership URL. Raises as :meth:`get_members`.
        """
        self._need()
        if not isinstance(url, str) or not url:
            raise ServiceError(
                f"a differences URL must be a non-empty string, got {url!r}"
            )

        return await self._read_roster(url, "membership differences")

    def _need(self) -> str:
        if not self._granted:
            raise ScopeNotGrantedError(c.SCOPE_NRPS, [])
        if self._url is None:
            raise ServiceError(
                "the launch's names and role service claim has no "
                "context_memberships_url; the platform's roster service cannot "
                "be reached"
            )

        return self._url

    def _query_url(
        self, role: str | None, limit: int | None, rlid: str | bool | None
    ) -> str:
        url = self._need()
        params: dict[str, str] = {}
        if role is not None:
            if not isinstance(role, str) or not role.strip():
                raise ServiceError(f"role must be a role URI or name, got {role!r}")
            params["role"] = role
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ServiceError(f"limit must be an integer >= 1, got {limit!r}")
            params["limit"] = str(limit)
        link = self._resource_link(rlid)
        if link is not None:
            params["rlid"] = link

        return _with_query(url, params)

    def _resource_link(self, rlid: str | bool | None) -> str | None:
        if rlid is None or rlid is False:
            return None
        if rlid is True:
            if self._resource_link_id is None:
                raise ServiceError(
                    "resource_link_id=True needs a launch from a resource link, "
                    "and this launch has none; pass the resource link id"
                )
            return self._resource_link_id
        if not isinstance(rlid, str) or not rlid:
            raise ServiceError(
                f"resource_link_id must be an id, True or None, got {rlid!r}"
            )

        return rlid

    async def _read_roster(self, url: str, what: str) -> Roster:
        members: list[Member] = []
        first: _Page | None = None
        differences: str | None = None
        async for page in self._pages(url, what):
            first = first or page
            members.extend(page.members)
            # The earliest marker: changes made while later pages were read
            # then show up as differences instead of being missed.
            differences = differences or page.differences_url

        return Roster(
            members=tuple(members),
            context=first.context if first else None,
            differences_url=differences,
            id=first.id if first else None,
        )

    async def _pages(self, url: str, what: str) -> AsyncIterator[_Page]:
        pages = self._session.pages(
            url, scopes=(c.SCOPE_NRPS,), accept=c.MEDIA_TYPE_MEMBERSHIPS, what=what
        )
        async for response in pages:
            yield self._read_page(response, what)

    def _read_page(self, response: httpx.Response, what: str) -> _Page:
        url = str(response.request.url)
        expected = f"{what} (expected a membership container with a members array)"
        try:
            body = response.json()
        except ValueError:
            raise _malformed(url, response, expected) from None
        if not isinstance(body, Mapping) or not isinstance(body.get("members"), list):
            raise _malformed(url, response, expected)
        # Some platforms (lti1p3platform 0.1.8) name the next page in the body,
        # where NRPS 2.0 never looks; reading on would give a partial roster.
        in_body = body.get("next")
        if in_body and self._session.link(response, "next", url) is None:
            raise PaginationError(
                f"{what}: the platform names a next page in the body's 'next' "
                "member instead of a Link header (NRPS 2.0); the roster would "
                "be incomplete"
            )

        members = []
        for index, item in enumerate(body["members"]):
            try:
                members.append(parse_member(item))
            except ValueError as error:
                problem = f"{what} (member {index}: {error})"
                raise _malformed(url, response, problem) from error
        logger.debug("%s: %d members on this page", what, len(members))

        return _Page(
            members=members,
            context=_context(body.get("context")),
            id=_text(body.get("id")),
            differences_url=self._session.link(response, "differences", url),
        )
