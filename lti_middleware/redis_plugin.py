"""The Redis plugin: answers the store hooks when ``[plugins.redis]`` is set.

Declared in the ``lti_middleware`` entry-point group under the name ``redis``,
which is also the name of its settings table. The stores are in
:mod:`lti_middleware.stores.redis`.
"""

from __future__ import annotations

from .config import ToolConfig
from .hooks import hookimpl
from .stores.redis import (
    RedisAccessTokenStore,
    RedisLaunchStore,
    RedisNonceStore,
    RedisSettings,
    connect,
)


class RedisPlugin:
    """Answers the store hooks when ``[plugins.redis]`` is configured.

    Each hook returns a store with its own client (connecting on first use),
    or None when the configuration has no ``[plugins.redis]`` table, which
    leaves the choice to other plugins and the in-memory defaults.
    """

    name = "redis"

    @hookimpl
    def lti_nonce_store(self, config: ToolConfig) -> RedisNonceStore | None:
        settings = RedisSettings.from_config(config)
        if settings is None:
            return None
        return RedisNonceStore(
            connect(settings),
            prefix=settings.prefix,
            max_value_bytes=settings.max_value_bytes,
        )

    @hookimpl
    def lti_launch_store(self, config: ToolConfig) -> RedisLaunchStore | None:
        settings = RedisSettings.from_config(config)
        if settings is None:
            return None
        return RedisLaunchStore(
            connect(settings),
            prefix=settings.prefix,
            max_value_bytes=settings.max_value_bytes,
        )

    @hookimpl
    def lti_access_token_store(
        self, config: ToolConfig
    ) -> RedisAccessTokenStore | None:
        settings = RedisSettings.from_config(config)
        if settings is None:
            return None
        return RedisAccessTokenStore(
            connect(settings),
            prefix=settings.prefix,
            max_value_bytes=settings.max_value_bytes,
            lock_wait=settings.lock_wait,
        )


#: The plugin object named by the ``redis`` entry point.
plugin = RedisPlugin()
