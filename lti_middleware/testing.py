"""Contract tests for store plugins, to subclass in your own test suite.

A store must keep the promises of :mod:`lti_middleware.stores.base`: one-time
records consumed atomically across processes, records that expire, a used
record remembered for as long as asked, a token lock that every worker
shares. The classes here check those promises against any implementation; the
memory and Redis stores and the example SQLite store in ``example_apps/`` all
run them. They need pytest and pytest-asyncio.

Subclass a contract in a class whose name starts with ``Test`` and give it a
``store`` fixture; every ``test_`` method of the contract then runs against
your store::

    import pytest
    from lti_middleware.testing import NonceStoreContract

    class TestMyNonceStore(NonceStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return MyNonceStore(tmp_path / "state.db")

        @pytest.fixture
        def second_store(self, tmp_path):
            # A second instance on the same backend, as another worker
            # process would have one.
            return MyNonceStore(tmp_path / "state.db")

The contracts are :class:`NonceStoreContract`, :class:`LaunchStoreContract`
and :class:`AccessTokenStoreContract`. Fixtures you may define:

``store`` (required)
    The store under test. It may be an async fixture (``pytest_asyncio.fixture``
    in strict mode) that closes its connections afterwards.
``second_store``
    Another instance sharing ``store``'s backend. Without it the kit uses
    ``store`` again, which is right only for a store that lives in one
    process.
``store_clock``
    The :class:`ManualClock` the store reads time from, if it takes a clock.
    Expiry tests then move the clock instead of waiting.

For pytest's detailed assertion messages in these tests, call
``pytest.register_assert_rewrite("lti_middleware.testing")`` in your
``conftest.py`` before anything imports this module.

Class attributes you may override, in seconds: ``short_ttl``, the lifetime
of a record meant to expire (0.3; raise it for a slow backend);
``remember_check``, how long past a record's own TTL a used record must
still be remembered when the store has no clock to move (3);
``expiry_deadline``, how long a test waits at most for a record to go or an
abandoned lock to lapse (10); ``lock_handover``, how soon a released lock, or
a lock on another key, must be taken (2). A lock that is not released makes a
waiter wait for your store's lock-wait bound, so keep that bound above
``lock_handover`` for the lock tests to tell the two apart.

Without a clock, expiry is observed by polling with a deadline, never by a
fixed sleep. Launches and tokens are read until they are gone. A one-time
record cannot be read without consuming it, so the test issues probe records
with the same TTL right after it and consumes one probe per poll: once a
probe is unknown, the record, issued no later, has expired too.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .stores.base import AccessTokenStore, Consumed, LaunchStore, NonceStore

__all__ = [
    "AccessTokenStoreContract",
    "LaunchStoreContract",
    "ManualClock",
    "NonceStoreContract",
    "eventually",
    "unique_key",
]

#: Seconds a record lives when a test means it to outlive the test.
LONG_TTL = 60.0
#: How many concurrent consumers race for one record.
CONSUMERS = 50
#: Rounds of the concurrent-consume race.
RACES = 10
#: Probe records issued to observe one expiry without a clock.
PROBES = 48

_UNICODE = "ünïcødé ✓ 🎓 ελληνικά 中文"


class ManualClock:
    """A clock a test moves by hand, for stores that take a ``clock``."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


def unique_key(label: str) -> str:
    """A key no other test uses, shaped like the middleware's keys."""
    return f"{label}:{secrets.token_urlsafe(16)}"


async def eventually(
    check: Callable[[], Awaitable[bool]], *, deadline: float, what: str
) -> None:
    """Poll ``check`` with a growing interval until it is true.

    Fails the test, saying ``what`` did not happen, after ``deadline`` seconds.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    delay = 0.01
    while not await check():
        if loop.time() >= end:
            pytest.fail(f"{what} within {deadline} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _large(size: int) -> str:
    """A JSON document of about ``size`` bytes, mostly non-ASCII."""
    unit = _UNICODE + " "
    return json.dumps({"claims": unit * (size // len(unit.encode("utf-8")))})


class _Contract:
    short_ttl = 0.3
    remember_check = 3.0
    expiry_deadline = 10.0
    lock_handover = 2.0

    @pytest.fixture
    def store(self) -> Any:
        pytest.fail(f"{type(self).__name__} must define a `store` fixture")

    @pytest.fixture
    def second_store(self, store: Any) -> Any:
        return store

    @pytest.fixture
    def store_clock(self) -> ManualClock | None:
        return None


@pytest.mark.asyncio
class NonceStoreContract(_Contract):
    """What every :class:`~lti_middleware.stores.base.NonceStore` must do."""

    async def test_store_follows_the_protocol(self, store: NonceStore) -> None:
        assert isinstance(store, NonceStore)

    async def test_issued_record_is_ok_once_then_used(self, store: NonceStore) -> None:
        key = unique_key("state")
        await store.issue(key, "login record", LONG_TTL)

        first = await store.consume(key, LONG_TTL)
        second = await store.consume(key, LONG_TTL)

        assert first == Consumed("ok", "login record")
        assert second == Consumed("used")

    async def test_never_issued_key_is_unknown(self, store: NonceStore) -> None:
        assert await store.consume(unique_key("nonce"), LONG_TTL) == Consumed("unknown")

    @pytest.mark.parametrize(
        "value",
        ["", "plain", _UNICODE, _large(32 * 1024)],
        ids=["empty", "ascii", "unicode", "32KiB"],
    )
    async def test_value_round_trips(self, store: NonceStore, value: str) -> None:
        key = unique_key("state")
        await store.issue(key, value, LONG_TTL)

        assert await store.consume(key, LONG_TTL) == Consumed("ok", value)

    async def test_records_are_independent(self, store: NonceStore) -> None:
        first, second = unique_key("nonce"), unique_key("nonce")
        await store.issue(first, "1", LONG_TTL)
        await store.issue(second, "2", LONG_TTL)

        await store.consume(first, LONG_TTL)

        assert await store.consume(second, LONG_TTL) == Consumed("ok", "2")

    async def test_second_instance_sees_the_same_records(
        self, store: NonceStore, second_store: NonceStore
    ) -> None:
        key = unique_key("state")
        await store.issue(key, "shared", LONG_TTL)

        assert await second_store.consume(key, LONG_TTL) == Consumed("ok", "shared")
        assert await store.consume(key, LONG_TTL) == Consumed("used")

    async def test_unconsumed_record_expires(
        self, store: NonceStore, store_clock: ManualClock | None
    ) -> None:
        key = unique_key("state")
        await store.issue(key, "short", self.short_ttl)

        await self._wait_for_expiry(store, store_clock)

        assert await store.consume(key, LONG_TTL) == Consumed("unknown")

    async def test_used_record_outlives_its_ttl_for_remember_for(
        self, store: NonceStore, store_clock: ManualClock | None
    ) -> None:
        # CASE-19: a replay after the record's own TTL must still be refused.
        key = unique_key("nonce")
        await store.issue(key, "short", self.short_ttl)
        assert await store.consume(key, LONG_TTL) == Consumed("ok", "short")

        await self._wait_for_expiry(store, store_clock)

        assert await store.consume(key, LONG_TTL) == Consumed("used")

    async def test_used_record_is_remembered_for_as_long_as_asked(
        self, store: NonceStore, store_clock: ManualClock | None
    ) -> None:
        # The middleware asks for about an hour; a store that caps how long
        # it remembers used records would let late replays through.
        key = unique_key("nonce")
        await store.issue(key, "v", self.short_ttl)
        assert (await store.consume(key, LONG_TTL)).status == "ok"

        if store_clock is not None:
            store_clock.advance(LONG_TTL - 1)
        else:
            await self._wait_for_expiry(store, None, ttl=self.remember_check)

        assert await store.consume(key, LONG_TTL) == Consumed("used")

    async def test_used_record_is_forgotten_after_remember_for(
        self, store: NonceStore, store_clock: ManualClock | None
    ) -> None:
        key = unique_key("nonce")
        await store.issue(key, "long", LONG_TTL)
        assert await store.consume(key, self.short_ttl) == Consumed("ok", "long")

        await self._wait_for_expiry(store, store_clock)

        assert await store.consume(key, LONG_TTL) == Consumed("unknown")

    async def test_concurrent_consumers_across_instances_one_wins(
        self, store: NonceStore, second_store: NonceStore
    ) -> None:
        stores = (store, second_store)
        # One race can be won by luck; several rounds catch a store whose
        # check-then-set is only usually quick enough.
        for _ in range(RACES):
            key = unique_key("state")
            await store.issue(key, "prize", LONG_TTL)

            results = await asyncio.gather(
                *(stores[i % 2].consume(key, LONG_TTL) for i in range(CONSUMERS))
            )

            statuses = [result.status for result in results]
            assert statuses.count("ok") == 1, f"{statuses.count('ok')} consumers won"
            assert statuses.count("used") == CONSUMERS - 1, statuses
            assert [r.value for r in results if r.status == "ok"] == ["prize"]

    async def _wait_for_expiry(
        self, store: NonceStore, clock: ManualClock | None, ttl: float | None = None
    ) -> None:
        """Return once a record issued just now with ``ttl`` is gone.

        ``ttl`` defaults to ``short_ttl``.
        """
        ttl = self.short_ttl if ttl is None else ttl
        if clock is not None:
            clock.advance(ttl * 2)
            return

        probes = [unique_key("probe") for _ in range(PROBES)]
        await asyncio.gather(*(store.issue(probe, "probe", ttl) for probe in probes))
        unused = iter(probes)

        async def probe_is_gone() -> bool:
            probe = next(unused, None)
            if probe is None:
                pytest.fail(f"records with a TTL of {ttl} s never expired")
            return (await store.consume(probe, LONG_TTL)).status == "unknown"

        await eventually(
            probe_is_gone,
            deadline=self.expiry_deadline + ttl,
            what=f"a record with a TTL of {ttl} s did not expire",
        )


@pytest.mark.asyncio
class LaunchStoreContract(_Contract):
    """What every :class:`~lti_middleware.stores.base.LaunchStore` must do."""

    async def test_store_follows_the_protocol(self, store: LaunchStore) -> None:
        assert isinstance(store, LaunchStore)

    @pytest.mark.parametrize(
        "data",
        [json.dumps({"name": _UNICODE}), _large(64 * 1024)],
        ids=["unicode", "64KiB"],
    )
    async def test_saved_launch_loads(self, store: LaunchStore, data: str) -> None:
        launch_id = secrets.token_urlsafe(32)
        await store.save(launch_id, data, LONG_TTL)

        assert await store.load(launch_id) == data
        assert await store.load(launch_id) == data

    async def test_unknown_launch_is_none(self, store: LaunchStore) -> None:
        assert await store.load(secrets.token_urlsafe(32)) is None

    async def test_second_instance_loads_the_launch(
        self, store: LaunchStore, second_store: LaunchStore
    ) -> None:
        launch_id = secrets.token_urlsafe(32)
        await store.save(launch_id, '{"shared": true}', LONG_TTL)

        assert await second_store.load(launch_id) == '{"shared": true}'

    async def test_launch_expires(
        self, store: LaunchStore, store_clock: ManualClock | None
    ) -> None:
        launch_id = secrets.token_urlsafe(32)
        await store.save(launch_id, "{}", self.short_ttl)
        assert await store.load(launch_id) == "{}"

        if store_clock is not None:
            store_clock.advance(self.short_ttl * 2)

        async def gone() -> bool:
            return await store.load(launch_id) is None

        await eventually(
            gone, deadline=self.expiry_deadline, what="the launch did not expire"
        )


@pytest.mark.asyncio
class AccessTokenStoreContract(_Contract):
    """What every :class:`~lti_middleware.stores.base.AccessTokenStore` must do."""

    async def test_store_follows_the_protocol(self, store: AccessTokenStore) -> None:
        assert isinstance(store, AccessTokenStore)

    async def test_absent_key_is_none(self, store: AccessTokenStore) -> None:
        assert await store.get(unique_key("lti-token")) is None

    @pytest.mark.parametrize(
        "value",
        [json.dumps({"access_token": _UNICODE}), _large(16 * 1024)],
        ids=["unicode", "16KiB"],
    )
    async def test_put_value_is_got(self, store: AccessTokenStore, value: str) -> None:
        key = unique_key("lti-token")
        await store.put(key, value, LONG_TTL)

        assert await store.get(key) == value

    async def test_put_replaces_the_value(self, store: AccessTokenStore) -> None:
        key = unique_key("lti-token")
        await store.put(key, "old", LONG_TTL)
        await store.put(key, "new", LONG_TTL)

        assert await store.get(key) == "new"

    async def test_delete_drops_the_value(
        self, store: AccessTokenStore, second_store: AccessTokenStore
    ) -> None:
        key, other = unique_key("lti-token"), unique_key("lti-token")
        await store.put(key, "token", LONG_TTL)
        await store.put(other, "other", LONG_TTL)

        await second_store.delete(key)
        await store.delete(unique_key("lti-token"))

        assert await store.get(key) is None
        assert await store.get(other) == "other"

    async def test_second_instance_gets_the_value(
        self, store: AccessTokenStore, second_store: AccessTokenStore
    ) -> None:
        key = unique_key("lti-token")
        await store.put(key, "shared", LONG_TTL)

        assert await second_store.get(key) == "shared"

    async def test_value_expires(
        self, store: AccessTokenStore, store_clock: ManualClock | None
    ) -> None:
        key = unique_key("lti-token")
        await store.put(key, "short", self.short_ttl)
        assert await store.get(key) == "short"

        if store_clock is not None:
            store_clock.advance(self.short_ttl * 2)

        async def gone() -> bool:
            return await store.get(key) is None

        await eventually(
            gone, deadline=self.expiry_deadline, what="the token did not expire"
        )

    async def test_lock_admits_one_holder_across_instances(
        self, store: AccessTokenStore, second_store: AccessTokenStore
    ) -> None:
        key = unique_key("lti-token")
        inside = peak = entries = 0

        async def worker(holder: AccessTokenStore) -> None:
            nonlocal inside, peak, entries
            for _ in range(3):
                async with holder.lock(key, ttl=LONG_TTL):
                    inside += 1
                    entries += 1
                    peak = max(peak, inside)
                    # Yield while holding: a lock that does not exclude lets
                    # another worker in now.
                    await holder.get(key)
                    await asyncio.sleep(0)
                    inside -= 1

        workers = [worker(s) for s in (store, second_store, store, second_store)]
        async with asyncio.timeout(self.expiry_deadline):
            await asyncio.gather(*workers)

        assert entries == 12
        assert peak == 1, f"{peak} holders were inside the lock at once"

    async def test_locks_on_other_keys_do_not_wait(
        self, store: AccessTokenStore, second_store: AccessTokenStore
    ) -> None:
        other_entered = asyncio.Event()

        async def other() -> None:
            async with second_store.lock(unique_key("lti-token"), ttl=LONG_TTL):
                other_entered.set()

        async with store.lock(unique_key("lti-token"), ttl=LONG_TTL):
            task = asyncio.ensure_future(other())
            async with asyncio.timeout(self.lock_handover):
                await other_entered.wait()
        await task

    async def test_lock_is_released_when_its_holder_fails(
        self, store: AccessTokenStore, second_store: AccessTokenStore
    ) -> None:
        key = unique_key("lti-token")
        with pytest.raises(RuntimeError, match="token request failed"):
            async with store.lock(key, ttl=LONG_TTL):
                raise RuntimeError("token request failed")

        entered = False
        async with asyncio.timeout(self.lock_handover):
            async with second_store.lock(key, ttl=LONG_TTL):
                entered = True

        assert entered

    async def test_abandoned_lock_does_not_block_forever(
        self, store: AccessTokenStore, second_store: AccessTokenStore
    ) -> None:
        # A worker that died while holding the lock never leaves it.
        key = unique_key("lti-token")
        abandoned = store.lock(key, ttl=self.short_ttl)
        await abandoned.__aenter__()

        entered = False
        try:
            async with asyncio.timeout(self.expiry_deadline):
                async with second_store.lock(key, ttl=LONG_TTL):
                    entered = True
        finally:
            await abandoned.__aexit__(None, None, None)

        assert entered
