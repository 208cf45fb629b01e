"""lti_middleware: make any ASGI or WSGI web app an LTI 1.3 tool."""

from .ags import ActivityProgress, AGSClient, GradingProgress, LineItem, Result, Score
from .config import Registration, ToolConfig, load_config
from .deep_linking import (
    HTML,
    DeepLinking,
    DeepLinkingError,
    DeepLinkingSettings,
    File,
    Image,
    LineItemSpec,
    Link,
    LTIResourceLink,
)
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
    ServiceUnavailableError,
    StoreError,
    TokenRequestError,
)
from .hooks import hookimpl
from .keys import KeyProvider, StaticKeyProvider, ToolKey, generate_key, load_key
from .message import LTILaunch
from .middleware import LTIMiddleware
from .nrps import Member, MemberStatus, NRPSClient, Roster

__all__ = [
    "AGSClient",
    "ActivityProgress",
    "ConfigurationError",
    "DeepLinking",
    "DeepLinkingError",
    "DeepLinkingSettings",
    "File",
    "GradingProgress",
    "HTML",
    "Image",
    "KeyProvider",
    "LTIError",
    "LTILaunch",
    "LTIMiddleware",
    "LTIResourceLink",
    "LaunchError",
    "LineItem",
    "LineItemSpec",
    "Link",
    "Member",
    "MemberStatus",
    "NRPSClient",
    "PaginationError",
    "PlatformAuthError",
    "PlatformResponseError",
    "Registration",
    "Result",
    "Roster",
    "ScopeNotGrantedError",
    "Score",
    "ScoreError",
    "ServiceError",
    "ServiceUnavailableError",
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
