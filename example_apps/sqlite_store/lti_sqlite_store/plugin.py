"""The hook implementations: SQLite stores when ``[plugins.sqlite]`` is set.

The package's ``pyproject.toml`` names :data:`plugin` in the
``lti_middleware`` entry-point group. Each hook is a factory the middleware
calls once at start-up; returning None passes the choice on, so without a
``[plugins.sqlite]`` table the in-memory defaults (or another plugin) apply.
"""

from __future__ import annotations

from pathlib import Path

from lti_middleware import ConfigurationError, ToolConfig, hookimpl

from .stores import SQLiteAccessTokenStore, SQLiteLaunchStore, SQLiteNonceStore

#: The ``[plugins.<name>]`` table this plugin reads.
PLUGIN_NAME = "sqlite"


def database_path(config: ToolConfig) -> Path | None:
    """The configured database file, or None when the table is absent.

    Raises ConfigurationError naming the key that is wrong.
    """
    table = config.plugin_settings.get(PLUGIN_NAME)
    if table is None:
        return None

    unknown = sorted(set(table) - {"path"})
    if unknown:
        raise ConfigurationError(
            f"plugins.{PLUGIN_NAME}.{unknown[0]}", "unknown key; expected path"
        )
    path = table.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ConfigurationError(
            f"plugins.{PLUGIN_NAME}.path", "expected the database file's path"
        )

    return Path(path)


class SQLitePlugin:
    """Answers the three store hooks with stores on one SQLite file."""

    @hookimpl
    def lti_nonce_store(self, config: ToolConfig) -> SQLiteNonceStore | None:
        path = database_path(config)
        return None if path is None else SQLiteNonceStore(path)

    @hookimpl
    def lti_launch_store(self, config: ToolConfig) -> SQLiteLaunchStore | None:
        path = database_path(config)
        return None if path is None else SQLiteLaunchStore(path)

    @hookimpl
    def lti_access_token_store(
        self, config: ToolConfig
    ) -> SQLiteAccessTokenStore | None:
        path = database_path(config)
        return None if path is None else SQLiteAccessTokenStore(path)


#: The plugin object named by the ``sqlite`` entry point.
plugin = SQLitePlugin()
