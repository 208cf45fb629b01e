"""Tool settings and platform registrations, from Python or from a TOML file.

Everything is validated when constructed; a bad value raises
:class:`ConfigurationError` naming the key, so a misconfigured tool fails at
start-up rather than on the first launch.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .exceptions import ConfigurationError

CONFIG_ENV_VAR = "LTI_MIDDLEWARE_CONFIG"

ONE_DAY = 86400.0
DEFAULT_LEEWAY = 60.0
MAX_LEEWAY = 300.0
DEFAULT_MAX_TOKEN_AGE = 3600.0
DEFAULT_MAX_TOKEN_LIFETIME = 7200.0
DEFAULT_LOGIN_TTL = 600.0
MAX_LOGIN_TTL = 3600.0
DEFAULT_LAUNCH_TTL = 7200.0
MAX_LAUNCH_TTL = 30 * ONE_DAY
DEFAULT_ALGORITHMS = ("RS256",)
DEFAULT_MAX_BODY_BYTES = 64 * 1024
MIN_BODY_LIMIT = 1024
MAX_BODY_LIMIT = 1024 * 1024
DEFAULT_USER_AGENT = "lti-middleware"
MAX_USER_AGENT_CHARS = 200
DEFAULT_HTTP_TIMEOUT = 10.0
MAX_HTTP_TIMEOUT = 60.0
DEFAULT_SERVICE_RETRIES = 3
MAX_SERVICE_RETRIES = 10
DEFAULT_SERVICE_RETRY_DEADLINE = 30.0
MAX_SERVICE_RETRY_DEADLINE = 300.0

# The allowed range of each duration setting, in seconds, both ends included.
DURATION_RANGES: Mapping[str, tuple[float, float]] = {
    # Clock skew between platform and tool; minutes of it mean a broken clock.
    "leeway": (0.0, MAX_LEEWAY),
    # Platforms issue id_tokens good for minutes, an hour at most, so a day
    # is ample. Used nonces are kept max_token_age long: this bounds the store.
    "max_token_age": (1.0, ONE_DAY),
    "max_token_lifetime": (1.0, ONE_DAY),
    # A browser goes from login to launch in seconds. The state cookie's
    # Max-Age is whole seconds: below 1 it is 0 and the browser drops it.
    "login_ttl": (1.0, MAX_LOGIN_TTL),
    # A launch id is a bearer credential for the app's later requests; a month
    # covers a tab left open for long, and keeps store expiries far from
    # Redis's integer limit (1e17 seconds broke every SET).
    "launch_ttl": (1.0, MAX_LAUNCH_TTL),
    "http_timeout": (0.1, MAX_HTTP_TIMEOUT),
    "service_retry_deadline": (1.0, MAX_SERVICE_RETRY_DEADLINE),
}

# Asymmetric only: LTI Security Framework 6.1 forbids symmetric keys and "none".
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
DEPLOYMENT_POLICIES = ("reject", "accept")

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")
_SHOWN_CHARS = 80


def check_url(key: str, value: object, *, allow_query: bool = True) -> str:
    """Return ``value`` if it is an absolute http(s) URL, else raise.

    Plain http is accepted only for localhost and 127.0.0.1, for development.
    Refused too: control characters, a user name or password, a space in the
    host, port 0 or past 65535, and a fragment (a query unless allowed).
    """
    if not isinstance(value, str) or not value:
        raise ConfigurationError(key, f"expected an absolute URL, got {_shown(value)}")
    # urlsplit quietly drops tabs and line breaks, so the URL checked would
    # not be the URL used; httpx refuses every control character anyway.
    if _CONTROL_CHARACTER.search(value):
        raise ConfigurationError(
            key, f"{_shown(value)} holds a control character; percent-encode it"
        )

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:  # "https://[::1/", a port past 65535
        raise ConfigurationError(
            key, f"{_shown(value)} is not a valid URL ({error})"
        ) from error
    # URLs go into logs and error messages, and tool URLs to platforms; the
    # message leaves the URL out so as not to repeat the password.
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(key, "must not carry a user name or password")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(key, f"expected an absolute URL, got {_shown(value)}")
    if " " in parts.hostname:
        raise ConfigurationError(key, f"{_shown(value)} has a space in its host")
    if port == 0:
        raise ConfigurationError(
            key, f"{_shown(value)} names port 0; give the port the server listens on"
        )
    if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        raise ConfigurationError(
            key, f"{_shown(value)} must use https (http only for localhost)"
        )
    if parts.fragment or (parts.query and not allow_query):
        raise ConfigurationError(
            key, f"{_shown(value)} must not carry a query or fragment"
        )

    return value


def origin_of(url: str) -> str:
    """Scheme, host and port of ``url``, as a browser's origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _check_origin(key: str, value: object) -> str:
    """``value`` as scheme://host[:port] if it is a browser origin, else raise."""
    url = check_url(key, value, allow_query=False)

    # A target is matched on its origin alone, so a path here would load and
    # then never match anything.
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.path not in ("", "/") or parts.query:
        raise ConfigurationError(
            key,
            f"{_shown(url)} is not an origin; give scheme://host[:port] only, "
            f"e.g. {origin!r}",
        )

    return origin


def _shown(value: object) -> str:
    """``repr(value)``, cut short for an error message."""
    # repr of an int past 4,300 digits raises, and a long one helps nobody.
    if isinstance(value, int) and value.bit_length() > 64:
        digits = math.floor(value.bit_length() * math.log10(2)) + 1
        return f"an integer of about {digits} digits"
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too large to show"

    if len(text) > _SHOWN_CHARS:
        return text[: _SHOWN_CHARS - 3] + "..."
    return text


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            key, f"expected a non-empty string, got {_shown(value)}"
        )
    if value != value.strip():
        raise ConfigurationError(
            key, f"{_shown(value)} has leading or trailing whitespace"
        )

    return value


def _entries(key: str, value: object) -> tuple[Any, ...]:
    # A lone string would be taken apart into its characters: "d1" as "d", "1".
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(key, f"expected a list, got {_shown(value)}")

    return tuple(value)


def _texts(key: str, value: object) -> tuple[str, ...]:
    return tuple(_text(key, entry) for entry in _entries(key, value))


def _key_files(key: str, value: object) -> tuple[Path, ...]:
    files = []
    for index, entry in enumerate(_entries(key, value)):
        name = os.fspath(entry) if isinstance(entry, str | os.PathLike) else None
        # An empty name would be the current directory; a NUL cannot be opened.
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ConfigurationError(
                key, f"entry {index} is {_shown(entry)}; expected a PEM file's path"
            )
        files.append(Path(name))

    return tuple(files)


def _user_agent(key: str, value: object) -> str:
    # It is sent as a header on every platform call: httpx cannot encode
    # "é" and h11 refuses control characters, so a bad value would fail each
    # call long after start-up.
    text = _text(key, value)
    if len(text) > MAX_USER_AGENT_CHARS:
        raise ConfigurationError(
            key,
            f"is {len(text)} characters long; keep it to {MAX_USER_AGENT_CHARS}",
        )
    if not _HEADER_TEXT.fullmatch(text):
        raise ConfigurationError(
            key,
            f"{_shown(text)} must be printable ASCII: letters, digits, spaces "
            "and punctuation, with no accents, tabs or line breaks",
        )

    return text


def _amount(number: float) -> str:
    return f"{number:.0f}" if number.is_integer() else f"{number:g}"


def _seconds(key: str, value: object, least: float, most: float) -> float:
    # TOML has nan and inf; NaN compares false with every bound, so without
    # the finite check "leeway = nan" would switch the expiry check off. An
    # int is compared as it is: math.isfinite would overflow on 400 digits.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ConfigurationError(
            key, f"expected a finite number of seconds, got {_shown(value)}"
        )
    if not least <= value <= most:
        raise ConfigurationError(
            key,
            f"expected {_amount(least)} to {_amount(most)} seconds, "
            f"got {_shown(value)}",
        )

    return float(value)


def check_retries(key: str, value: object) -> int:
    """Return ``value`` if it is a count of retries the tool allows, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            key, f"expected a whole number >= 0, got {_shown(value)}"
        )
    if value > MAX_SERVICE_RETRIES:
        raise ConfigurationError(
            key, f"{_shown(value)} is above the maximum of {MAX_SERVICE_RETRIES}"
        )

    return value


def check_retry_deadline(key: str, value: object) -> float:
    """Return ``value`` in seconds if it is a usable retry deadline, else raise."""
    return _seconds(key, value, *DURATION_RANGES["service_retry_deadline"])


@dataclass(frozen=True, kw_only=True)
class Registration:
    """One platform's registration of this tool, keyed by (issuer, client_id).

    Several registrations may share an issuer: every hosted Canvas uses one.
    ``token_audience`` is the ``aud`` of our client assertions when the platform
    publishes one that differs from ``token_url`` (Brightspace does).
    ``trusted_audiences`` lists other ``aud`` values an id_token may carry.
    """

    issuer: str
    client_id: str
    deployment_ids: tuple[str, ...]
    auth_login_url: str
    token_url: str
    key_set_url: str
    token_audience: str | None = None
    trusted_audiences: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigurationError(
                "registration.name", f"expected a string, got {_shown(self.name)}"
            )
        label = self.name or "registration"

        _text(f"{label}.issuer", self.issuer)
        _text(f"{label}.client_id", self.client_id)
        check_url(f"{label}.auth_login_url", self.auth_login_url)
        check_url(f"{label}.token_url", self.token_url)
        check_url(f"{label}.key_set_url", self.key_set_url)
        if self.token_audience is not None:
            _text(f"{label}.token_audience", self.token_audience)

        deployments = _texts(f"{label}.deployment_ids", self.deployment_ids)
        audiences = _texts(f"{label}.trusted_audiences", self.trusted_audiences)
        object.__setattr__(self, "deployment_ids", deployments)
        object.__setattr__(self, "trusted_audiences", audiences)
        if not self.name:
            object.__setattr__(self, "name", f"{self.issuer} {self.client_id}")

    @property
    def key(self) -> tuple[str, str]:
        """The (issuer, client_id) pair that identifies this registration."""
        return (self.issuer, self.client_id)


@dataclass(frozen=True, kw_only=True)
class ToolConfig:
    """The tool's own URLs, keys and the platforms it trusts.

    ``launch_url`` is the OIDC ``redirect_uri``: it is sent to platforms byte
    for byte as configured, never rebuilt from an incoming request.
    ``landing_url`` is where a launch goes when its ``target_link_uri`` is the
    launch URL itself; by default (``None``) the root of the launch URL's
    origin. ``plugin_settings`` holds each plugin's own table
    (``[plugins.redis]`` in TOML), read by that plugin. ``service_retries`` and
    ``service_retry_deadline`` bound how a service call that is safe to
    repeat is tried again after a transient failure. Durations are in
    seconds, within :data:`DURATION_RANGES`.
    """

    login_url: str
    launch_url: str
    jwks_url: str
    registrations: tuple[Registration, ...]
    private_key_files: tuple[Path, ...] = ()
    landing_url: str | None = None
    allowed_target_origins: tuple[str, ...] = ()
    allowed_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: float = DEFAULT_LEEWAY
    max_token_age: float = DEFAULT_MAX_TOKEN_AGE
    max_token_lifetime: float = DEFAULT_MAX_TOKEN_LIFETIME
    login_ttl: float = DEFAULT_LOGIN_TTL
    launch_ttl: float = DEFAULT_LAUNCH_TTL
    deployment_policy: str = "reject"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    user_agent: str = DEFAULT_USER_AGENT
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    service_retries: int = DEFAULT_SERVICE_RETRIES
    service_retry_deadline: float = DEFAULT_SERVICE_RETRY_DEADLINE
    plugin_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_urls()
        self._check_algorithms()
        for name, (least, most) in DURATION_RANGES.items():
            seconds = _seconds(f"tool.{name}", getattr(self, name), least, most)
            object.__setattr__(self, name, seconds)
        self._check_requests()

        self._check_registrations()
        self._check_plugin_settings()
        object.__setattr__(
            self,
            "private_key_files",
            _key_files("tool.private_key_files", self.private_key_files),
        )

    def _check_urls(self) -> None:
        # The middleware routes on the path alone: one with no path is never
        # served, and of two with the same path only one would be.
        routes: dict[str, str] = {}
        for name in ("login_url", "launch_url", "jwks_url"):
            key = f"tool.{name}"
            path = urlsplit(check_url(key, getattr(self, name), allow_query=False)).path
            if not path:
                example = "/lti/" + name.removesuffix("_url")
                raise ConfigurationError(key, f"needs a path to serve, e.g. {example}")
            if path in routes:
                raise ConfigurationError(
                    key, f"has the path {path!r} of {routes[path]}; give each its own"
                )
            routes[path] = key

        # Only None means the default: an empty or non-string landing_url is
        # a mistake, not a request for the default.
        if self.landing_url is None:
            landing = origin_of(self.launch_url) + "/"
        else:
            landing = check_url("tool.landing_url", self.landing_url)
        object.__setattr__(self, "landing_url", landing)

        key = "tool.allowed_target_origins"
        origins = tuple(
            _check_origin(key, o) for o in _entries(key, self.allowed_target_origins)
        )
        object.__setattr__(
            self, "allowed_target_origins", origins or (origin_of(self.launch_url),)
        )

    def _check_algorithms(self) -> None:
        key = "tool.allowed_algorithms"
        algorithms = _entries(key, self.allowed_algorithms)
        if not algorithms:
            raise ConfigurationError(key, "must not be empty")
        for alg in algorithms:
            if not isinstance(alg, str) or alg not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(
                    key,
                    f"{_shown(alg)} is not an asymmetric algorithm LTI allows; "
                    f"choose from {sorted(SUPPORTED_ALGORITHMS)}",
                )
        object.__setattr__(self, "allowed_algorithms", algorithms)

    def _check_requests(self) -> None:
        if self.deployment_policy not in DEPLOYMENT_POLICIES:
            raise ConfigurationError(
                "tool.deployment_policy",
                f"expected one of {DEPLOYMENT_POLICIES}, "
                f"got {_shown(self.deployment_policy)}",
            )
        # A login or launch form is buffered whole; a large id_token is tens
        # of kilobytes, so a megabyte is ample and bounds what a client can
        # make the tool hold.
        body = self.max_body_bytes
        if isinstance(body, bool) or not isinstance(body, int):
            raise ConfigurationError(
                "tool.max_body_bytes", f"expected a whole number, got {_shown(body)}"
            )
        if not MIN_BODY_LIMIT <= body <= MAX_BODY_LIMIT:
            raise ConfigurationError(
                "tool.max_body_bytes",
                f"expected {MIN_BODY_LIMIT} to {MAX_BODY_LIMIT}, got {_shown(body)}",
            )
        _user_agent("tool.user_agent", self.user_agent)
        check_retries("tool.service_retries", self.service_retries)

    def _check_plugin_settings(self) -> None:
        settings = dict(self.plugin_settings)
        for name, table in settings.items():
            if not isinstance(table, Mapping):
                raise ConfigurationError(f"plugins.{name}", "expected a table")
        object.__setattr__(
            self, "plugin_settings", {k: dict(v) for k, v in settings.items()}
        )

    def _check_registrations(self) -> None:
        registrations = _entries("platforms", self.registrations)
        if not registrations:
            raise ConfigurationError("platforms", "at least one registration is needed")

        seen: set[tuple[str, str]] = set()
        for registration in registrations:
            if not isinstance(registration, Registration):
                raise ConfigurationError(
                    "platforms", f"expected Registration, got {_shown(registration)}"
                )
            if registration.key in seen:
                raise ConfigurationError(
                    "platforms",
                    f"two registrations for issuer {registration.issuer!r} and "
                    f"client_id {registration.client_id!r}",
                )
            seen.add(registration.key)
        object.__setattr__(self, "registrations", registrations)

    @property
    def nonce_memory(self) -> float:
        """Seconds a used nonce or state is remembered.

        LTI Security Framework 5.1.3: a nonce is single use. We accept tokens
        issued at most ``max_token_age`` (plus leeway) ago, so remembering a
        used nonce that long means no replay can outlive the record.
        """
        return self.max_token_age + 2 * self.leeway


_TOOL_KEYS = {
    "login_url",
    "launch_url",
    "jwks_url",
    "private_key_files",
    "landing_url",
    "allowed_target_origins",
    "allowed_algorithms",
    "leeway",
    "max_token_age",
    "max_token_lifetime",
    "login_ttl",
    "launch_ttl",
    "deployment_policy",
    "max_body_bytes",
    "user_agent",
    "http_timeout",
    "service_retries",
    "service_retry_deadline",
}
_PLATFORM_KEYS = {
    "issuer",
    "client_id",
    "deployment_ids",
    "auth_login_url",
    "token_url",
    "key_set_url",
    "token_audience",
    "trusted_audiences",
    "name",
}
_LIST_KEYS = {
    "private_key_files",
    "allowed_target_origins",
    "allowed_algorithms",
    "deployment_ids",
    "trusted_audiences",
}


def _table(section: str, data: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigurationError(
            f"{section}.{unknown[0]}", f"unknown key; expected one of {sorted(allowed)}"
        )

    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _LIST_KEYS:
            if not isinstance(value, list):
                raise ConfigurationError(f"{section}.{key}", "expected a list")
            value = tuple(value)
        values[key] = value

    return values


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path) -> ToolConfig:
    """Build a :class:`ToolConfig` from parsed TOML-shaped data.

    Relative ``private_key_files`` are resolved against ``base_dir``.
    """
    unknown = sorted(set(data) - {"tool", "platforms", "plugins"})
    if unknown:
        raise ConfigurationError(
            unknown[0], "unknown section; expected tool, platforms, plugins"
        )
    tool = data.get("tool")
    if not isinstance(tool, Mapping):
        raise ConfigurationError("tool", "missing [tool] table")
    platforms = data.get("platforms")
    if not isinstance(platforms, list) or not platforms:
        raise ConfigurationError("platforms", "missing [[platforms]] tables")

    registrations = []
    for index, platform in enumerate(platforms):
        section = f"platforms[{index}]"
        if not isinstance(platform, Mapping):
            raise ConfigurationError(section, "expected a table")
        values = _table(section, platform, _PLATFORM_KEYS)
        name = values.pop("name", section)
        try:
            # Checked under the section's label first, so that an error names
            # platforms[i].<key> whatever the registration is called.
            checked = Registration(name=section, **values)
        except TypeError as error:
            raise ConfigurationError(section, str(error)) from error
        registrations.append(replace(checked, name=_text(f"{section}.name", name)))

    values = _table("tool", tool, _TOOL_KEYS)
    keys = values.get("private_key_files", ())
    values["private_key_files"] = tuple(_beside(base_dir, entry) for entry in keys)
    try:
        return ToolConfig(
            registrations=tuple(registrations),
            plugin_settings=_plugin_tables(data.get("plugins", {})),
            **values,
        )
    except TypeError as error:
        raise ConfigurationError("tool", str(error)) from error


def _beside(base_dir: Path, entry: object) -> object:
    # Only a usable name is resolved; anything else reaches ToolConfig as it
    # came, to be refused there under its key.
    if isinstance(entry, str) and entry:
        return base_dir / entry
    return entry


def _plugin_tables(data: object) -> dict[str, Mapping[str, Any]]:
    if not isinstance(data, Mapping):
        raise ConfigurationError("plugins", "expected [plugins.<name>] tables")
    return dict(data)


def load_config(path: str | os.PathLike[str] | None = None) -> ToolConfig:
    """Read a TOML configuration file.

    With no ``path``, the file named by the ``LTI_MIDDLEWARE_CONFIG``
    environment variable is read.
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR)
        if not path:
            raise ConfigurationError(CONFIG_ENV_VAR, "not set; name a TOML file")

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            str(file), f"not UTF-8 text (byte {error.start}); save it as UTF-8"
        ) from error
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path
        raise ConfigurationError(str(file), f"cannot read: {error}") from error

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(str(file), f"invalid TOML: {error}") from error
    except ValueError as error:
        # tomllib reads integers with int(), which refuses over 4,300 digits.
        raise ConfigurationError(
            str(file),
            "has an integer of over 4,300 digits, which cannot be read; "
            "no setting needs one that long",
        ) from error
    except RecursionError as error:
        raise ConfigurationError(
            str(file), "nests arrays or tables too deeply to read"
        ) from error

    return config_from_mapping(data, base_dir=file.parent)


def find_registrations(
    registrations: Iterable[Registration], issuer: str
) -> list[Registration]:
    """Registrations whose issuer equals ``issuer`` exactly (no normalising)."""
    return [r for r in registrations if r.issuer == issuer]
