"""The three stores on one SQLite file.

Every record is a row of ``lti_records``: its kind (``once``, ``launch``,
``token`` or ``lock``), its key, its value, whether it was used, and when it
expires (Unix time). Expired rows are ignored when read and deleted on the
next write. Each operation opens its own connection in a worker thread, so
the event loop never waits on the disk, and several processes may share the
file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from lti_middleware import StoreError
from lti_middleware.stores import Consumed

logger = logging.getLogger(__name__)

#: Seconds a write waits for another process's transaction to end.
BUSY_TIMEOUT = 5.0
#: Seconds a token-lock waiter waits before it goes on without the lock.
DEFAULT_LOCK_WAIT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lti_records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    used INTEGER NOT NULL DEFAULT 0,
    expires REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS lti_records_expires ON lti_records (expires);
"""

T = TypeVar("T")
#: Held while a store instance prepares the database, shared by all of them.
_PREPARING = threading.Lock()
Clock = Callable[[], float]


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock before the first read, so a read and the
    # write that depends on it cannot interleave with another process's.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class _SQLiteStore:
    """What the three stores share: the file, the clock, error wrapping."""

    _label = "sqlite store"

    def __init__(self, path: str | Path, *, clock: Clock = time.time) -> None:
        self._path = Path(path)
        self._clock = clock
        self._ready = False

    async def _run(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.to_thread(self._with_connection, work)
        except sqlite3.Error as error:
            raise StoreError(
                f"{self._label} at {self._path}: {what} failed: {error}",
                store=self._label,
            ) from error

    def _with_connection(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT, isolation_level=None
        )
        try:
            self._prepare(connection)
            connection.execute("PRAGMA synchronous=NORMAL")
            return work(connection)
        finally:
            connection.close()

    def _prepare(self, connection: sqlite3.Connection) -> None:
        # One thread at a time: switching to WAL needs the database to itself,
        # which first requests racing in their threads would not give it.
        with _PREPARING:
            if self._ready:
                return
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            self._ready = True

    def _write(
        self,
        connection: sqlite3.Connection,
        kind: str,
        key: str,
        value: str,
        ttl: float,
    ) -> None:
        now = self._clock()
        with _transaction(connection):
            connection.execute("DELETE FROM lti_records WHERE expires <= ?", (now,))
            connection.execute(
                "INSERT OR REPLACE INTO lti_records (kind, key, value, used, expires)"
                " VALUES (?, ?, ?, 0, ?)",
                (kind, key, value, now + ttl),
            )

    def _read(self, connection: sqlite3.Connection, kind: str, key: str) -> str | None:
        row = connection.execute(
            "SELECT value FROM lti_records WHERE kind = ? AND key = ? AND expires > ?",
            (kind, key, self._clock()),
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])


class SQLiteNonceStore(_SQLiteStore):
    """One-time states and nonces; ``consume`` is one transaction."""

    _label = "sqlite nonce store"

    async def issue(self, key: str, value: str, ttl: float) -> None:
        await self._run("issue", lambda db: self._write(db, "once", key, value, ttl))

    async def consume(self, key: str, remember_for: float) -> Consumed:
        return await self._run(
            "consume", lambda db: self._consume(db, key, remember_for)
        )

    def _consume(
        self, connection: sqlite3.Connection, key: str, remember_for: float
    ) -> Consumed:
        now = self._clock()
        with _transaction(connection):
            row = connection.execute(
                "SELECT value, used FROM lti_records"
                " WHERE kind = 'once' AND key = ? AND expires > ?",
                (key, now),
            ).fetchone()
            if row is None:
                return Consumed("unknown")
            if row[1]:
                return Consumed("used")

            # Keep a tombstone without the value for remember_for seconds.
            connection.execute(
                "UPDATE lti_records SET value = NULL, used = 1, expires = ?"
                " WHERE kind = 'once' AND key = ?",
                (now + remember_for, key),
            )
        return Consumed("ok", row[0])


class SQLiteLaunchStore(_SQLiteStore):
    """Validated launches."""

    _label = "sqlite launch store"

    async def save(self, launch_id: str, data: str, ttl: float) -> None:
        await self._run(
            "save", lambda db: self._write(db, "launch", launch_id, data, ttl)
        )

    async def load(self, launch_id: str) -> str | None:
        return await self._run("load", lambda db: self._read(db, "launch", launch_id))


class SQLiteAccessTokenStore(_SQLiteStore):
    """Access tokens, with a lock row shared by every process."""

    _label = "sqlite token store"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = time.time,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ) -> None:
        super().__init__(path, clock=clock)
        self._lock_wait = lock_wait

    async def get(self, key: str) -> str | None:
        return await self._run("get", lambda db: self._read(db, "token", key))

    async def put(self, key: str, value: str, ttl: float) -> None:
        await self._run("put", lambda db: self._write(db, "token", key, value, ttl))

    async def delete(self, key: str) -> None:
        await self._run("delete", lambda db: self._delete(db, "token", key, None))

    @contextlib.asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[None]:
        token = secrets.token_urlsafe(16)
        held = await self._acquire(key, token, ttl)
        try:
            yield
        finally:
            if held:
                await self._run(
                    "unlock", lambda db: self._delete(db, "lock", key, token)
                )

    async def _acquire(self, key: str, token: str, ttl: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lock_wait
        delay = 0.005
        while not await self._run(
            "lock", lambda db: self._try_lock(db, key, token, ttl)
        ):
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning(
                    "%s: token lock still held after %.1f s; going on without it",
                    self._label,
                    self._lock_wait,
                )
                return False
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)

        return True

    def _try_lock(
        self, connection: sqlite3.Connection, key: str, token: str, ttl: float
    ) -> bool:
        now = self._clock()
        with _transaction(connection):
            held = connection.execute(
                "SELECT 1 FROM lti_records"
                " WHERE kind = 'lock' AND key = ? AND expires > ?",
                (key, now),
            ).fetchone()
            if held is not None:
                return False
            connection.execute(
                "INSERT OR REPLACE INTO lti_records (kind, key, value, used, expires)"
                " VALUES ('lock', ?, ?, 0, ?)",
                (key, token, now + ttl),
            )
        return True

    def _delete(
        self, connection: sqlite3.Connection, kind: str, key: str, value: str | None
    ) -> None:
        # With a value, delete only if it still holds it: a lapsed lock may
        # have been taken by another process since.
        with _transaction(connection):
            connection.execute(
                "DELETE FROM lti_records WHERE kind = ? AND key = ?"
                " AND (? IS NULL OR value = ?)",
                (kind, key, value, value),
            )
