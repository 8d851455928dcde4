"""The store's schema, as numbered migrations for both dialects.

Each migration is applied once, in order, and recorded in schema_migrations; a store is
migrated by `sluice migrate` or by a control plane as it starts, under a lock (PostgreSQL:
an advisory lock; SQLite: BEGIN IMMEDIATE), so two starting at once do not race. DDL is
written for SQLite and put into PostgreSQL's types by the dialect; what cannot be (the
triggers) is written for each. A store made before migrations existed (today's schema, no
schema_migrations table) is version 1 as it stands: it is migrated on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from control_plane.store import wire
from control_plane.store.backend import Tx
from control_plane.store.dialect import JOB_EVENTS_CHANNEL, JOB_STDIN_CHANNEL, Dialect

if TYPE_CHECKING:
    from sluice.settings import Settings

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
);
"""

_INITIAL = """
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

_JOB_COUNT_TRIGGERS_SQLITE = """
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
"""

# The counter rows of one tenant are locked in the order of their states, whichever way a
# job moves, so two transactions changing that tenant's jobs cannot deadlock on them.
_JOB_COUNT_TRIGGERS_POSTGRESQL = """
CREATE OR REPLACE FUNCTION jobs_count_add(tenant TEXT, job_state BIGINT, n BIGINT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_job_counts (tenant_id, state, jobs) VALUES (tenant, job_state, n)
        ON CONFLICT (tenant_id, state) DO UPDATE SET jobs = tenant_job_counts.jobs + n;
END $$;
CREATE OR REPLACE FUNCTION jobs_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM jobs_count_add(NEW.tenant_id, NEW.state, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM jobs_count_add(OLD.tenant_id, OLD.state, -1);
    ELSIF OLD.state <> NEW.state THEN
        IF OLD.state < NEW.state THEN
            PERFORM jobs_count_add(OLD.tenant_id, OLD.state, -1);
            PERFORM jobs_count_add(NEW.tenant_id, NEW.state, 1);
        ELSE
            PERFORM jobs_count_add(NEW.tenant_id, NEW.state, 1);
            PERFORM jobs_count_add(OLD.tenant_id, OLD.state, -1);
        END IF;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS jobs_counted ON jobs;
CREATE TRIGGER jobs_counted AFTER INSERT OR DELETE OR UPDATE OF state ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_counted();
"""


def _initial(dialect: Dialect) -> str:
    if dialect.name == "postgresql":
        return dialect.ddl(_INITIAL) + _JOB_COUNT_TRIGGERS_POSTGRESQL
    return _INITIAL + _JOB_COUNT_TRIGGERS_SQLITE


def _job_submit_order(dialect: Dialect) -> str:
    """jobs.seq: the order jobs were accepted in (ordering keys, paging), from an explicit
    number rather than SQLite's rowid or commit order."""
    if dialect.name == "postgresql":
        backfill = """
CREATE SEQUENCE IF NOT EXISTS job_submit_seq;
UPDATE jobs SET seq = numbered.n FROM
    (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM jobs) AS numbered
    WHERE jobs.id = numbered.id;
SELECT setval('job_submit_seq', (SELECT coalesce(max(seq), 0) + 1 FROM jobs), false);
"""
    else:
        backfill = "UPDATE jobs SET seq = rowid;"
    return dialect.ddl("ALTER TABLE jobs ADD COLUMN seq INTEGER;") + backfill + """
CREATE UNIQUE INDEX IF NOT EXISTS jobs_submit_order ON jobs(seq);
CREATE INDEX IF NOT EXISTS jobs_tenant_seq ON jobs(tenant_id, seq);
"""


def _job_event_notify(dialect: Dialect) -> str:
    """PostgreSQL: a NOTIFY for every stored job event, sent on commit, so a WatchJob on
    any control plane hears of it at once. SQLite has no such thing: its watchers poll."""
    if dialect.name != "postgresql":
        return ""
    return f"""
CREATE OR REPLACE FUNCTION job_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{JOB_EVENTS_CHANNEL}', NEW.job_id || ':' || NEW.seq);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS job_event_notify ON job_events;
CREATE TRIGGER job_event_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_event_notify();
"""


_WORKER_TOKENS = """
CREATE TABLE IF NOT EXISTS worker_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS worker_tokens_live_name
    ON worker_tokens(name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS worker_languages (
    worker TEXT NOT NULL,
    language_id TEXT NOT NULL,
    language BLOB NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (worker, language_id)
);
CREATE INDEX IF NOT EXISTS worker_languages_seen ON worker_languages(last_seen);
DROP TABLE IF EXISTS languages;
"""


def _worker_tokens(dialect: Dialect) -> str:
    """Workers' credentials on the gateway, apart from tenants' API keys; a token's name is
    the worker identity that holds leases (jobs.lease_owner) and registers languages, which
    are listed per identity while it re-registers them (`languages` had them for anyone)."""
    return dialect.ddl(_WORKER_TOKENS)


_RETENTION = """
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs(ended_at);
CREATE TABLE IF NOT EXISTS job_archiving (
    job_id TEXT PRIMARY KEY,
    claimed_until REAL NOT NULL
);
"""


def _retention(dialect: Dialect) -> str:
    """Retention (control_plane/store/retention.py): finished jobs found oldest end first,
    and the claims of the sweeps archiving them (a replica that died mid-batch hands its
    jobs on when its claim runs out)."""
    return dialect.ddl(_RETENTION)


# Field numbers of protos/sluice/v1/job.proto (never reused: the contract only adds).
_RESULT_STDOUT, _RESULT_STDERR = 4, 5
_EVENT_RESULT = 6
_BATCH = 1000


def _no_sql(dialect: Dialect) -> str:
    return ""


def _output_stored_once(tx: Tx) -> None:
    """A job's output was stored three times: as its output events, in jobs.result and in
    its result event. Only the events keep it; reads put it back into the Result from the
    output events after jobs.attempt_seq and before the result event. A job cancelled
    while queued after an attempt was lost has a Result with no output, and the lost
    attempt's events after attempt_seq: its attempt_seq moves up to the result event."""
    after = ""
    while True:
        rows = tx.execute(
            "SELECT id, result, last_seq FROM jobs WHERE result IS NOT NULL AND id > ?"
            " ORDER BY id LIMIT ?", (after, _BATCH)).fetchall()
        if not rows:
            return
        for job_id, result, last_seq in rows:
            result = bytes(result)
            had_output = bool(wire.field(result, _RESULT_STDOUT)
                              or wire.field(result, _RESULT_STDERR))
            tx.execute(
                "UPDATE jobs SET result = ?, attempt_seq = CASE WHEN ? THEN attempt_seq"
                " ELSE last_seq - 2 END WHERE id = ?",
                (wire.edit(result, drop=frozenset({_RESULT_STDOUT, _RESULT_STDERR})),
                 had_output, job_id))
            # The result event is the last but one (the terminal state change follows it).
            for seq, event in tx.execute(
                    "SELECT seq, event FROM job_events WHERE job_id = ? AND seq >= ?",
                    (job_id, last_seq - 1)).fetchall():
                event = bytes(event)
                if wire.field(event, _EVENT_RESULT) is None:
                    continue
                stripped = wire.edit(event, nested={_EVENT_RESULT: lambda inner: wire.edit(
                    inner, drop=frozenset({_RESULT_STDOUT, _RESULT_STDERR}))})
                tx.execute("UPDATE job_events SET event = ? WHERE job_id = ? AND seq = ?",
                           (stripped, job_id, seq))
        after = rows[-1][0]


_JOB_STDIN = """
ALTER TABLE jobs ADD COLUMN interactive INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS job_stdin (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    offset_bytes INTEGER NOT NULL,
    data BLOB NOT NULL,
    eof INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
);
"""


def _job_stdin(dialect: Dialect) -> str:
    """Interactive jobs (control_plane/store/job_stdin.py): the stdin callers send through
    AttachJob, held in order until the job's worker stream takes it, on any control plane;
    on PostgreSQL a NOTIFY of each piece stored wakes that stream at once."""
    ddl = dialect.ddl(_JOB_STDIN)
    if dialect.name != "postgresql":
        return ddl
    return ddl + f"""
CREATE OR REPLACE FUNCTION job_stdin_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{JOB_STDIN_CHANNEL}', NEW.job_id);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS job_stdin_notify ON job_stdin;
CREATE TRIGGER job_stdin_notify AFTER INSERT ON job_stdin
    FOR EACH ROW EXECUTE FUNCTION job_stdin_notify();
"""


_OPERATOR_CONTROLS = """
CREATE TABLE IF NOT EXISTS tenant_pauses (
    tenant_id TEXT PRIMARY KEY,
    paused_at REAL NOT NULL,
    paused_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    languages TEXT NOT NULL DEFAULT '[]',
    slots INTEGER NOT NULL,
    active_slots INTEGER NOT NULL,
    running_jobs INTEGER NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    -- the operator's controls, handed to the worker on its next report; NULL: as started
    want_slots INTEGER,
    want_draining INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS workers_seen ON workers(last_seen);
"""


def _operator_controls(dialect: Dialect) -> str:
    """Runtime controls (control_plane/store/tenant_pauses.py, workers.py): paused tenants,
    whose jobs wait QUEUED at the claim; each worker process as it last reported (slots,
    running jobs, draining) with the controls an operator set for it."""
    return dialect.ddl(_OPERATOR_CONTROLS)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: Callable[[Dialect], str]
    # Rows to rewrite, after the DDL, in the same transaction.
    data: Callable[[Tx], None] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _initial),
    Migration(2, "job_submit_order", _job_submit_order),
    Migration(3, "job_event_notify", _job_event_notify),
    Migration(4, "worker_tokens", _worker_tokens),
    Migration(5, "retention", _retention),
    Migration(6, "output_stored_once", _no_sql, _output_stored_once),
    Migration(7, "job_stdin", _job_stdin),
    Migration(8, "operator_controls", _operator_controls),
)
LATEST = MIGRATIONS[-1].version


def migrate(tx: Tx, script: Callable[[str], None], tail: str = "") -> list[Migration]:
    """Applies the missing migrations inside tx, which holds the migration lock; returns
    them. `script` runs several statements of DDL; `tail` is DDL not yet made a migration
    (CREATE ... IF NOT EXISTS, run every time)."""
    dialect = tx.dialect
    script(dialect.ddl(MIGRATIONS_TABLE))
    applied = {row[0] for row in tx.execute("SELECT version FROM schema_migrations")}
    done: list[Migration] = []
    if not applied and tx.execute(dialect.table_exists, ("jobs",)).fetchone()[0]:
        # Made by the code from before migrations: its schema is the first migration's.
        _record(tx, MIGRATIONS[0])
        applied.add(MIGRATIONS[0].version)
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        text = migration.sql(dialect)
        if text.strip():
            script(text)
        if migration.data is not None:
            migration.data(tx)
        _record(tx, migration)
        done.append(migration)
    if tail.strip():
        script(dialect.ddl(tail))
    return done


def _record(tx: Tx, migration: Migration) -> None:
    tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
               (migration.version, migration.name, time.time()))


def version(tx: Tx) -> int:
    row = tx.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return row[0] or 0


async def migrate_store(settings: Settings) -> str:
    """`sluice migrate`: opens the store (which applies what is missing) and says where
    it stands."""
    from control_plane.store.backend import open_store, redacted

    db = await open_store(settings)
    try:
        current = await db.run(version)
    finally:
        await db.close()
    applied = ", ".join(f"{m.version:04d}_{m.name}" for m in db.migrations_applied) or "none"
    return (f"store {redacted(settings.store_url)}: schema version {current}"
            f" (applied now: {applied})")
