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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    language TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    spec BLOB NOT NULL,
    idempotency_key TEXT NOT NULL DEFAULT '',
    ordering_key TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    lease_owner TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    state_reason TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0,
    -- seq of the event that started the current attempt: its output follows it
    attempt_seq INTEGER NOT NULL DEFAULT 0,
    -- dead-lettered and over its replay budget: waits in the parking lot for an operator
    parked INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
    ON jobs(tenant_id, idempotency_key) WHERE idempotency_key != '';
CREATE INDEX IF NOT EXISTS jobs_tenant_id ON jobs(tenant_id, id);
CREATE INDEX IF NOT EXISTS jobs_running_lease ON jobs(state, lease_expires_at);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    tenant_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit_events(tenant_id, seq);
CREATE INDEX IF NOT EXISTS audit_by_job ON audit_events(job_id, seq) WHERE job_id != '';
-- Quotas (control_plane/store/quotas.py). Counters live here, in the store every
-- control-plane process shares, and are read and changed in the transaction that stores
-- the job, so several control planes enforce one quota.
CREATE INDEX IF NOT EXISTS jobs_tenant_state ON jobs(tenant_id, state);
-- Jobs per tenant and state, kept by triggers so that no path that changes a job can
-- forget it, and a quota check reads one row instead of counting a backlog.
CREATE TABLE IF NOT EXISTS tenant_job_counts (
    tenant_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    jobs INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, state)
) WITHOUT ROWID;
-- A store made before the triggers existed: count its jobs once.
INSERT OR IGNORE INTO tenant_job_counts (tenant_id, state, jobs)
    SELECT tenant_id, state, count(*) FROM jobs
    WHERE NOT EXISTS (SELECT 1 FROM tenant_job_counts) GROUP BY tenant_id, state;
CREATE TRIGGER IF NOT EXISTS jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO tenant_job_counts (tenant_id, state, jobs) VALUES (new.tenant_id, new.state, 1)
        ON CONFLICT (tenant_id, state) DO UPDATE SET jobs = jobs + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_counted_on_state AFTER UPDATE OF state ON jobs
    WHEN old.state != new.state BEGIN
    UPDATE tenant_job_counts SET jobs = jobs - 1
        WHERE tenant_id = old.tenant_id AND state = old.state;
    INSERT INTO tenant_job_counts (tenant_id, state, jobs) VALUES (new.tenant_id, new.state, 1)
        ON CONFLICT (tenant_id, state) DO UPDATE SET jobs = jobs + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_counted_on_delete AFTER DELETE ON jobs BEGIN
    UPDATE tenant_job_counts SET jobs = jobs - 1
        WHERE tenant_id = old.tenant_id AND state = old.state;
END;
CREATE TABLE IF NOT EXISTS tenant_quotas (
    tenant_id TEXT PRIMARY KEY,
    -- only the fields set for this tenant; the rest come from Settings
    overrides TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS submit_buckets (
    tenant_id TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- CPU time of ended jobs per tenant and minute: a rolling day is at most 1440 rows to add.
CREATE TABLE IF NOT EXISTS cpu_usage (
    tenant_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    cpu_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, minute)
) WITHOUT ROWID;
-- QUEUED jobs with no message in the broker: they wait for an earlier job of their
-- ordering key, or for the tenant's running quota (control_plane/store/holds.py).
CREATE INDEX IF NOT EXISTS jobs_ordering ON jobs(tenant_id, ordering_key, state)
    WHERE ordering_key != '';
CREATE TABLE IF NOT EXISTS job_holds (
    job_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    held_at REAL NOT NULL,
    -- when a message for it was published again; NULL while it still waits
    released_at REAL
);
CREATE TABLE IF NOT EXISTS languages (
    id TEXT PRIMARY KEY,
    language BLOB NOT NULL,
    last_seen REAL NOT NULL
);
-- Retention (control_plane/store/retention.py) -------------------------------------------
-- Finished jobs are found oldest end first.
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs(ended_at);
-- A finished job being archived by one control plane: others leave it alone until claimed_until
-- (a replica that died mid-batch hands its jobs on when the claim runs out). Its own table,
-- not a column of jobs, so a store made before it needs no ALTER TABLE.
CREATE TABLE IF NOT EXISTS job_archiving (
    job_id TEXT PRIMARY KEY,
    claimed_until REAL NOT NULL
);
-- End of retention ----------------------------------------------------------------------
"""


@dataclass
class _Call:
    fn: Callable[[sqlite3.Connection], Any]
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


class Database:
    def __init__(self, path: Path, *, checkpoint_every_s: float = CHECKPOINT_EVERY_S,
                 restart_log_after_frames: int = RESTART_AFTER_FRAMES) -> None:
        self._path = path
        self._calls: queue.SimpleQueue[_Call | _RestartLog | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
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
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before SubmitJob answers. Under NORMAL a power cut could
        # lose the last commits while the broker (which fsyncs before it confirms) keeps
        # their messages, and a claim for a job the store no longer has drops the message:
        # an accepted job lost. Group commit makes the fsync one per batch (~0.2 ms here).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        # Checkpoints run on their own thread (WalCheckpointer), never inside a commit here.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs fn(connection) atomically on the database thread; returns once committed."""
        return await self._submit(fn, transaction=True)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool) -> T:
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
                call.value = call.fn(conn)
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
            self._conn = None
