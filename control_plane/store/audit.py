"""The audit trail: who did what to which job or key, and when.

Written in the same transaction as the change it records, so the trail and the state
never disagree; each record is also one structured log line.

Readers page the trail by seq. On PostgreSQL a seq is drawn when a record is written but
seen by others only when its transaction commits, so seq 10 may commit after seq 11: a
reader that had paged past 11 would never see 10. So a read goes only up to a watermark
every seq at or below which has settled (committed or rolled back): the highest seq drawn
when the read starts, once every transaction that was writing audit records then has
ended. Writers are never held up: each holds a shared lock while it writes, which only
marks it in pg_locks; a reader waits for those of them that could hold a seq under its
watermark (a few milliseconds: they are short).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from control_plane.store.backend import Backend, Tx
from sluice.observability import get_logger

log = get_logger("sluice.audit")


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: float
    tenant_id: str
    actor: str
    action: str
    job_id: str
    detail: dict[str, object]


def record(conn: Tx, *, tenant_id: str, actor: str, action: str,
           job_id: str = "", now: float | None = None, **detail: object) -> None:
    now = time.time() if now is None else now
    conn.execute(conn.dialect.audit_insert,
                 (now, tenant_id, actor, action, job_id, json.dumps(detail, sort_keys=True)))
    log.info(f"audit_{action}", tenant=tenant_id, actor=actor, job_id=job_id or None,
             **detail)


# How long a reader waits for the audit writers in flight before it gives up on this page
# (it then returns nothing new: no gap, and the caller's token finds the records later).
SETTLE_WAIT_S = 10.0
_SETTLE_POLL_S = 0.002


def settled_seq(conn: Tx) -> int | None:
    """The watermark: no audit record with a seq at or below it commits later. None: every
    seq committed is settled (SQLite). Waits (in the store's thread) for writers in flight."""
    dialect = conn.dialect
    if dialect.audit_last_taken is None or dialect.audit_writers is None:
        return None
    # The seq first, then the writers: a seq drawn before the first read was drawn under
    # the writer's lock, so that writer is in the second read if it has not ended.
    last = conn.execute(dialect.audit_last_taken).fetchone()[0] or 0
    writers = [row[0] for row in conn.execute(dialect.audit_writers, (None, None))]
    deadline = time.monotonic() + SETTLE_WAIT_S
    while writers:
        if time.monotonic() > deadline:
            return 0
        time.sleep(_SETTLE_POLL_S)
        writers = [row[0] for row in conn.execute(dialect.audit_writers, (writers, writers))]
    return last


class AuditLog:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def submitter_of(self, job_id: str) -> str | None:
        """The tenant that submitted job_id, from its `submitted` record; None when the trail
        does not hold it. Operators name a job, not its tenant: once retention has taken
        the job from the store, the trail (kept longer) still says whose it was."""

        def tx(conn: Tx) -> str | None:
            row = conn.execute(
                "SELECT tenant_id FROM audit_events WHERE job_id = ? AND action = 'submitted'"
                " ORDER BY seq LIMIT 1", (job_id,)).fetchone()
            return row[0] if row else None

        return await self._db.run(tx)

    async def query(self, *, tenant_id: str = "", job_id: str = "", action: str = "",
                    after_seq: int = 0, limit: int = 100) -> list[AuditRecord]:
        clauses, params = ["seq > ?"], [after_seq]
        for column, value in (("tenant_id", tenant_id), ("job_id", job_id),
                              ("action", action)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)

        def tx(conn: Tx) -> list[AuditRecord]:
            watermark = settled_seq(conn)
            settled = [] if watermark is None else ["seq <= ?"]
            sql = (f"SELECT seq, time, tenant_id, actor, action, job_id, detail"
                   f" FROM audit_events WHERE {' AND '.join(clauses + settled)}"
                   " ORDER BY seq LIMIT ?")
            return [AuditRecord(*row[:6], json.loads(row[6])) for row in conn.execute(
                sql, [*params, *([] if watermark is None else [watermark]), limit])]

        return await self._db.run(tx)
