"""Fixtures for store tests: a real Redis on 127.0.0.1, a prefix per test.

The Redis tests skip, saying why, when nothing answers at 127.0.0.1:6379;
with LTI_TEST_REQUIRE_REDIS=1 in the environment (as in CI) they fail instead.
Each test gets its own key prefix, and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

# Before the test modules import the kit, so its asserts explain themselves.
pytest.register_assert_rewrite("lti_middleware.testing")

REDIS_URL = "redis://127.0.0.1:6379/0"
REQUIRE_REDIS = "LTI_TEST_REQUIRE_REDIS"


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        message = f"no Redis answers at {REDIS_URL} ({error}); start redis-server"
        if os.environ.get(REQUIRE_REDIS):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()

    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"lti-test-{uuid.uuid4().hex}:"
    yield prefix

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A 127.0.0.1 port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]
