"""The PostgreSQL store: several control planes, on several machines, share one database.

psycopg 3's synchronous API, so the store's functions (`fn(tx)`, synchronous) run
unchanged: each call takes a connection from the pool and runs its function in one
transaction on a thread of its own (never the event loop). Isolation is READ COMMITTED;
what makes concurrent calls correct is in the SQL itself: guarded UPDATEs, row locks
(`FOR UPDATE`) on rows read before being changed, and a per-tenant lock for quota
admission. A call that deadlocks or fails to serialise anyway is run again from the start,
a few times.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from control_plane.store import migrations
from control_plane.store.backend import JobEventCallback, JobStdinCallback, Params
from control_plane.store.database import SCHEMA
from control_plane.store.dialect import (
    JOB_EVENTS_CHANNEL,
    JOB_STDIN_CHANNEL,
    MIGRATION_LOCK,
    POSTGRESQL,
    pyformat,
)
from sluice.observability import get_logger

log = get_logger(__name__)
T = TypeVar("T")
POOL_SIZE = 8
# Runs of one call that deadlocked or failed to serialise, before its caller hears of it.
MAX_TRIES = 5
_RETRIED = (errors.SerializationFailure, errors.DeadlockDetected)


class PgTx:
    """The store's Tx over a pooled psycopg connection, inside its transaction."""

    __slots__ = ("_conn",)
    dialect = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> psycopg.Cursor[Any]:
        if not params:
            return self._conn.execute(sql)  # type: ignore[arg-type]
        return self._conn.execute(pyformat(sql), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, params: Sequence[Params]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(pyformat(sql), params)  # type: ignore[arg-type]

    def script(self, sql: str) -> None:
        """Several statements (no parameters), e.g. a migration's DDL."""
        self._conn.execute(sql)  # type: ignore[arg-type]


class PostgresDatabase:
    """The PostgreSQL backend (control_plane/store/backend.py)."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self._url = url
        self._pool_size = pool_size
        self._pool: ConnectionPool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.migrations_applied: list[migrations.Migration] = []

    async def open(self) -> None:
        pool = ConnectionPool(self._url, min_size=1, max_size=self._pool_size, open=False,
                              kwargs={"autocommit": True}, name="sluice-store")
        await asyncio.to_thread(pool.open, wait=True, timeout=30)
        self._pool = pool
        # One thread per connection: a call never waits for a thread, only for the database.
        self._executor = ThreadPoolExecutor(self._pool_size, thread_name_prefix="store")
        try:
            self.migrations_applied = await self._in_thread(self._migrate)
        except BaseException:
            await self.close()
            raise

    def _migrate(self) -> list[migrations.Migration]:
        assert self._pool is not None
        with self._pool.connection() as conn, conn.transaction():
            # Held to commit: a second process starting now waits, then finds nothing to do.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            tx = PgTx(conn)
            return migrations.migrate(tx, tx.script, SCHEMA)

    async def run(self, fn: Callable[[PgTx], T]) -> T:
        """Runs fn(tx) in one transaction on a pool thread; returns once committed."""
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return await self._in_thread(lambda: self._run(fn))

    async def _in_thread(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _run(self, fn: Callable[[PgTx], T]) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the database is not open")
        for tries in range(1, MAX_TRIES + 1):
            try:
                with pool.connection() as conn, conn.transaction():
                    return fn(PgTx(conn))
            except _RETRIED as exc:
                if tries == MAX_TRIES:
                    raise
                log.info("store_call_retried", error=type(exc).__name__, tries=tries)
                time.sleep(random.uniform(0, 0.005 * 2 ** tries))
        raise AssertionError("unreachable")

    async def listen_job_events(self, on_event: JobEventCallback,
                                on_stdin: JobStdinCallback | None = None) -> None:
        """LISTENs on a connection of its own, in a thread; the job ids heard are handed to
        the event loop in batches (one wake-up per burst, not per event)."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        pending: list[tuple[str | None, int]] = []
        lock = threading.Lock()

        def deliver() -> None:
            with lock:
                heard = pending[:]
                pending.clear()
            for job_id, seq in heard:
                if seq < 0:  # a piece of stdin (seq is never negative)
                    if on_stdin is not None:
                        on_stdin(job_id)
                elif job_id is None:
                    on_event(None, 0)
                    if on_stdin is not None:
                        on_stdin(None)
                else:
                    on_event(job_id, seq)

        def hand_over(job_id: str | None, seq: int) -> None:
            with lock:
                first = not pending
                pending.append((job_id, seq))
            if first:
                try:
                    loop.call_soon_threadsafe(deliver)
                except RuntimeError:
                    stop.set()  # the loop is closed

        def listen() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self._url, autocommit=True) as conn:
                        conn.execute(f"LISTEN {JOB_EVENTS_CHANNEL}")
                        conn.execute(f"LISTEN {JOB_STDIN_CHANNEL}")
                        hand_over(None, 0)  # (re)connected: events may have been missed
                        while not stop.is_set():
                            for note in conn.notifies(timeout=0.5):
                                if note.channel == JOB_STDIN_CHANNEL:
                                    hand_over(note.payload, -1)
                                    continue
                                job_id, _, seq = note.payload.rpartition(":")
                                hand_over(job_id, int(seq))
                except psycopg.Error as exc:
                    log.warning("store_listen_failed", error=str(exc))
                    stop.wait(1.0)

        thread = threading.Thread(target=listen, name="store-listen", daemon=True)
        thread.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stop.set()
            await asyncio.to_thread(thread.join)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
