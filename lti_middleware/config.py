"""Tool settings and platform registrations, from Python or from a TOML file.

Everything is validated when constructed; a bad value raises
:class:`ConfigurationError` naming the key, so a misconfigured tool fails at
start-up rather than on the first launch.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .exceptions import ConfigurationError

CONFIG_ENV_VAR = "LTI_MIDDLEWARE_CONFIG"

DEFAULT_LEEWAY = 60.0
MAX_LEEWAY = 300.0
DEFAULT_MAX_TOKEN_AGE = 3600.0
DEFAULT_MAX_TOKEN_LIFETIME = 7200.0
DEFAULT_LOGIN_TTL = 600.0
DEFAULT_LAUNCH_TTL = 7200.0
DEFAULT_ALGORITHMS = ("RS256",)
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_HTTP_TIMEOUT = 10.0
MAX_HTTP_TIMEOUT = 60.0
DEFAULT_SERVICE_RETRIES = 3
MAX_SERVICE_RETRIES = 10
DEFAULT_SERVICE_RETRY_DEADLINE = 30.0
MAX_SERVICE_RETRY_DEADLINE = 300.0

# Asymmetric only: LTI Security Framework 6.1 forbids symmetric keys and "none".
SUPPORTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
DEPLOYMENT_POLICIES = ("reject", "accept")

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def check_url(key: str, value: object, *, allow_query: bool = True) -> str:
    """Return ``value`` if it is an absolute http(s) URL, else raise.

    Plain http is accepted only for localhost and 127.0.0.1, for development.
    """
    if not isinstance(value, str) or not value:
        raise ConfigurationError(key, f"expected an absolute URL, got {value!r}")

    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(key, f"expected an absolute URL, got {value!r}")
    if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        raise ConfigurationError(
            key, f"{value!r} must use https (http only for localhost)"
        )
    if parts.fragment or (parts.query and not allow_query):
        raise ConfigurationError(key, f"{value!r} must not carry a query or fragment")

    return value


def origin_of(url: str) -> str:
    """Scheme, host and port of ``url``, as a browser's origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _text(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(key, f"expected a non-empty string, got {value!r}")
    if value != value.strip():
        raise ConfigurationError(key, f"{value!r} has leading or trailing whitespace")

    return value


def _seconds(key: str, value: object, *, upper: float | None = None) -> float:
    # TOML has nan and inf; NaN compares false with every bound, so without
    # the finite check "leeway = nan" would switch the expiry check off.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            key, f"expected a finite number of seconds >= 0, got {value!r}"
        )
    if upper is not None and value > upper:
        raise ConfigurationError(key, f"{value} is above the maximum of {upper}")

    return float(value)


def check_retries(key: str, value: object) -> int:
    """Return ``value`` if it is a count of retries the tool allows, else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(key, f"expected a whole number >= 0, got {value!r}")
    if value > MAX_SERVICE_RETRIES:
        raise ConfigurationError(
            key, f"{value} is above the maximum of {MAX_SERVICE_RETRIES}"
        )

    return value


def check_retry_deadline(key: str, value: object) -> float:
    """Return ``value`` in seconds if it is a usable retry deadline, else raise."""
    deadline = _seconds(key, value, upper=MAX_SERVICE_RETRY_DEADLINE)
    if deadline < 1:
        raise ConfigurationError(key, "must be at least 1")

    return deadline


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
        label = self.name or "registration"
        _text(f"{label}.issuer", self.issuer)
        _text(f"{label}.client_id", self.client_id)
        check_url(f"{label}.auth_login_url", self.auth_login_url)
        check_url(f"{label}.token_url", self.token_url)
        check_url(f"{label}.key_set_url", self.key_set_url)
        if self.token_audience is not None:
            _text(f"{label}.token_audience", self.token_audience)

        deployments = tuple(self.deployment_ids)
        for deployment_id in deployments:
            _text(f"{label}.deployment_ids", deployment_id)
        object.__setattr__(self, "deployment_ids", deployments)
        object.__setattr__(self, "trusted_audiences", tuple(self.trusted_audiences))
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
    launch URL itself; by default the root of the launch URL's origin.
    ``plugin_settings`` holds each plugin's own table (``[plugins.redis]`` in
    TOML), read by that plugin. ``service_retries`` and
    ``service_retry_deadline`` bound how a service call that is safe to
    repeat is tried again after a transient failure. Durations are in seconds.
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
    user_agent: str = "lti-middleware"
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    service_retries: int = DEFAULT_SERVICE_RETRIES
    service_retry_deadline: float = DEFAULT_SERVICE_RETRY_DEADLINE
    plugin_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_url("tool.login_url", self.login_url, allow_query=False)
        check_url("tool.launch_url", self.launch_url, allow_query=False)
        check_url("tool.jwks_url", self.jwks_url, allow_query=False)
        landing = self.landing_url or origin_of(self.launch_url) + "/"
        check_url("tool.landing_url", landing)
        object.__setattr__(self, "landing_url", landing)

        origins = tuple(self.allowed_target_origins) or (origin_of(self.launch_url),)
        for origin in origins:
            check_url("tool.allowed_target_origins", origin, allow_query=False)
        object.__setattr__(
            self, "allowed_target_origins", tuple(o.rstrip("/") for o in origins)
        )

        self._check_algorithms()
        _seconds("tool.leeway", self.leeway, upper=MAX_LEEWAY)
        for key in ("max_token_age", "max_token_lifetime", "login_ttl", "launch_ttl"):
            if _seconds(f"tool.{key}", getattr(self, key)) == 0:
                raise ConfigurationError(f"tool.{key}", "must be above 0")
        if self.deployment_policy not in DEPLOYMENT_POLICIES:
            raise ConfigurationError(
                "tool.deployment_policy",
                f"expected one of {DEPLOYMENT_POLICIES}, got {self.deployment_policy!r}",
            )
        timeout = _seconds(
            "tool.http_timeout", self.http_timeout, upper=MAX_HTTP_TIMEOUT
        )
        if timeout < 0.1:
            raise ConfigurationError("tool.http_timeout", "must be at least 0.1")
        object.__setattr__(self, "http_timeout", timeout)
        check_retries("tool.service_retries", self.service_retries)
        deadline = check_retry_deadline(
            "tool.service_retry_deadline", self.service_retry_deadline
        )
        object.__setattr__(self, "service_retry_deadline", deadline)
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ConfigurationError("tool.max_body_bytes", "expected an int >= 1024")

        self._check_registrations()
        self._check_plugin_settings()
        object.__setattr__(
            self, "private_key_files", tuple(Path(p) for p in self.private_key_files)
        )

    def _check_algorithms(self) -> None:
        algorithms = tuple(self.allowed_algorithms)
        if not algorithms:
            raise ConfigurationError("tool.allowed_algorithms", "must not be empty")
        for alg in algorithms:
            if alg not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(
                    "tool.allowed_algorithms",
                    f"{alg!r} is not an asymmetric algorithm LTI allows; "
                    f"choose from {sorted(SUPPORTED_ALGORITHMS)}",
                )
        object.__setattr__(self, "allowed_algorithms", algorithms)

    def _check_plugin_settings(self) -> None:
        settings = dict(self.plugin_settings)
        for name, table in settings.items():
            if not isinstance(table, Mapping):
                raise ConfigurationError(f"plugins.{name}", "expected a table")
        object.__setattr__(
            self, "plugin_settings", {k: dict(v) for k, v in settings.items()}
        )

    def _check_registrations(self) -> None:
        registrations = tuple(self.registrations)
        if not registrations:
            raise ConfigurationError("platforms", "at least one registration is needed")

        seen: set[tuple[str, str]] = set()
        for registration in registrations:
            if not isinstance(registration, Registration):
                raise ConfigurationError(
                    "platforms", f"expected Registration, got {registration!r}"
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
        values.setdefault("name", section)
        try:
            registrations.append(Registration(**values))
        except TypeError as error:
            raise ConfigurationError(section, str(error)) from error

    values = _table("tool", tool, _TOOL_KEYS)
    keys = values.get("private_key_files", ())
    values["private_key_files"] = tuple(base_dir / Path(p) for p in keys)
    try:
        return ToolConfig(
            registrations=tuple(registrations),
            plugin_settings=_plugin_tables(data.get("plugins", {})),
            **values,
        )
    except TypeError as error:
        raise ConfigurationError("tool", str(error)) from error


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
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(str(file), f"cannot read: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(str(file), f"invalid TOML: {error}") from error

    return config_from_mapping(data, base_dir=file.parent)


def find_registrations(
    registrations: Iterable[Registration], issuer: str
) -> list[Registration]:
    """Registrations whose issuer equals ``issuer`` exactly (no normalising)."""
    return [r for r in registrations if r.issuer == issuer]
