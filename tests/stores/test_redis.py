"""The Redis stores against a real Redis: the contract, keys, limits, faults.

Also the plugin: found through its entry point, it puts every store of the
middleware on Redis, and a login on one worker can be launched on another.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from lti_middleware import LTIMiddleware, hookimpl
from lti_middleware.config import ToolConfig
from lti_middleware.exceptions import ConfigurationError, StoreError
from lti_middleware.keys import StaticKeyProvider
from lti_middleware.redis_plugin import plugin
from lti_middleware.stores.memory import MemoryLaunchStore, MemoryNonceStore
from lti_middleware.stores.redis import (
    RedisAccessTokenStore,
    RedisLaunchStore,
    RedisNonceStore,
    RedisSettings,
    _milliseconds,
    connect,
)
from lti_middleware.testing import (
    AccessTokenStoreContract,
    LaunchStoreContract,
    NonceStoreContract,
    eventually,
)
from lti_middleware.tokens import AccessTokenClient

from ..conftest import FakePlatform, ToolClient, cached_key, inner_app, tool_config
from ..test_launch import assert_refused
from ..test_tokens import SCORE, FakeTokenEndpoint, make_registration


@pytest.fixture
def settings(redis_url: str, redis_prefix: str) -> RedisSettings:
    return RedisSettings(url=redis_url, prefix=redis_prefix)


class TestRedisNonceStore(NonceStoreContract):
    @pytest.fixture
    async def store(self, settings: RedisSettings) -> AsyncIterator[RedisNonceStore]:
        store = RedisNonceStore(connect(settings), prefix=settings.prefix)
        yield store
        await store.aclose()

    @pytest.fixture
    async def second_store(
        self, settings: RedisSettings
    ) -> AsyncIterator[RedisNonceStore]:
        store = RedisNonceStore(connect(settings), prefix=settings.prefix)
        yield store
        await store.aclose()


class TestRedisLaunchStore(LaunchStoreContract):
    @pytest.fixture
    async def store(self, settings: RedisSettings) -> AsyncIterator[RedisLaunchStore]:
        store = RedisLaunchStore(connect(settings), prefix=settings.prefix)
        yield store
        await store.aclose()

    @pytest.fixture
    async def second_store(
        self, settings: RedisSettings
    ) -> AsyncIterator[RedisLaunchStore]:
        store = RedisLaunchStore(connect(settings), prefix=settings.prefix)
        yield store
        await store.aclose()


class TestRedisAccessTokenStore(AccessTokenStoreContract):
    @pytest.fixture
    async def store(
        self, settings: RedisSettings
    ) -> AsyncIterator[RedisAccessTokenStore]:
        store = RedisAccessTokenStore(connect(settings), prefix=settings.prefix)
        yield store
        await store.aclose()

    @pytest.fixture
    async def second_store(
        self, settings: RedisSettings
    ) -> AsyncIterator[RedisAccessTokenStore]:
        store = RedisAccessTokenStore(connect(settings), prefix=settings.prefix)
        yield store
        await store.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_keys_are_namespaced_and_expire_in_milliseconds(
    settings: RedisSettings, raw: redis.asyncio.Redis
) -> None:
    client = connect(settings)
    nonces = RedisNonceStore(client, prefix=settings.prefix)
    launches = RedisLaunchStore(client, prefix=settings.prefix)
    tokens = RedisAccessTokenStore(client, prefix=settings.prefix)

    await nonces.issue("state:abc", "record", 1.5)
    await launches.save("L1", "{}", 2.25)
    await tokens.put("lti-token:f00", "{}", 60)
    async with tokens.lock("lti-token:f00", ttl=30):
        keys = sorted(await raw.keys(settings.prefix + "*"))
    await client.aclose()

    p = settings.prefix
    assert keys == sorted(
        [
            f"{p}launch:{hashed('L1')}",
            f"{p}once:{hashed('state:abc')}",
            f"{p}token-lock:{hashed('lti-token:f00')}",
            f"{p}token:{hashed('lti-token:f00')}",
        ]
    )
    # The secrets themselves never appear in key names.
    assert not any("abc" in key or "L1" in key for key in keys)
    assert 1000 < await raw.pttl(f"{p}once:{hashed('state:abc')}") <= 1500
    assert 2000 < await raw.pttl(f"{p}launch:{hashed('L1')}") <= 2250
    assert not await raw.exists(f"{p}token-lock:{hashed('lti-token:f00')}")


def hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def test_consume_leaves_a_tombstone_for_remember_for(
    settings: RedisSettings, raw: redis.asyncio.Redis
) -> None:
    store = RedisNonceStore(connect(settings), prefix=settings.prefix)
    await store.issue("nonce:n1", "secret-state", 60)

    await store.consume("nonce:n1", 3600)
    await store.aclose()

    key = f"{settings.prefix}once:{hashed('nonce:n1')}"
    assert await raw.get(key) == "u"  # the value is not kept once used
    assert 3590_000 < await raw.pttl(key) <= 3600_000


@pytest.mark.parametrize(
    ("seconds", "milliseconds"), [(1.5, 1500), (0.0001, 1), (0, 1), (-5, 1)]
)
def test_ttl_becomes_at_least_one_millisecond(
    seconds: float, milliseconds: int
) -> None:
    assert _milliseconds(seconds) == milliseconds


@pytest.mark.parametrize("seconds", [float("inf"), float("nan")])
def test_ttl_must_be_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        _milliseconds(seconds)


async def test_absurd_values_and_keys_are_refused(
    settings: RedisSettings, raw: redis.asyncio.Redis
) -> None:
    client = connect(settings)
    nonces = RedisNonceStore(client, prefix=settings.prefix, max_value_bytes=1024)
    launches = RedisLaunchStore(client, prefix=settings.prefix, max_value_bytes=1024)
    huge, long_key = "é" * 600, "k" * 2000

    with pytest.raises(StoreError, match=r"1200 bytes .* 1024 \(max_value_bytes\)"):
        await nonces.issue("state:big", huge, 60)
    with pytest.raises(StoreError, match="2000 characters"):
        await launches.save(long_key, "{}", 60)
    unknown = await nonces.consume(long_key, 60)
    missing = await launches.load(long_key)
    await client.aclose()

    assert unknown.status == "unknown"
    assert missing is None
    assert await raw.keys(settings.prefix + "*") == []


async def test_unreachable_redis_raises_store_error_without_the_password(
    closed_port: int,
) -> None:
    settings = RedisSettings(url=f"redis://:s3cret-pw@127.0.0.1:{closed_port}/0")
    nonces = RedisNonceStore(connect(settings))
    launches = RedisLaunchStore(connect(settings))
    tokens = RedisAccessTokenStore(connect(settings))

    async def lock() -> None:
        async with tokens.lock("t", ttl=30):
            pytest.fail("entered a lock Redis never granted")

    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("redis nonce store", lambda: nonces.issue("state:x", "v", 60)),
        ("redis nonce store", lambda: nonces.consume("state:x", 60)),
        ("redis launch store", lambda: launches.save("L", "{}", 60)),
        ("redis launch store", lambda: launches.load("L")),
        ("redis token store", lambda: tokens.get("t")),
        ("redis token store", lambda: tokens.put("t", "v", 60)),
        ("redis token store", lambda: tokens.delete("t")),
        ("redis token store", lock),
    ]
    failures: list[tuple[str, StoreError]] = []
    for name, call in calls:
        with pytest.raises(StoreError) as caught:
            await call()
        failures.append((name, caught.value))
    for store in (nonces, launches, tokens):
        await store.aclose()

    for name, failure in failures:
        assert str(failure).startswith(f"{name} at 127.0.0.1:{closed_port}/0: ")
        assert "s3cret-pw" not in str(failure)
        assert isinstance(failure.__cause__, redis.ConnectionError)


async def test_refused_credentials_raise_store_error_without_the_password(
    settings: RedisSettings,
) -> None:
    url = settings.url.replace("redis://", "redis://no-such-user:s3cret-pw@")
    store = RedisLaunchStore(connect(RedisSettings(url=url)))

    with pytest.raises(StoreError, match="redis launch store at 127.0.0.1") as caught:
        await store.load("L")
    await store.aclose()

    assert isinstance(caught.value.__cause__, redis.AuthenticationError)
    assert "s3cret-pw" not in str(caught.value)


async def test_redis_that_does_not_answer_times_out_as_store_error(
    silent_port: int,
) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0"
    store = RedisNonceStore(
        connect(RedisSettings(url=url, socket_timeout=0.2, connect_timeout=0.2))
    )

    async with asyncio.timeout(5):
        with pytest.raises(StoreError, match="Timeout") as caught:
            await store.consume("state:x", 60)
    await store.aclose()

    assert isinstance(caught.value.__cause__, redis.TimeoutError)
    assert f"127.0.0.1:{silent_port}" in str(caught.value)


async def test_lock_release_leaves_a_later_holders_lock_alone(
    settings: RedisSettings, raw: redis.asyncio.Redis
) -> None:
    first = RedisAccessTokenStore(connect(settings), prefix=settings.prefix)
    second = RedisAccessTokenStore(connect(settings), prefix=settings.prefix)
    name = f"{settings.prefix}token-lock:{hashed('k')}"
    stale = first.lock("k", ttl=0.05)
    await stale.__aenter__()

    async def lapsed() -> bool:
        return not await raw.exists(name)

    await eventually(lapsed, deadline=5, what="the lock did not lapse")
    async with second.lock("k", ttl=30):
        await stale.__aexit__(None, None, None)
        still_held = await raw.exists(name)
    released = not await raw.exists(name)
    await first.aclose()
    await second.aclose()

    assert still_held
    assert released


async def test_lock_waiter_goes_on_after_lock_wait_with_a_warning(
    settings: RedisSettings, caplog: pytest.LogCaptureFixture
) -> None:
    holder = RedisAccessTokenStore(connect(settings), prefix=settings.prefix)
    waiter = RedisAccessTokenStore(
        connect(settings), prefix=settings.prefix, lock_wait=0.05
    )

    async with holder.lock("k", ttl=30):
        async with waiter.lock("k", ttl=30):
            entered = True
    await holder.aclose()
    await waiter.aclose()

    assert entered
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "going on without it" in warnings[0].getMessage()


async def test_two_workers_on_redis_make_one_token_request(
    settings: RedisSettings,
) -> None:
    key = cached_key("tool")
    endpoint = FakeTokenEndpoint([key.public_jwk()])
    endpoint.gate = asyncio.Event()
    stores = [
        RedisAccessTokenStore(connect(settings), prefix=settings.prefix)
        for _ in range(2)
    ]

    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as http:
        workers = [
            AccessTokenClient(key_provider=StaticKeyProvider([key]), http=http, store=s)
            for s in stores
        ]
        calls = [
            asyncio.ensure_future(worker.get_token(make_registration(), [SCORE]))
            for worker in workers
            for _ in range(5)
        ]
        await endpoint.entered.wait()
        endpoint.gate.set()
        tokens = await asyncio.gather(*calls)
    for store in stores:
        await store.aclose()

    assert tokens == ["token-1"] * 10
    assert len(endpoint.requests) == 1


async def test_a_burst_beyond_the_pool_waits_for_connections(
    redis_url: str, redis_prefix: str
) -> None:
    # More concurrent requests than connections: they queue, none fails.
    settings = RedisSettings(url=redis_url, prefix=redis_prefix, max_connections=3)
    store = RedisLaunchStore(connect(settings), prefix=settings.prefix)
    await store.save("burst", "data", 60)

    loaded = await asyncio.gather(*(store.load("burst") for _ in range(300)))
    await store.aclose()

    assert loaded == ["data"] * 300


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({}, "plugins.redis.url"),
        ({"url": "http://127.0.0.1:6379"}, "plugins.redis.url"),
        ({"url": "redis://"}, "plugins.redis.url"),
        ({"url": "redis://127.0.0.1:99999"}, "plugins.redis.url"),
        ({"url": "redis://127.0.0.1", "host": "x"}, "plugins.redis.host"),
        ({"url": "redis://127.0.0.1", "prefix": "a b"}, "plugins.redis.prefix"),
        ({"url": "redis://127.0.0.1", "socket_timeout": 0}, "plugins.redis."),
        ({"url": "redis://127.0.0.1", "connect_timeout": "2"}, "plugins.redis."),
        ({"url": "redis://127.0.0.1", "max_value_bytes": 10}, "plugins.redis."),
        ({"url": "redis://127.0.0.1", "lock_wait": -1}, "plugins.redis.lock_wait"),
        (
            {"url": "redis://127.0.0.1", "max_connections": 0},
            "plugins.redis.max_connections",
        ),
        (
            {"url": "redis://127.0.0.1", "pool_timeout": 0},
            "plugins.redis.pool_timeout",
        ),
    ],
)
def test_bad_settings_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisSettings.from_table(table)

    assert caught.value.key.startswith(key)


def test_settings_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisSettings.from_table({"url": "http://user:s3cret-pw@127.0.0.1:6379/0"})

    assert "s3cret-pw" not in str(caught.value)
    assert "user:***@127.0.0.1" in str(caught.value)


def test_plugin_passes_without_a_redis_table() -> None:
    config = tool_config()

    assert plugin.lti_nonce_store(config=config) is None
    assert plugin.lti_launch_store(config=config) is None
    assert plugin.lti_access_token_store(config=config) is None


class ToolKeys:
    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> StaticKeyProvider:
        return StaticKeyProvider([cached_key("tool")])


@pytest.fixture
async def redis_tool(
    settings: RedisSettings, platform: FakePlatform
) -> AsyncIterator[Callable[..., ToolClient]]:
    """Builds tools (workers) with the plugins found through entry points."""
    built: list[ToolClient] = []

    def build(**table: Any) -> ToolClient:
        values = {"url": settings.url, "prefix": settings.prefix, **table}
        middleware = LTIMiddleware(
            inner_app(),
            config=tool_config(plugin_settings={"redis": values}),
            plugins=(ToolKeys(),),
            load_entry_points=True,
            http=httpx.AsyncClient(transport=httpx.MockTransport(platform.handle)),
            clock=platform.clock,
        )
        built.append(ToolClient(middleware, platform))
        return built[-1]

    yield build
    for tool in built:
        await tool.http.aclose()
        # Closes the Redis clients too; a leak would fail the run (warnings are
        # errors).
        await tool.middleware.aclose()


def test_entry_point_puts_the_middleware_on_redis(
    redis_tool: Callable[..., ToolClient],
) -> None:
    middleware = redis_tool(prefix="tool-a:").middleware

    assert isinstance(middleware.nonces, RedisNonceStore)
    assert isinstance(middleware.launches, RedisLaunchStore)
    assert isinstance(middleware.tokens.store, RedisAccessTokenStore)
    assert middleware.nonces._prefix == "tool-a:"


async def test_entry_point_leaves_memory_stores_without_a_redis_table() -> None:
    middleware = LTIMiddleware(
        inner_app(), config=tool_config(), plugins=(ToolKeys(),), load_entry_points=True
    )
    await middleware.aclose()

    assert isinstance(middleware.nonces, MemoryNonceStore)
    assert isinstance(middleware.launches, MemoryLaunchStore)


async def test_login_on_one_worker_launches_on_another(
    redis_tool: Callable[..., ToolClient], platform: FakePlatform
) -> None:
    worker_a, worker_b = redis_tool(), redis_tool()
    login = await worker_a.login()
    token = platform.sign(platform.claims(login.nonce))

    launched = await worker_b.launch_token(token, login)
    page_on_a = await worker_a.follow(launched)
    replayed = await worker_a.launch_token(token, login)

    assert launched.status_code == 303
    assert page_on_a.json()["user"] == "user-1"
    assert page_on_a.json()["context"] == "ctx-5"
    assert_refused(replayed, "state_already_used")


async def test_concurrent_replays_across_workers_let_one_launch_through(
    redis_tool: Callable[..., ToolClient], platform: FakePlatform
) -> None:
    workers = [redis_tool(), redis_tool()]
    login = await workers[0].login()
    token = platform.sign(platform.claims(login.nonce))

    responses = await asyncio.gather(
        *(workers[i % 2].launch_token(token, login) for i in range(10))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [303] + [400] * 9


async def test_redis_down_fails_the_login_closed_with_503(
    redis_tool: Callable[..., ToolClient], closed_port: int
) -> None:
    tool = redis_tool(url=f"redis://127.0.0.1:{closed_port}/0")

    response = await tool.http.get(
        "/lti/login",
        params={
            "iss": "https://lms.example.edu",
            "login_hint": "h",
            "target_link_uri": "https://tool.example.org/app",
        },
        headers={"accept": "application/json"},
    )

    body = assert_refused(response, "store_unavailable")
    assert "redis nonce store is unavailable" in body["detail"]
    assert f"127.0.0.1:{closed_port}" not in response.text
