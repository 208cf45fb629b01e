"""The in-memory stores pass the store contract, on a clock the tests move."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lti_middleware.stores.memory import (
    MemoryAccessTokenStore,
    MemoryLaunchStore,
    MemoryNonceStore,
    _TimedMap,
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


def test_full_map_drops_expired_entries_before_live_ones() -> None:
    clock = ManualClock()
    records = _TimedMap(3, clock)
    records.set("short", "v", 10, used=False)
    records.set("long-1", "v", 100, used=False)
    records.set("long-2", "v", 100, used=False)

    clock.advance(11)
    records.set("new", "v", 100, used=False)

    assert records.get("short") is None
    assert [records.get(k) is not None for k in ("long-1", "long-2", "new")] == [
        True,
        True,
        True,
    ]


def test_full_map_drops_spent_records_before_live_ones() -> None:
    clock = ManualClock()
    records = _TimedMap(3, clock)
    records.set("live-old", "v", 50, used=False)
    records.set("spent", None, 3600, used=True)
    records.set("live", "v", 50, used=False)

    records.set("new", "v", 50, used=False)

    assert records.get("spent") is None
    assert all(records.get(k) is not None for k in ("live-old", "live", "new"))


def test_full_map_without_spent_records_drops_the_oldest_live_one() -> None:
    clock = ManualClock()
    records = _TimedMap(3, clock)
    records.set("a", "v", 50, used=False)
    records.set("b", "v", 20, used=False)
    records.set("c", "v", 80, used=False)

    records.set("d", "v", 60, used=False)

    assert len(records) == 3
    assert records.get("a") is None
    assert all(records.get(key) is not None for key in ("b", "c", "d"))


async def test_a_store_full_of_spent_records_still_serves_new_logins() -> None:
    # Consumed states and nonces are kept for an hour, logins live ten
    # minutes: a full store must drop the spent records, not the new login.
    store = MemoryNonceStore(max_entries=10, clock=ManualClock())
    for number in range(20):
        await store.issue(f"state:{number}", "login", 600)
        await store.issue(f"nonce:{number}", f"{number}", 600)
        assert (await store.consume(f"state:{number}", 3600)).status == "ok"
        assert (await store.consume(f"nonce:{number}", 3600)).status == "ok"

    await store.issue("state:new", "login", 600)
    await store.issue("nonce:new", "new", 600)

    assert (await store.consume("state:new", 3600)).status == "ok"
    assert (await store.consume("nonce:new", 3600)).status == "ok"
    # The most recent spent records are still there to name a replay.
    assert (await store.consume("nonce:19", 3600)).status == "used"


def test_overwritten_key_keeps_its_new_expiry_not_the_old_one() -> None:
    # A consumed state is rewritten as a tombstone with a longer life; the
    # heap item of its first write must not take the tombstone away.
    clock = ManualClock()
    records = _TimedMap(10, clock)
    records.set("state:x", "login", 10, used=False)
    records.set("state:x", None, 100, used=True)

    clock.advance(50)
    records.set("other", "v", 10, used=False)

    entry = records.get("state:x")
    assert entry is not None and entry.used


def test_a_key_written_again_is_counted_once() -> None:
    clock = ManualClock()
    records = _TimedMap(4, clock)

    for _ in range(1_000):
        records.set("token", "v", 3600, used=False)
    records.set("token", None, 3600, used=True)

    assert len(records) == 1
    entry = records.get("token")
    assert entry is not None and entry.used


def test_entry_past_its_expiry_is_not_returned() -> None:
    clock = ManualClock()
    records = _TimedMap(10, clock)
    records.set("k", "v", 5, used=False)

    clock.advance(5)

    assert records.get("k") is None
    assert len(records) == 0
