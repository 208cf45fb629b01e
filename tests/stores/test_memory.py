"""The in-memory stores pass the store contract, on a clock the tests move."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lti_middleware.stores.memory import (
    MemoryAccessTokenStore,
    MemoryLaunchStore,
    MemoryNonceStore,
)
from lti_middleware.testing import (
    AccessTokenStoreContract,
    LaunchStoreContract,
    ManualClock,
    NonceStoreContract,
)


class TestMemoryNonceStore(NonceStoreContract):
    @pytest.fixture
    def store_clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def store(self, store_clock: ManualClock) -> MemoryNonceStore:
        return MemoryNonceStore(clock=store_clock)


class TestMemoryLaunchStore(LaunchStoreContract):
    @pytest.fixture
    def store_clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def store(self, store_clock: ManualClock) -> MemoryLaunchStore:
        return MemoryLaunchStore(clock=store_clock)


class TestMemoryAccessTokenStore(AccessTokenStoreContract):
    @pytest.fixture
    def store_clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def store(self, store_clock: ManualClock) -> MemoryAccessTokenStore:
        return MemoryAccessTokenStore(clock=store_clock)


async def test_memory_lock_map_is_empty_once_nobody_holds_a_lock() -> None:
    store = MemoryAccessTokenStore()

    async with store.lock("a", ttl=30):
        async with store.lock("b", ttl=30):
            assert set(store._locks) == {"a", "b"}
    with pytest.raises(RuntimeError):
        async with store.lock("a", ttl=30):
            raise RuntimeError("token request failed")

    assert store._locks == {}


async def test_memory_lock_waiter_goes_on_after_lock_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryAccessTokenStore(lock_wait=0.05)
    holder_inside, holder_may_leave = asyncio.Event(), asyncio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with store.lock("key", ttl=30):
            entered.append("holder")
            holder_inside.set()
            await holder_may_leave.wait()

    task = asyncio.ensure_future(holder())
    await holder_inside.wait()
    async with store.lock("key", ttl=30):
        entered.append("waiter")
    holder_may_leave.set()
    await task

    assert entered == ["holder", "waiter"]
    assert "going on without it" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING
    assert store._locks == {}


async def test_memory_nonce_store_bounds_its_entries() -> None:
    store = MemoryNonceStore(max_entries=10)

    for number in range(50):
        await store.issue(f"state:{number}", "v", 60)

    found = [await store.consume(f"state:{n}", 60) for n in range(50)]
    assert sum(result.status == "ok" for result in found) <= 10
