"""The example third-party store (example_apps/sqlite_store) passes the kit.

It is installed as its own package (``pip install -e example_apps/sqlite_store``,
which ``make test`` does) and found through its own entry point.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest
from lti_sqlite_store import (
    SQLiteAccessTokenStore,
    SQLiteLaunchStore,
    SQLiteNonceStore,
)

from lti_middleware import LTIMiddleware, hookimpl
from lti_middleware.config import ToolConfig
from lti_middleware.exceptions import ConfigurationError, StoreError
from lti_middleware.keys import StaticKeyProvider
from lti_middleware.testing import (
    AccessTokenStoreContract,
    LaunchStoreContract,
    NonceStoreContract,
)

from ..conftest import FakePlatform, ToolClient, cached_key, inner_app, tool_config


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "lti.db"


class TestSQLiteNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self, database: Path) -> SQLiteNonceStore:
        return SQLiteNonceStore(database)

    @pytest.fixture
    def second_store(self, database: Path) -> SQLiteNonceStore:
        return SQLiteNonceStore(database)


class TestSQLiteLaunchStore(LaunchStoreContract):
    @pytest.fixture
    def store(self, database: Path) -> SQLiteLaunchStore:
        return SQLiteLaunchStore(database)

    @pytest.fixture
    def second_store(self, database: Path) -> SQLiteLaunchStore:
        return SQLiteLaunchStore(database)


class TestSQLiteAccessTokenStore(AccessTokenStoreContract):
    @pytest.fixture
    def store(self, database: Path) -> SQLiteAccessTokenStore:
        return SQLiteAccessTokenStore(database)

    @pytest.fixture
    def second_store(self, database: Path) -> SQLiteAccessTokenStore:
        return SQLiteAccessTokenStore(database)


class ToolKeys:
    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> StaticKeyProvider:
        return StaticKeyProvider([cached_key("tool")])


def sqlite_tool(platform: FakePlatform, database: Path) -> ToolClient:
    middleware = LTIMiddleware(
        inner_app(),
        config=tool_config(plugin_settings={"sqlite": {"path": str(database)}}),
        plugins=(ToolKeys(),),
        load_entry_points=True,
        http=httpx.AsyncClient(transport=httpx.MockTransport(platform.handle)),
        clock=platform.clock,
    )
    return ToolClient(middleware, platform)


async def test_entry_point_finds_the_sqlite_plugin(
    platform: FakePlatform, database: Path
) -> None:
    tool = sqlite_tool(platform, database)
    await tool.middleware.aclose()

    assert isinstance(tool.middleware.nonces, SQLiteNonceStore)
    assert isinstance(tool.middleware.launches, SQLiteLaunchStore)
    assert isinstance(tool.middleware.tokens.store, SQLiteAccessTokenStore)


async def test_launch_through_the_sqlite_plugin_and_its_replay(
    platform: FakePlatform, database: Path
) -> None:
    worker_a, worker_b = (sqlite_tool(platform, database) for _ in range(2))
    login = await worker_a.login()
    token = platform.sign(platform.claims(login.nonce))

    launched = await worker_b.launch_token(token, login)
    page = await worker_a.follow(launched)
    replays = await asyncio.gather(
        *(worker.launch_token(token, login) for worker in (worker_a, worker_b))
    )
    for tool in (worker_a, worker_b):
        await tool.http.aclose()
        await tool.middleware.aclose()

    assert page.json()["user"] == "user-1"
    assert [r.json()["error"] for r in replays] == ["state_already_used"] * 2


def test_plugin_names_a_bad_setting(tmp_path: Path) -> None:
    config = tool_config(plugin_settings={"sqlite": {"file": str(tmp_path)}})

    with pytest.raises(ConfigurationError, match=r"plugins\.sqlite\.file"):
        LTIMiddleware(inner_app(), config=config, load_entry_points=True)


async def test_unusable_database_raises_store_error(tmp_path: Path) -> None:
    store = SQLiteNonceStore(tmp_path / "missing-dir" / "lti.db")

    with pytest.raises(StoreError, match="sqlite nonce store at .*lti.db") as caught:
        await store.issue("state:x", "v", 60)

    assert isinstance(caught.value.__cause__, sqlite3.Error)
