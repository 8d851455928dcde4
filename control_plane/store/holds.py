"""Held jobs: QUEUED in the store, with no message in the broker until they may run.

Three things hold a job back:
- ordering: an earlier job of the tenant with the same ordering_key has not ended (jobs of
  one key run one at a time, in submission order: jobs.seq);
- running quota: the tenant already runs max_running_jobs jobs;
- CPU quota: the tenant's jobs used its cpu_seconds_per_day in the rolling day. Submitting
  checks it too, but jobs submitted while it had room may be claimed once it has none; such
  a job says why it waits in its state_reason.
- a pause: an operator paused the tenant (control_plane/store/tenant_pauses.py); its jobs
  say so in their state_reason, as the CPU quota's do, until it is resumed.

A job with an unended predecessor is held at submit and never published. A job that a worker
claims while its tenant is at the running or CPU quota (or, defensively, out of order) is
held at the claim and its message dropped. The control plane's HoldReleaser publishes held
jobs again once they may run (a tenant's CPU frees as its use ages out of the day).
Publishing comes before marking a hold released, so a crash in between publishes twice at
worst, and the claim turns the second copy away.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from control_plane.store.backend import Backend, Tx
from control_plane.store.quotas import TenantQuota, cpu_ms_last_day, quota_of, running_count
from control_plane.store.records import JobState, Refusal
from control_plane.store.tenant_pauses import pause_of, paused_reason

ORDERING = "ordering"
RUNNING_QUOTA = "running_quota"
CPU_QUOTA = "cpu_quota"
PAUSED = "paused"
# Holds whose job says why in its state_reason, cleared when the hold is released.
_EXPLAINED = (CPU_QUOTA, PAUSED)
# A released job still not claimed after this long is published again, in case its message
# was lost; a duplicate is harmless (the claim refuses it).
REPUBLISH_AFTER_S = 300.0

_UNENDED = (JobState.QUEUED, JobState.RUNNING)


def has_unended_with_key(conn: Tx, tenant_id: str, ordering_key: str,
                         *, before_seq: int | None = None) -> bool:
    # "ordering_key != ''" lets SQLite use the partial index jobs_ordering.
    sql = ("SELECT 1 FROM jobs WHERE tenant_id = ? AND ordering_key = ? AND ordering_key != ''"
           " AND state IN (?, ?)")
    params: list[object] = [tenant_id, ordering_key, *_UNENDED]
    if before_seq is not None:
        sql += " AND seq < ?"
        params.append(before_seq)
    return conn.execute(sql + " LIMIT 1", params).fetchone() is not None


def hold(conn: Tx, job_id: str, tenant_id: str, reason: str,
         now: float) -> None:
    conn.execute(
        "INSERT INTO job_holds (job_id, tenant_id, reason, held_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(job_id) DO UPDATE SET reason = excluded.reason,"
        " held_at = excluded.held_at, released_at = NULL",
        (job_id, tenant_id, reason, now),
    )


def cpu_wait(conn: Tx, tenant_id: str, quota: TenantQuota,
             now: float) -> str | None:
    """Why the tenant's jobs may not start for want of CPU; None when they may."""
    used_ms = cpu_ms_last_day(conn, tenant_id, now)
    if used_ms < quota.cpu_seconds_per_day * 1000:
        return None
    return (f"waiting: the tenant's jobs used {used_ms / 1000:.1f} CPU-seconds in the last "
            f"24 hours, its quota cpu_seconds_per_day ({quota.cpu_seconds_per_day}); the job "
            "starts as that use ages out of the day")


def hold_explained(conn: Tx, job_id: str, tenant_id: str, reason: str, why: str,
                   now: float) -> None:
    hold(conn, job_id, tenant_id, reason, now)
    # The claim that starts it clears the reason.
    conn.execute("UPDATE jobs SET state_reason = ? WHERE id = ? AND state = ?",
                 (why, job_id, JobState.QUEUED))


def hold_at_submit(conn: Tx, job_id: str, tenant_id: str, ordering_key: str,
                   now: float) -> bool:
    """Before the job's row is inserted: every unended job with its key is earlier."""
    if ordering_key and has_unended_with_key(conn, tenant_id, ordering_key):
        hold(conn, job_id, tenant_id, ORDERING, now)
        return True
    return False


@dataclass(frozen=True)
class ClaimHeld:
    refusal: Refusal
    detail: str


class ClaimGate:
    """Run by JobStore.claim, inside its transaction, for a QUEUED job about to start."""

    def __init__(self, defaults: TenantQuota) -> None:
        self._defaults = defaults

    def __call__(self, conn: Tx, job_id: str, tenant_id: str,
                 now: float) -> ClaimHeld | None:
        # The tenant's running quota is counted, then taken: one claim of it at a time.
        conn.dialect.lock_tenant(conn, tenant_id)
        seq, ordering_key = conn.execute(
            "SELECT seq, ordering_key FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if ordering_key and has_unended_with_key(conn, tenant_id, ordering_key,
                                                 before_seq=seq):
            hold(conn, job_id, tenant_id, ORDERING, now)
            return ClaimHeld(Refusal.ORDERED,
                             f"an earlier job with ordering key {ordering_key!r} has not ended")
        pause = pause_of(conn, tenant_id)
        if pause is not None:
            why = paused_reason(pause)
            hold_explained(conn, job_id, tenant_id, PAUSED, why, now)
            return ClaimHeld(Refusal.THROTTLED, why)
        quota = quota_of(conn, tenant_id, self._defaults)
        cap = quota.max_running_jobs
        if running_count(conn, tenant_id) >= cap:
            hold(conn, job_id, tenant_id, RUNNING_QUOTA, now)
            return ClaimHeld(Refusal.THROTTLED,
                             f"tenant runs {cap} jobs, its max_running_jobs quota")
        why = cpu_wait(conn, tenant_id, quota, now)
        if why is not None:
            hold_explained(conn, job_id, tenant_id, CPU_QUOTA, why, now)
            return ClaimHeld(Refusal.THROTTLED, why)
        conn.execute("DELETE FROM job_holds WHERE job_id = ?", (job_id,))
        return None


@dataclass(frozen=True)
class Release:
    job_id: str
    tenant_id: str
    held_at: float  # tells this hold from a later one of the same job


def releasable(conn: Tx, defaults: TenantQuota, now: float) -> list[Release]:
    """Held jobs that may run now, in submission order; forgets holds of ended jobs."""
    conn.execute(
        "DELETE FROM job_holds WHERE NOT EXISTS"
        " (SELECT 1 FROM jobs WHERE jobs.id = job_holds.job_id AND jobs.state = ?)",
        (JobState.QUEUED,),
    )
    rows = conn.execute(
        "SELECT h.job_id, h.tenant_id, h.released_at, j.ordering_key, j.seq, h.held_at,"
        " h.reason FROM job_holds h JOIN jobs j ON j.id = h.job_id ORDER BY j.seq"
    ).fetchall()
    by_tenant: defaultdict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_tenant[row[1]].append(row)
    releases = []
    for tenant_id, held in by_tenant.items():
        pause = pause_of(conn, tenant_id)
        quota = quota_of(conn, tenant_id, defaults)
        kind, why = ((PAUSED, paused_reason(pause)) if pause is not None
                     else (CPU_QUOTA, cpu_wait(conn, tenant_id, quota, now)))
        if why is not None:
            # None may start: each says so (a claim would only hold it again).
            for row in held:
                if row[6] != kind:
                    hold_explained(conn, row[0], tenant_id, kind, why, now)
            continue
        # Released but not yet claimed: each will take a running place when it is.
        in_flight = sum(1 for row in held
                        if row[2] is not None and now - row[2] < REPUBLISH_AFTER_S)
        room = quota.max_running_jobs - running_count(conn, tenant_id) - in_flight
        heads: dict[str, int | None] = {}
        for job_id, _, released_at, ordering_key, seq, held_at, _reason in held:
            if room <= 0:
                break
            if released_at is not None and now - released_at < REPUBLISH_AFTER_S:
                continue
            if ordering_key:
                if ordering_key not in heads:
                    head = conn.execute(
                        "SELECT min(seq) FROM jobs WHERE tenant_id = ? AND ordering_key = ?"
                        " AND ordering_key != '' AND state IN (?, ?)",
                        (tenant_id, ordering_key, *_UNENDED),
                    ).fetchone()
                    heads[ordering_key] = head[0]
                if heads[ordering_key] != seq:
                    continue
            releases.append(Release(job_id, tenant_id, held_at))
            room -= 1
    return releases


def mark_released(conn: Tx, released: list[Release], now: float) -> None:
    # held_at must match: a claim may have turned the new message away and held the job
    # again meanwhile, and that hold still needs its release.
    conn.executemany(
        "UPDATE jobs SET state_reason = '' WHERE id = ? AND state = ? AND EXISTS"
        " (SELECT 1 FROM job_holds WHERE job_id = ? AND reason IN (?, ?) AND held_at = ?)",
        [(release.job_id, JobState.QUEUED, release.job_id, *_EXPLAINED, release.held_at)
         for release in released])
    conn.executemany(
        "UPDATE job_holds SET released_at = ? WHERE job_id = ? AND held_at = ?",
        [(now, release.job_id, release.held_at) for release in released])


def any_held(conn: Tx) -> bool:
    return conn.execute("SELECT 1 FROM job_holds LIMIT 1").fetchone() is not None


class HoldStore:
    def __init__(self, db: Backend, defaults: TenantQuota) -> None:
        self._db = db
        self._defaults = defaults

    async def releasable(self) -> list[Release]:
        now = time.time()

        def tx(conn: Tx) -> list[Release]:
            if not any_held(conn):
                return []
            return releasable(conn, self._defaults, now)

        return await self._db.run(tx)

    async def mark_released(self, released: list[Release]) -> None:
        now = time.time()
        await self._db.run(lambda conn: mark_released(conn, released, now))
