"""Example store plugin for lti-middleware on SQLite."""

from .stores import SQLiteAccessTokenStore, SQLiteLaunchStore, SQLiteNonceStore

__all__ = ["SQLiteAccessTokenStore", "SQLiteLaunchStore", "SQLiteNonceStore"]
