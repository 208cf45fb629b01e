"""Settings of the development platform, and the URLs it serves.

Every URL a tool registration needs is a property of :class:`PlatformSettings`,
so a tool configuration can be written from the settings alone; see
:func:`tool_registration_toml`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

from ..claims import (
    DEEP_LINKING_REQUEST,
    MEMBERSHIP_ROLE,
    RESOURCE_LINK_REQUEST,
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_NRPS,
    SCOPE_RESULT_READONLY,
    SCOPE_SCORE,
)
from ..exceptions import ConfigurationError
from ..keys import ToolKey, generate_key

DEFAULT_BASE_URL = "http://127.0.0.1:8001"
DEFAULT_TOOL_BASE = "http://127.0.0.1:8000"
DEFAULT_CLIENT_ID = "dev-tool"
DEFAULT_DEPLOYMENT_ID = "dev-deployment-1"
DEFAULT_ID_TOKEN_LIFETIME = 300
DEFAULT_ACCESS_TOKEN_LIFETIME = 3600
DEFAULT_HINT_LIFETIME = 600
#: Moodle's line item URLs carry ``?type_id=<tool type>``; ours do too.
TYPE_ID = "1"
LINE_ITEM_QUERY = "type_id=" + TYPE_ID

#: Every AGS scope; a platform may grant a tool fewer.
AGS_SCOPES = (
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_RESULT_READONLY,
    SCOPE_SCORE,
)

INSTRUCTOR = MEMBERSHIP_ROLE + "Instructor"
LEARNER = MEMBERSHIP_ROLE + "Learner"

AUTH_PATH = "/oidc/auth"
TOKEN_PATH = "/oauth2/token"
KEY_SET_PATH = "/.well-known/jwks.json"
LAUNCH_PATH = "/launch"
GRADEBOOK_PATH = "/gradebook"
STATS_PATH = "/stats"
AGS_PATH = "/ags/contexts"
DEEP_LINKING_RETURN_PATH = "/deep-linking/return"
#: The id of the deep-linking placement: its launches are deep-linking requests.
DEEP_LINKING_LINK_ID = "deep-linking"
NRPS_PATH = "/nrps/contexts"
ROSTER_PATH = "/roster"
#: Members per roster page at most, whatever ``limit`` asks (Canvas: 50).
DEFAULT_NRPS_PAGE_SIZE = 50


@dataclass(frozen=True)
class DevUser:
    """A platform user; ``id`` becomes the id_token's ``sub``."""

    id: str
    name: str
    email: str
    roles: tuple[str, ...]

    @property
    def role_names(self) -> str:
        """Short role names for display, e.g. ``Instructor``."""
        return ", ".join(role.rsplit("#", 1)[-1] for role in self.roles)


@dataclass(frozen=True)
class DevResourceLink:
    """A placement of the tool in the course, with its own line item.

    ``custom`` holds the custom parameters sent in its launches, ``url`` the
    URL a tool asked for by deep linking, and ``graded`` whether it has a
    gradebook column. ``message_type`` is the kind of launch it starts.
    """

    id: str
    title: str
    line_item_id: str
    line_item_label: str
    score_maximum: float = 10.0
    custom: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    graded: bool = True
    message_type: str = RESOURCE_LINK_REQUEST


DEFAULT_USERS = (
    DevUser("instructor-1", "Ada Instructor", "ada@example.edu", (INSTRUCTOR,)),
    DevUser("learner-1", "Ben Learner", "ben@example.edu", (LEARNER,)),
    DevUser("learner-2", "Chloé Learner", "chloe@example.edu", (LEARNER,)),
)
DEFAULT_RESOURCE_LINKS = (DevResourceLink("rl-1", "Quiz 1", "1", "Quiz 1", 10.0),)


@dataclass(frozen=True, kw_only=True)
class PlatformSettings:
    """Who the platform is, which tool it registered, and its course.

    ``base_url`` is the platform's issuer and the origin it is served at
    (scheme, host and port; no path). ``tool_redirect_uris`` are the
    registered redirect URIs, compared character for character. ``key`` signs
    id_tokens; a fresh one is generated when it is None. ``clock`` returns
    seconds since the epoch. Lifetimes are in seconds.
    """

    base_url: str = DEFAULT_BASE_URL
    client_id: str = DEFAULT_CLIENT_ID
    deployment_id: str = DEFAULT_DEPLOYMENT_ID
    tool_login_url: str = DEFAULT_TOOL_BASE + "/lti/login"
    tool_redirect_uris: tuple[str, ...] = (DEFAULT_TOOL_BASE + "/lti/launch",)
    tool_jwks_url: str = DEFAULT_TOOL_BASE + "/lti/jwks"
    tool_target_link_uri: str = DEFAULT_TOOL_BASE + "/"
    users: tuple[DevUser, ...] = DEFAULT_USERS
    resource_links: tuple[DevResourceLink, ...] = DEFAULT_RESOURCE_LINKS
    context_id: str = "course-1"
    context_label: str = "DEV101"
    context_title: str = "Development Course"
    platform_name: str = "lti-middleware development platform"
    token_audience: str | None = None
    ags_scopes: tuple[str, ...] = AGS_SCOPES
    nrps_enabled: bool = True
    nrps_page_size: int = DEFAULT_NRPS_PAGE_SIZE
    login_method: str = "GET"
    #: Send ``lti_storage_target`` and answer platform storage messages.
    platform_storage: bool = False
    id_token_lifetime: int = DEFAULT_ID_TOKEN_LIFETIME
    access_token_lifetime: int = DEFAULT_ACCESS_TOKEN_LIFETIME
    hint_lifetime: int = DEFAULT_HINT_LIFETIME
    key: ToolKey | None = None
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        _check_origin("base_url", self.base_url)
        for name in ("tool_login_url", "tool_jwks_url", "tool_target_link_uri"):
            _check_url(name, getattr(self, name))
        object.__setattr__(self, "tool_redirect_uris", tuple(self.tool_redirect_uris))
        if not self.tool_redirect_uris:
            raise ConfigurationError("tool_redirect_uris", "register at least one")
        for uri in self.tool_redirect_uris:
            _check_url("tool_redirect_uris", uri)

        self._check_course()
        object.__setattr__(self, "ags_scopes", tuple(self.ags_scopes))
        unknown = sorted(set(self.ags_scopes) - set(AGS_SCOPES))
        if unknown:
            raise ConfigurationError("ags_scopes", f"unknown scope {unknown[0]!r}")
        size = self.nrps_page_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError("nrps_page_size", f"expected >= 1, got {size!r}")
        if self.login_method not in ("GET", "POST"):
            raise ConfigurationError("login_method", "expected 'GET' or 'POST'")
        for name in ("id_token_lifetime", "access_token_lifetime", "hint_lifetime"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(name, f"expected seconds > 0, got {value!r}")
        if self.key is None:
            object.__setattr__(self, "key", generate_key())

    def _check_course(self) -> None:
        for name in ("client_id", "deployment_id", "context_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or value != value.strip():
                raise ConfigurationError(name, f"expected a trimmed string: {value!r}")
        if "/" in self.context_id:
            raise ConfigurationError("context_id", "must not contain '/'")

        object.__setattr__(self, "users", tuple(self.users))
        user_ids = [user.id for user in self.users]
        if not user_ids or len(set(user_ids)) != len(user_ids):
            raise ConfigurationError("users", "need at least one user, ids unique")

        links = tuple(self.resource_links)
        object.__setattr__(self, "resource_links", links)
        if not links or len({link.id for link in links}) != len(links):
            raise ConfigurationError(
                "resource_links", "need at least one resource link, ids unique"
            )
        if any(link.id == DEEP_LINKING_LINK_ID for link in links):
            raise ConfigurationError(
                "resource_links", f"{DEEP_LINKING_LINK_ID!r} is reserved"
            )
        if len({link.line_item_id for link in links}) != len(links):
            raise ConfigurationError("resource_links", "line item ids must be unique")
        for link in links:
            if "/" in link.line_item_id:
                raise ConfigurationError("resource_links", "no '/' in line_item_id")
            if link.score_maximum <= 0:
                raise ConfigurationError("resource_links", "score_maximum must be > 0")

    @property
    def signing_key(self) -> ToolKey:
        """The key that signs id_tokens (set in ``__post_init__``)."""
        if self.key is None:  # pragma: no cover - __post_init__ always sets it
            raise ConfigurationError("key", "no signing key")
        return self.key

    @property
    def issuer(self) -> str:
        """The ``iss`` of every id_token: ``base_url`` exactly."""
        return self.base_url

    @property
    def auth_login_url(self) -> str:
        """The OIDC authorization endpoint (GET or POST)."""
        return self.base_url + AUTH_PATH

    @property
    def token_url(self) -> str:
        """The OAuth 2 token endpoint for client credentials grants."""
        return self.base_url + TOKEN_PATH

    @property
    def expected_token_audience(self) -> str:
        """The ``aud`` a client assertion must carry."""
        return self.token_audience or self.token_url

    @property
    def key_set_url(self) -> str:
        """The platform's public key set (JWKS)."""
        return self.base_url + KEY_SET_PATH

    @property
    def home_url(self) -> str:
        """The page listing users with their launch links."""
        return self.base_url + "/"

    @property
    def launch_url(self) -> str:
        """Where a launch starts; add ``user_id`` and ``resource_link_id``."""
        return self.base_url + LAUNCH_PATH

    @property
    def gradebook_url(self) -> str:
        """The page listing line items and scores."""
        return self.base_url + GRADEBOOK_PATH

    @property
    def stats_url(self) -> str:
        """Counters as JSON, for tests and measurements."""
        return self.base_url + STATS_PATH

    @property
    def roster_url(self) -> str:
        """The page listing the course's members and their status."""
        return self.base_url + ROSTER_PATH

    @property
    def context_memberships_url(self) -> str:
        """The NRPS membership container URL of the course."""
        context = quote(self.context_id, safe="")
        return f"{self.base_url}{NRPS_PATH}/{context}/memberships"

    @property
    def service_scopes(self) -> tuple[str, ...]:
        """Every scope the tool may be granted: AGS's, and NRPS's when enabled."""
        return self.ags_scopes + ((SCOPE_NRPS,) if self.nrps_enabled else ())

    @property
    def context_path(self) -> str:
        """The URL path of the course's AGS service root."""
        return AGS_PATH + "/" + quote(self.context_id, safe="")

    @property
    def lineitems_url(self) -> str:
        """The AGS line items container URL, query string included."""
        return f"{self.base_url}{self.context_path}/lineitems?{LINE_ITEM_QUERY}"

    def line_item_url(self, line_item_id: str) -> str:
        """A line item's id: its URL, with a query string like Moodle's."""
        item = quote(line_item_id, safe="")
        return (
            f"{self.base_url}{self.context_path}/lineitems/{item}/lineitem"
            f"?{LINE_ITEM_QUERY}"
        )

    def scores_url(self, line_item_id: str) -> str:
        """The scores URL: the line item path plus ``/scores``, same query."""
        path, query = self.line_item_url(line_item_id).split("?", 1)
        return f"{path}/scores?{query}"

    def find_user(self, user_id: str) -> DevUser | None:
        """The user with ``user_id``, or None."""
        return next((user for user in self.users if user.id == user_id), None)

    def find_resource_link(self, link_id: str) -> DevResourceLink | None:
        """The resource link with ``link_id`` (or the deep-linking placement)."""
        if link_id == DEEP_LINKING_LINK_ID:
            return self.deep_linking_placement
        return next((link for link in self.resource_links if link.id == link_id), None)

    def find_line_item(self, line_item_id: str) -> DevResourceLink | None:
        """The resource link owning line item ``line_item_id``, or None."""
        links = [link for link in self.resource_links if link.graded]
        return next((link for link in links if link.line_item_id == line_item_id), None)

    @property
    def deep_linking_placement(self) -> DevResourceLink:
        """Where an instructor adds content: launches are deep-linking requests."""
        return DevResourceLink(
            DEEP_LINKING_LINK_ID,
            "Add content (deep linking)",
            line_item_id="",
            line_item_label="",
            graded=False,
            message_type=DEEP_LINKING_REQUEST,
        )

    @property
    def deep_linking_return_url(self) -> str:
        """The ``deep_link_return_url``; its query string must come back too."""
        query = urlencode({"context_id": self.context_id})
        return f"{self.base_url}{DEEP_LINKING_RETURN_PATH}?{query}"

    @classmethod
    def for_tool(
        cls,
        tool_base: str = DEFAULT_TOOL_BASE,
        *,
        base_url: str = DEFAULT_BASE_URL,
        **overrides: object,
    ) -> PlatformSettings:
        """Settings for a tool using the middleware's usual paths under ``tool_base``.

        The tool is expected at ``/lti/login``, ``/lti/launch`` and
        ``/lti/jwks``; launches target ``tool_base + "/"``.
        """
        tool_base = tool_base.rstrip("/")
        values: dict[str, object] = {
            "base_url": base_url,
            "tool_login_url": tool_base + "/lti/login",
            "tool_redirect_uris": (tool_base + "/lti/launch",),
            "tool_jwks_url": tool_base + "/lti/jwks",
            "tool_target_link_uri": tool_base + "/",
        }
        values.update(overrides)

        return cls(**values)  # type: ignore[arg-type]


def tool_registration_toml(settings: PlatformSettings) -> str:
    """A ``[[platforms]]`` TOML block registering this platform with a tool."""
    lines = [
        "[[platforms]]",
        f"issuer = {_toml_string(settings.issuer)}",
        f"client_id = {_toml_string(settings.client_id)}",
        f"deployment_ids = [{_toml_string(settings.deployment_id)}]",
        f"auth_login_url = {_toml_string(settings.auth_login_url)}",
        f"token_url = {_toml_string(settings.token_url)}",
        f"key_set_url = {_toml_string(settings.key_set_url)}",
    ]
    if settings.token_audience is not None:
        lines.append(f"token_audience = {_toml_string(settings.token_audience)}")

    return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_url(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigurationError(name, f"expected a URL, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ConfigurationError(name, f"expected an absolute http(s) URL: {value!r}")


def _check_origin(name: str, value: object) -> None:
    _check_url(name, value)
    parts = urlsplit(str(value))
    if parts.path or parts.query:
        raise ConfigurationError(
            name, f"expected scheme://host[:port] with no path or slash: {value!r}"
        )
