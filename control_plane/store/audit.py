"""The audit trail: who did what to which job or key, and when.

Written in the same transaction as the change it records, so the trail and the state
never disagree; each record is also one structured log line.
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
    conn.execute(
        "INSERT INTO audit_events (time, tenant_id, actor, action, job_id, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now, tenant_id, actor, action, job_id, json.dumps(detail, sort_keys=True)),
    )
    log.info(f"audit_{action}", tenant=tenant_id, actor=actor, job_id=job_id or None,
             **detail)


class AuditLog:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def query(self, *, tenant_id: str = "", job_id: str = "", action: str = "",
                    after_seq: int = 0, limit: int = 100) -> list[AuditRecord]:
        clauses, params = ["seq > ?"], [after_seq]
        for column, value in (("tenant_id", tenant_id), ("job_id", job_id),
                              ("action", action)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = (f"SELECT seq, time, tenant_id, actor, action, job_id, detail FROM audit_events"
               f" WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?")
        params.append(limit)

        def tx(conn: Tx) -> list[AuditRecord]:
            return [AuditRecord(*row[:6], json.loads(row[6])) for row in conn.execute(sql, params)]

        return await self._db.run(tx)
