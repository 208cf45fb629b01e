"""The validated launch as the app's handlers see it: ``request.state.lti``.

Typed views over the claims; the raw claims stay available as ``claims``. The
id_token itself is not kept: nothing here can send it to a platform service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import claims as c
from .config import Registration

if TYPE_CHECKING:
    from .ags import AGSClient
    from .deep_linking import DeepLinking
    from .nrps import NRPSClient

# LTI Core A.2: short role names are deprecated but still sent by some platforms.
_SHORT_MEMBERSHIP = {
    "Administrator",
    "ContentDeveloper",
    "Instructor",
    "Learner",
    "Mentor",
    "Manager",
    "Member",
    "Officer",
}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _object(claims: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = claims.get(name)
    return value if isinstance(value, dict) else None


def _strings(value: object) -> tuple[str, ...]:
    # A single string stands for an array of one, as platforms send it.
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))

    return ()


def _pixels(value: object) -> int | None:
    # JSON true is a Python int; it is no width.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


@dataclass(frozen=True)
class User:
    """The launching user; ``id`` is None for an anonymous launch."""

    id: str | None
    name: str | None
    given_name: str | None
    family_name: str | None
    email: str | None
    picture: str | None

    @property
    def anonymous(self) -> bool:
        return self.id is None


@dataclass(frozen=True)
class Roles:
    """The user's role URIs, with helpers for the common checks."""

    uris: tuple[str, ...]

    def has(self, role: str) -> bool:
        """True when the user holds ``role``, a full URI or a membership name.

        ``has("Instructor")`` matches the membership URI, its deprecated short
        form, and its sub-roles (``membership/Instructor#TeachingAssistant``).
        """
        if "://" in role:
            return role in self.uris

        principal = c.MEMBERSHIP_ROLE + role
        sub_role = c.MEMBERSHIP_ROLE.rstrip("#") + "/" + role + "#"
        return any(
            uri in (principal, role) or uri.startswith(sub_role) for uri in self.uris
        )

    @property
    def is_instructor(self) -> bool:
        return self.has("Instructor")

    @property
    def is_learner(self) -> bool:
        return self.has("Learner")

    @property
    def is_admin(self) -> bool:
        """Administrator of the course, the institution or the system."""
        return self.has("Administrator") or any(
            uri
            in (
                c.INSTITUTION_ROLE + "Administrator",
                c.SYSTEM_ROLE + "Administrator",
                c.SYSTEM_ROLE + "SysAdmin",
            )
            for uri in self.uris
        )

    @property
    def is_content_developer(self) -> bool:
        return self.has("ContentDeveloper")

    @property
    def is_mentor(self) -> bool:
        return self.has("Mentor")

    @property
    def is_teaching_assistant(self) -> bool:
        return any(uri.endswith("Instructor#TeachingAssistant") for uri in self.uris)


@dataclass(frozen=True)
class Context:
    """The course or other context the link lives in."""

    id: str
    label: str | None
    title: str | None
    type: tuple[str, ...]


@dataclass(frozen=True)
class ResourceLink:
    """The link the user clicked."""

    id: str
    title: str | None
    description: str | None


@dataclass(frozen=True)
class Presentation:
    """How the platform shows the tool (launch_presentation claim)."""

    document_target: str | None
    return_url: str | None
    width: int | None
    height: int | None
    locale: str | None


@dataclass(frozen=True)
class Platform:
    """The platform instance (tool_platform claim)."""

    guid: str
    name: str | None
    product_family_code: str | None
    version: str | None
    contact_email: str | None
    url: str | None


class LTILaunch:
    """One validated launch, shared by every later request of that launch."""

    def __init__(
        self,
        *,
        launch_id: str,
        registration: Registration,
        claims: Mapping[str, Any],
        ags_factory: Any = None,
        nrps_factory: Any = None,
        deep_linking_factory: Any = None,
    ) -> None:
        self.launch_id = launch_id
        self.registration = registration
        self.claims: Mapping[str, Any] = MappingProxyType(dict(claims))
        self._ags_factory = ags_factory
        self._nrps_factory = nrps_factory
        self._deep_linking_factory = deep_linking_factory

    def __repr__(self) -> str:
        return (
            f"LTILaunch(launch_id=..., issuer={self.issuer!r}, "
            f"deployment_id={self.deployment_id!r}, "
            f"message_type={self.message_type!r})"
        )

    @property
    def issuer(self) -> str:
        return self.registration.issuer

    @property
    def client_id(self) -> str:
        return self.registration.client_id

    @property
    def deployment_id(self) -> str:
        return str(self.claims[c.DEPLOYMENT_ID])

    @property
    def message_type(self) -> str:
        return str(self.claims[c.MESSAGE_TYPE])

    @property
    def target_link_uri(self) -> str | None:
        return _text(self.claims.get(c.TARGET_LINK_URI))

    @cached_property
    def user(self) -> User:
        get = self.claims.get
        return User(
            id=_text(get("sub")),
            name=_text(get("name")),
            given_name=_text(get("given_name")),
            family_name=_text(get("family_name")),
            email=_text(get("email")),
            picture=_text(get("picture")),
        )

    @cached_property
    def roles(self) -> Roles:
        uris = self.claims.get(c.ROLES)
        if not isinstance(uris, list):
            return Roles(())
        return Roles(tuple(r for r in uris if isinstance(r, str)))

    @cached_property
    def context(self) -> Context | None:
        value = _object(self.claims, c.CONTEXT)
        if value is None:
            return None
        return Context(
            id=str(value["id"]),
            label=_text(value.get("label")),
            title=_text(value.get("title")),
            type=_strings(value.get("type")),
        )

    @cached_property
    def resource_link(self) -> ResourceLink | None:
        value = _object(self.claims, c.RESOURCE_LINK)
        if value is None:
            return None
        return ResourceLink(
            id=str(value["id"]),
            title=_text(value.get("title")),
            description=_text(value.get("description")),
        )

    @cached_property
    def custom(self) -> Mapping[str, Any]:
        return MappingProxyType(dict(_object(self.claims, c.CUSTOM) or {}))

    @cached_property
    def presentation(self) -> Presentation | None:
        value = _object(self.claims, c.LAUNCH_PRESENTATION)
        if value is None:
            return None
        return Presentation(
            document_target=_text(value.get("document_target")),
            return_url=_text(value.get("return_url")),
            width=_pixels(value.get("width")),
            height=_pixels(value.get("height")),
            locale=_text(value.get("locale")),
        )

    @cached_property
    def platform(self) -> Platform | None:
        value = _object(self.claims, c.TOOL_PLATFORM)
        if value is None:
            return None
        return Platform(
            guid=str(value["guid"]),
            name=_text(value.get("name")),
            product_family_code=_text(value.get("product_family_code")),
            version=_text(value.get("version")),
            contact_email=_text(value.get("contact_email")),
            url=_text(value.get("url")),
        )

    @cached_property
    def ags(self) -> AGSClient:
        """Assignment and Grade Services for this launch.

        Calls fail with ScopeNotGrantedError, before any request, when the
        launch did not grant the scope they need.
        """
        if self._ags_factory is None:
            raise RuntimeError("this launch is not bound to a middleware")
        client: AGSClient = self._ags_factory(self)
        return client

    @cached_property
    def nrps(self) -> NRPSClient:
        """Names and Role Provisioning Services (the roster) for this launch.

        Calls fail with ScopeNotGrantedError, before any request, when the
        launch carries no names and role service claim.
        """
        if self._nrps_factory is None:
            raise RuntimeError("this launch is not bound to a middleware")
        client: NRPSClient = self._nrps_factory(self)
        return client

    @cached_property
    def deep_linking(self) -> DeepLinking | None:
        """The deep-linking settings and response builder of this launch.

        None unless the launch is an ``LtiDeepLinkingRequest``.
        """
        if self.message_type != c.DEEP_LINKING_REQUEST:
            return None
        if self._deep_linking_factory is None:
            raise RuntimeError("this launch is not bound to a middleware")
        deep_linking: DeepLinking = self._deep_linking_factory(self)
        return deep_linking
