"""lti_middleware: make any ASGI or WSGI web app an LTI 1.3 tool."""

from .ags import ActivityProgress, AGSClient, GradingProgress, Score
from .config import Registration, ToolConfig, load_config
from .exceptions import (
    ConfigurationError,
    LaunchError,
    LTIError,
    PaginationError,
    PlatformAuthError,
    PlatformResponseError,
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
    StoreError,
    TokenRequestError,
)
from .hooks import hookimpl
from .keys import KeyProvider, StaticKeyProvider, ToolKey, generate_key, load_key
from .message import LTILaunch
from .middleware import LTIMiddleware

__all__ = [
    "AGSClient",
    "ActivityProgress",
    "ConfigurationError",
    "GradingProgress",
    "KeyProvider",
    "LTIError",
    "LTILaunch",
    "LTIMiddleware",
    "LaunchError",
    "PaginationError",
    "PlatformAuthError",
    "PlatformResponseError",
    "Registration",
    "ScopeNotGrantedError",
    "Score",
    "ScoreError",
    "ServiceError",
    "StaticKeyProvider",
    "StoreError",
    "TokenRequestError",
    "ToolConfig",
    "ToolKey",
    "generate_key",
    "hookimpl",
    "load_config",
    "load_key",
]
