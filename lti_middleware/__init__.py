"""lti_middleware: make any ASGI or WSGI web app an LTI 1.3 tool."""

from .config import Registration, ToolConfig, load_config
from .exceptions import (
    ConfigurationError,
    LaunchError,
    LTIError,
    PlatformAuthError,
    PlatformResponseError,
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
    TokenRequestError,
)
from .hooks import hookimpl
from .keys import KeyProvider, StaticKeyProvider, ToolKey, generate_key, load_key
from .message import LTILaunch
from .middleware import LTIMiddleware

__all__ = [
    "ConfigurationError",
    "KeyProvider",
    "LTIError",
    "LTILaunch",
    "LTIMiddleware",
    "LaunchError",
    "PlatformAuthError",
    "PlatformResponseError",
    "Registration",
    "ScopeNotGrantedError",
    "ScoreError",
    "ServiceError",
    "StaticKeyProvider",
    "TokenRequestError",
    "ToolConfig",
    "ToolKey",
    "generate_key",
    "hookimpl",
    "load_config",
    "load_key",
]
