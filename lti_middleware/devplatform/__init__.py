"""A development LTI 1.3 platform: launches, tokens and grades, strictly checked.

For local use beside a tool, and as the judge in end-to-end tests::

    from lti_middleware.devplatform import PlatformSettings, create_platform

    settings = PlatformSettings.for_tool("http://127.0.0.1:8000")
    app = create_platform(settings)

Or from a shell: ``python -m lti_middleware.devplatform --port 8001``.
It keeps everything in memory and is not meant to face the internet.
"""

from __future__ import annotations

from .app import create_platform
from .settings import (
    DEFAULT_RESOURCE_LINKS,
    DEFAULT_USERS,
    INSTRUCTOR,
    LEARNER,
    DevResourceLink,
    DevUser,
    PlatformSettings,
    tool_registration_toml,
)

__all__ = [
    "DEFAULT_RESOURCE_LINKS",
    "DEFAULT_USERS",
    "INSTRUCTOR",
    "LEARNER",
    "DevResourceLink",
    "DevUser",
    "PlatformSettings",
    "create_platform",
    "tool_registration_toml",
]
