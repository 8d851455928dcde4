"""What retention reads and deletes: finished jobs past their time, and old audit records.

Every call is one short transaction over one small batch, so SubmitJob and the workers'
reports wait behind at most one of them, never behind a whole sweep.

Several control planes may sweep at once. A job is claimed before it is archived (a row in
job_archiving, taken by a guarded upsert that only an expired claim yields to), so two
replicas do not write the same job; and it is deleted only if it is still what was archived
(same state, same last event, same parking mark), so even a claim that ran out while its
holder was still writing loses nothing: the later writer writes the same object again, and
only one delete finds the row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from control_plane.store.audit import AuditRecord, settled_seq
from control_plane.store.backend import Backend, Tx
from control_plane.store.jobs import _JOB_COLUMNS, PURGED, events_with_output, jobs_from_rows
from control_plane.store.records import JobSnapshot, JobState, RecordCodec

MAX_SEQ = 2**63 - 1  # above every seq: no watermark (SQLite)
# Terminal states that stay so. A dead-lettered job may still be replayed (by the recovery
# service, or an operator from the parking lot): it leaves the store only once purged.
_FINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class ExpiredJob:
    """A finished job claimed for archiving, and what it was when claimed: the delete
    goes ahead only if it still is."""
    job_id: str
    tenant_id: str
    state: int
    last_seq: int
    parked: int


class RetentionStore:
    def __init__(self, db: Backend, codec: RecordCodec) -> None:
        self._db = db
        self._codec = codec

    async def claim_expired(self, *, ended_before: float, now: float, claim_s: float,
                            limit: int) -> list[ExpiredJob]:
        """Up to `limit` finished jobs that ended before `ended_before`, oldest end first,
        now claimed by the caller until now + claim_s; jobs another sweep holds a live
        claim on are left out."""
        placeholders = ", ".join("?" * len(_FINAL_STATES))

        def tx(conn: Tx) -> list[ExpiredJob]:
            rows = conn.execute(
                "SELECT id, tenant_id, state, last_seq, parked FROM jobs"
                f" WHERE ended_at < ? AND (state IN ({placeholders})"
                "  OR (state = ? AND parked = ?))"
                " AND NOT EXISTS (SELECT 1 FROM job_archiving a"
                "  WHERE a.job_id = jobs.id AND a.claimed_until >= ?)"
                " ORDER BY ended_at LIMIT ?",
                (ended_before, *_FINAL_STATES, JobState.DEAD_LETTERED, PURGED, now,
                 limit),
            ).fetchall()
            claimed = []
            for row in rows:
                # Guarded: a claim another sweep took since the read above is not taken.
                won = conn.execute(
                    "INSERT INTO job_archiving (job_id, claimed_until) VALUES (?, ?)"
                    " ON CONFLICT (job_id) DO UPDATE SET claimed_until = excluded.claimed_until"
                    " WHERE job_archiving.claimed_until < ? RETURNING job_id",
                    (row[0], now + claim_s, now),
                ).fetchone()
                if won is not None:
                    claimed.append(ExpiredJob(*row))
            return claimed

        return await self._db.run(tx)

    async def snapshot(self, expired: ExpiredJob) -> JobSnapshot | None:
        """The job as its archive object: the Job as GetJob returns it and all its events,
        read in one transaction; None if it is gone or changed since it was claimed."""

        def tx(conn: Tx) -> JobSnapshot | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS}, last_seq, parked, replays, spec FROM jobs"
                " WHERE id = ?",
                (expired.job_id,),
            ).fetchone()
            if row is None or (row[2], row[-4], row[-3]) != (
                    expired.state, expired.last_seq, expired.parked):
                return None
            events = events_with_output(
                conn, self._codec, expired.job_id, [blob for (blob,) in conn.execute(
                    "SELECT event FROM job_events WHERE job_id = ? ORDER BY seq",
                    (expired.job_id,))])
            return JobSnapshot(
                tenant_id=row[1], job=jobs_from_rows(conn, self._codec, [row])[0],
                events=tuple(events), spec=self._codec.decode_spec(row[-1]), replays=row[-2])

        return await self._db.run(tx)

    async def delete(self, jobs: list[ExpiredJob], *, release: list[ExpiredJob]) -> list[str]:
        """Deletes each job and its events, if it is still as claimed; drops the claims
        of `release` (the whole batch: deleted, changed or not written). Returns the ids
        deleted."""

        def tx(conn: Tx) -> list[str]:
            deleted = []
            for job in jobs:
                gone = conn.execute(
                    "DELETE FROM jobs WHERE id = ? AND state = ? AND last_seq = ?"
                    " AND parked = ? RETURNING id",
                    (job.job_id, job.state, job.last_seq, job.parked),
                ).fetchone()
                if gone is not None:
                    conn.execute("DELETE FROM job_events WHERE job_id = ?", (job.job_id,))
                    conn.execute("DELETE FROM job_stdin WHERE job_id = ?", (job.job_id,))
                    deleted.append(job.job_id)
            for start in range(0, len(release), 500):  # under SQLite's parameter limit
                chunk = [job.job_id for job in release[start:start + 500]]
                conn.execute(
                    f"DELETE FROM job_archiving WHERE job_id IN ({', '.join('?' * len(chunk))})",
                    chunk)
            return deleted

        return await self._db.run(tx)

    async def oldest_job_created_at(self) -> float | None:
        """When the oldest job in the store was submitted (ids sort by creation)."""

        def tx(conn: Tx) -> float | None:
            row = conn.execute("SELECT created_at FROM jobs ORDER BY id LIMIT 1").fetchone()
            return None if row is None else row[0]

        return await self._db.run(tx)

    # Audit records -------------------------------------------------------------------------

    async def expired_audit(self, *, before: float, limit: int) -> list[AuditRecord]:
        """The oldest audit records, up to `limit`, as long as each is older than `before`.
        Read from the start of the trail and cut at the first newer record, so the read is
        as short as the batch whatever the trail's length."""

        def tx(conn: Tx) -> list[AuditRecord]:
            # Only settled records: the delete that follows takes a range of seqs, which a
            # record committed later must not fall into unread.
            watermark = settled_seq(conn)
            records = []
            for row in conn.execute(
                "SELECT seq, time, tenant_id, actor, action, job_id, detail FROM audit_events"
                " WHERE seq <= ? ORDER BY seq LIMIT ?",
                (MAX_SEQ if watermark is None else watermark, limit)):
                if row[1] >= before:
                    break
                records.append(AuditRecord(*row[:6], json.loads(row[6])))
            return records

        return await self._db.run(tx)

    async def delete_audit(self, *, first_seq: int, last_seq: int, before: float) -> int:
        """Deletes the records expired_audit returned (a record with a seq in the range
        that committed since is newer than `before`, and stays). Returns how many."""

        def tx(conn: Tx) -> int:
            return len(conn.execute(
                "DELETE FROM audit_events WHERE seq >= ? AND seq <= ? AND time < ?"
                " RETURNING seq",
                (first_seq, last_seq, before),
            ).fetchall())

        return await self._db.run(tx)
