"""The SQLite database: one connection on one thread, so the event loop never waits on disk.

Each call runs a whole function as one atomic unit on that thread; no other coroutine's
statements can interleave with it. Calls that queue up while the thread is busy are
committed together (group commit): each runs inside its own savepoint, so one that fails
is rolled back alone, and every caller hears back only once the commit holding its work
has succeeded. Under load that is one commit, one wake-up of the event loop and fewer
hand-offs of the interpreter lock per batch rather than per call: the hop to the thread
cost several times the transaction itself. Commits never checkpoint the write-ahead log:
WalCheckpointer does, beside them, and asks this thread only to empty a log grown long.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from control_plane.store import migrations
from control_plane.store.backend import JobEventCallback, JobStdinCallback, Params
from control_plane.store.dialect import SQLITE, Dialect
from control_plane.store.wal_checkpointer import (
    CHECKPOINT_EVERY_S,
    RESTART_AFTER_FRAMES,
    WalCheckpointer,
    checkpoint,
)
from sluice.observability import name_os_thread

T = TypeVar("T")
# Calls committed together at most: bounds how long the first of a batch waits for the rest.
MAX_BATCH = 64
# How long a statement waits for another process's write lock (sqlite3's busy handler).
BUSY_TIMEOUT_S = 30.0

# DDL not yet made a numbered migration (control_plane/store/migrations.py): each block
# CREATE ... IF NOT EXISTS, written for SQLite (the dialect puts it into PostgreSQL's
# types), run after the migrations every time a store is opened.
SCHEMA = ""


class SqliteTx:
    """The store's Tx over the SQLite connection: what store functions see of it."""

    __slots__ = ("_conn",)
    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, params: Any) -> None:
        self._conn.executemany(sql, params)

    def script(self, sql: str) -> None:
        """Several statements, inside the transaction (executescript would commit it)."""
        statement = ""
        for part in sql.split(";"):
            statement += part + ";"
            if sqlite3.complete_statement(statement):
                if statement.strip(" \n;"):
                    self._conn.execute(statement)
                statement = ""


@dataclass
class _Call:
    fn: Callable[[Any], Any]
    transaction: bool  # False: run bare, outside any transaction (open, close)
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    ok: bool = False
    value: Any = None


def _settle(calls: list[_Call]) -> None:
    for call in calls:
        if call.future.cancelled():
            continue  # its caller went away; the work itself is done (or failed)
        if call.ok:
            call.future.set_result(call.value)
        else:
            call.future.set_exception(call.value)


class _RestartLog:
    """Put on the call queue by the checkpointer: empty the log once the batch at hand is
    done."""


_RESTART_LOG = _RestartLog()


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """PRAGMA journal_mode=WAL, retried while another process holds the file: two
    connections switching a new file at once can get SQLITE_BUSY at once, without the busy
    handler (SQLite refuses the second rather than deadlock), so the timeout alone does not
    cover it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """The SQLite backend (control_plane/store/backend.py)."""

    dialect: Dialect = SQLITE

    def __init__(self, path: Path, *, checkpoint_every_s: float = CHECKPOINT_EVERY_S,
                 restart_log_after_frames: int = RESTART_AFTER_FRAMES) -> None:
        self._path = path
        self._calls: queue.SimpleQueue[_Call | _RestartLog | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._tx: SqliteTx | None = None
        self.migrations_applied: list[migrations.Migration] = []
        self._checkpointer = WalCheckpointer(
            path, lambda: self._calls.put(_RESTART_LOG), every_s=checkpoint_every_s,
            restart_after_frames=restart_log_after_frames)

    async def open(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
        self._thread.start()
        await self._submit(self._open, transaction=False)
        self._checkpointer.start()

    def _open(self, _: object) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Waits for the lock up to BUSY_TIMEOUT_S from the first statement on: switching to
        # WAL takes the lock too, and another process may be migrating the file.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_S)
        _switch_to_wal(conn)
        # FULL: a commit is on disk before SubmitJob answers. Under NORMAL a power cut could
        # lose the last commits while the broker (which fsyncs before it confirms) keeps
        # their messages, and a claim for a job the store no longer has drops the message:
        # an accepted job lost. Group commit makes the fsync one per batch (~0.2 ms here).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Checkpoints run on their own thread (WalCheckpointer), never inside a commit here.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # BEGIN IMMEDIATE: the migration lock; another process migrating waits for it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            tx = SqliteTx(conn)
            self.migrations_applied = migrations.migrate(tx, tx.script, SCHEMA)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn = conn
        self._tx = SqliteTx(conn)

    async def run(self, fn: Callable[[SqliteTx], T]) -> T:
        """Runs fn(tx) atomically on the database thread; returns once committed."""
        return await self._submit(fn, transaction=True)

    async def listen_job_events(self, on_event: JobEventCallback,
                                on_stdin: JobStdinCallback | None = None) -> None:
        """SQLite cannot tell: watchers and stdin feeds poll (control_plane/watch_hub.py,
        control_plane/stdin_hub.py)."""

    async def _submit(self, fn: Callable[[Any], T], *, transaction: bool) -> T:
        if self._thread is None:
            raise RuntimeError("Database.open() was not awaited")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put(_Call(fn, transaction, future, loop))
        return await future

    # The database thread ---------------------------------------------------------------

    def _serve(self) -> None:
        name_os_thread("sqlite")
        while True:
            first = self._calls.get()
            if first is None:
                return
            restart_log = isinstance(first, _RestartLog)
            batch = [first] if isinstance(first, _Call) else []
            while len(batch) < MAX_BATCH:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is None:
                    self._calls.put(None)  # stop after this batch
                    break
                if isinstance(call, _RestartLog):
                    restart_log = True
                else:
                    batch.append(call)
            self._run_batch(batch)
            loops: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
            for call in batch:
                loops.setdefault(call.loop, []).append(call)
            for loop, calls in loops.items():
                try:
                    loop.call_soon_threadsafe(_settle, calls)
                except RuntimeError:
                    pass  # that loop is closed: nobody is waiting any more
            if restart_log and self._conn is not None:
                # After the batch's callers are answered: only the next batch waits for it.
                checkpoint(self._conn, "TRUNCATE")
                self._checkpointer.restarted()

    def _run_batch(self, batch: list[_Call]) -> None:
        conn = self._conn
        # Alone in its transaction (the usual case when not busy), a call needs no
        # savepoint: its failure rolls the whole transaction back. Every statement costs
        # hand-offs of the interpreter lock, so the two are worth saving.
        alone = len(batch) == 1
        committed: list[_Call] = []  # succeeded inside the open transaction
        for call in batch:
            if not call.transaction:
                self._commit(committed)
                committed = []
                self._call_bare(call)
                continue
            if conn is None:
                call.value = RuntimeError("the database is not open")
                continue
            if not conn.in_transaction:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except Exception as exc:
                    call.value = exc
                    continue
            if not alone:
                conn.execute("SAVEPOINT call")
            try:
                call.value = call.fn(self._tx)
            except BaseException as exc:
                call.value = exc
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back itself (it does on some
                    # errors): the work of the calls before this one is gone too.
                    for lost in committed:
                        lost.ok, lost.value = False, exc
                    committed = []
                elif alone:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute("ROLLBACK TO call")
                    conn.execute("RELEASE call")
                continue
            if not alone:
                conn.execute("RELEASE call")
            call.ok = True
            committed.append(call)
        self._commit(committed)

    def _commit(self, calls: list[_Call]) -> None:
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for call in calls:
                call.ok, call.value = False, exc

    @staticmethod
    def _call_bare(call: _Call) -> None:
        try:
            call.value = call.fn(None)  # type: ignore[arg-type]
            call.ok = True
        except BaseException as exc:
            call.value = exc

    async def close(self) -> None:
        if self._thread is None:
            return
        await asyncio.to_thread(self._checkpointer.stop)
        if self._conn is not None:
            await self._submit(self._close, transaction=False)
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _close(self, _: object) -> None:
        if self._conn is not None:
            checkpoint(self._conn, "TRUNCATE")  # the file alone is the whole store
            self._conn.close()
            self._conn = self._tx = None
