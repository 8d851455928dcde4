"""The SQLite database: one connection on one thread, so the event loop never waits on disk.

Each call runs a whole transaction as one function on that thread; no other coroutine's
statements can interleave with it, and a call costs one hop to the thread and back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

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
"""


class Database:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._submit(self._open)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL with WAL: a commit survives a process crash; only a power cut may lose the
        # last few, and the broker still holds those jobs' messages.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs fn(connection) as one transaction on the database thread."""
        return await self._submit(self._transaction, fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        assert conn is not None, "Database.open() was not awaited"
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _submit(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        if self._conn is not None:
            await self._submit(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
