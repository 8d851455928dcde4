"""Tenant quotas in the store: each tenant's own values, its submit token bucket and its CPU.

Everything a quota counts is read from the store that every control-plane process shares,
inside the transaction that stores the job, under the tenant's lock (SQLite's write lock;
on PostgreSQL a lock per tenant, see dialect.py), so two control planes can never both
admit the job that goes over.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass

from control_plane.store import audit
from control_plane.store.backend import Backend, Tx
from control_plane.store.records import JobState
from control_plane.store.tenants import UnknownTenant
from sluice.settings import Settings

DAY_S = 86_400
MINUTE_S = 60


@dataclass(frozen=True)
class TenantQuota:
    """What applies to one tenant: its own values where set, else the platform defaults."""

    submit_rate_per_s: float
    submit_burst: int
    max_queued_jobs: int
    max_running_jobs: int
    cpu_seconds_per_day: int
    max_wall_time_ms: int
    max_cpu_time_ms: int
    max_memory_bytes: int
    max_processes: int
    max_output_bytes: int
    max_source_bytes: int

    @classmethod
    def defaults(cls, settings: Settings) -> TenantQuota:
        return cls(
            submit_rate_per_s=settings.quota_submit_rate_per_s,
            submit_burst=settings.quota_submit_burst,
            max_queued_jobs=settings.quota_max_queued_jobs,
            max_running_jobs=settings.quota_max_running_jobs,
            cpu_seconds_per_day=settings.quota_cpu_seconds_per_day,
            max_wall_time_ms=settings.max_wall_time_ms,
            max_cpu_time_ms=settings.max_cpu_time_ms,
            max_memory_bytes=settings.max_memory_bytes,
            max_processes=settings.max_max_processes,
            max_output_bytes=settings.max_max_output_bytes,
            max_source_bytes=settings.max_source_bytes,
        )

    def with_overrides(self, overrides: dict[str, float]) -> TenantQuota:
        known = {k: v for k, v in overrides.items() if k in QUOTA_FIELDS}
        return dataclasses.replace(self, **known)  # type: ignore[arg-type]


QUOTA_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TenantQuota))
# A tenant's per-job ceilings, by the Limits field each one caps.
LIMIT_CEILINGS: dict[str, str] = {
    "wall_time_ms": "max_wall_time_ms",
    "cpu_time_ms": "max_cpu_time_ms",
    "memory_bytes": "max_memory_bytes",
    "max_processes": "max_processes",
    "max_output_bytes": "max_output_bytes",
}
# Fields that may not exceed the platform's own cap (the default is that cap).
_PLATFORM_CAPPED = frozenset({*LIMIT_CEILINGS.values(), "max_source_bytes"})


class InvalidQuota(ValueError):
    """The message names the field and what it may be."""


def check_quota_values(changes: dict[str, float], defaults: TenantQuota) -> None:
    for name, value in changes.items():
        if name not in QUOTA_FIELDS:
            raise InvalidQuota(f"{name!r} is not a quota; quotas are {', '.join(QUOTA_FIELDS)}")
        if name == "submit_rate_per_s":
            if not (math.isfinite(value) and value > 0):
                raise InvalidQuota(f"{name} is {value}; it must be a number over 0")
            continue
        if value != int(value) or value < 0:
            raise InvalidQuota(f"{name} is {value}; it must be a whole number >= 0")
        if name in ("submit_burst", "max_running_jobs") or name in _PLATFORM_CAPPED:
            if value < 1:
                raise InvalidQuota(f"{name} is {value}; it must be at least 1")
        if name in _PLATFORM_CAPPED and value > getattr(defaults, name):
            raise InvalidQuota(f"{name} is {int(value)}, over the platform's cap of "
                               f"{getattr(defaults, name)}")


# Inside a transaction ------------------------------------------------------------------


def overrides_of(conn: Tx, tenant_id: str) -> dict[str, float]:
    row = conn.execute("SELECT overrides FROM tenant_quotas WHERE tenant_id = ?",
                       (tenant_id,)).fetchone()
    return json.loads(row[0]) if row else {}


def quota_of(conn: Tx, tenant_id: str, defaults: TenantQuota) -> TenantQuota:
    row = conn.execute("SELECT overrides FROM tenant_quotas WHERE tenant_id = ?",
                       (tenant_id,)).fetchone()
    return _applied(defaults, row[0] if row else "{}")


@functools.lru_cache(maxsize=4096)
def _applied(defaults: TenantQuota, overrides: str) -> TenantQuota:
    """A tenant's quota from its stored overrides (as JSON): the same few strings come back
    on every submission, so they are parsed once."""
    return defaults.with_overrides(json.loads(overrides))


@dataclass(frozen=True)
class SubmitState:
    """What SubmitJob's quota checks read, in one statement."""

    quota: TenantQuota
    queued: int
    cpu_ms_last_day: int
    tokens: float  # in the submit bucket now, refilled


def submit_state(conn: Tx, tenant_id: str, defaults: TenantQuota,
                 now: float) -> SubmitState:
    overrides, queued, cpu_ms, tokens, updated_at = conn.execute(
        "SELECT (SELECT overrides FROM tenant_quotas WHERE tenant_id = :t),"
        " (SELECT jobs FROM tenant_job_counts WHERE tenant_id = :t AND state = :queued),"
        " (SELECT CAST(sum(cpu_ms) AS BIGINT) FROM cpu_usage"
        "  WHERE tenant_id = :t AND minute >= :first),"
        " tokens, updated_at FROM (SELECT 1) AS one LEFT JOIN submit_buckets ON tenant_id = :t",
        {"t": tenant_id, "queued": JobState.QUEUED,
         "first": math.floor((now - DAY_S) / MINUTE_S)},
    ).fetchone()
    quota = _applied(defaults, overrides or "{}")
    return SubmitState(quota, queued or 0, cpu_ms or 0,
                       _refilled(quota, tokens, updated_at, now))


def job_counts(conn: Tx, tenant_id: str) -> tuple[int, int]:
    """(queued, running) jobs of the tenant now (tenant_job_counts, kept by triggers)."""
    counts = dict(conn.execute(
        "SELECT state, jobs FROM tenant_job_counts WHERE tenant_id = ? AND state IN (?, ?)",
        (tenant_id, JobState.QUEUED, JobState.RUNNING),
    ).fetchall())
    return counts.get(JobState.QUEUED, 0), counts.get(JobState.RUNNING, 0)


def running_count(conn: Tx, tenant_id: str) -> int:
    return job_counts(conn, tenant_id)[1]


def refill_tokens(conn: Tx, tenant_id: str, quota: TenantQuota,
                  now: float) -> float:
    row = conn.execute("SELECT tokens, updated_at FROM submit_buckets WHERE tenant_id = ?",
                       (tenant_id,)).fetchone()
    return _refilled(quota, *(row or (None, None)), now)


def _refilled(quota: TenantQuota, tokens: float | None, updated_at: float | None,
              now: float) -> float:
    if tokens is None or updated_at is None:
        return float(quota.submit_burst)
    # max(0, ...): another process's clock may be a little ahead of ours.
    refilled = tokens + max(0.0, now - updated_at) * quota.submit_rate_per_s
    return min(float(quota.submit_burst), refilled)


def store_tokens(conn: Tx, tenant_id: str, tokens: float, now: float) -> None:
    conn.execute(
        "INSERT INTO submit_buckets (tenant_id, tokens, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(tenant_id) DO UPDATE SET tokens = excluded.tokens,"
        " updated_at = excluded.updated_at",
        (tenant_id, tokens, now),
    )


def cpu_minutes(conn: Tx, tenant_id: str, now: float) -> list[tuple[int, int]]:
    """(minute, cpu ms) of the rolling day, oldest first. A minute counts until all of it
    has left the day, so usage is never forgotten early."""
    first = math.floor((now - DAY_S) / MINUTE_S)
    return conn.execute(
        "SELECT minute, cpu_ms FROM cpu_usage WHERE tenant_id = ? AND minute >= ?"
        " ORDER BY minute",
        (tenant_id, first),
    ).fetchall()


def cpu_ms_last_day(conn: Tx, tenant_id: str, now: float) -> int:
    row = conn.execute(
        "SELECT sum(cpu_ms) FROM cpu_usage WHERE tenant_id = ? AND minute >= ?",
        (tenant_id, math.floor((now - DAY_S) / MINUTE_S)),
    ).fetchone()
    return int(row[0] or 0)


def minute_leaves_day_at(minute: int) -> float:
    return (minute + 1) * MINUTE_S + DAY_S


def record_cpu(conn: Tx, tenant_id: str, now: float, cpu_ms: int) -> None:
    """Called as a job's result is stored (JobStore.finish)."""
    if cpu_ms <= 0:
        return
    minute = math.floor(now / MINUTE_S)
    conn.execute(
        "INSERT INTO cpu_usage (tenant_id, minute, cpu_ms) VALUES (?, ?, ?)"
        " ON CONFLICT(tenant_id, minute) DO UPDATE"
        " SET cpu_ms = cpu_usage.cpu_ms + excluded.cpu_ms",
        (tenant_id, minute, cpu_ms),
    )
    conn.execute("DELETE FROM cpu_usage WHERE tenant_id = ? AND minute < ?",
                 (tenant_id, math.floor((now - DAY_S) / MINUTE_S) - 1))


# The operator's side -------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaUsage:
    queued_jobs: int
    running_jobs: int
    cpu_ms_last_day: int
    submit_tokens: float


@dataclass(frozen=True)
class QuotaView:
    tenant_id: str
    quota: TenantQuota
    overrides: dict[str, float]
    usage: QuotaUsage | None = None


class QuotaStore:
    def __init__(self, db: Backend, defaults: TenantQuota) -> None:
        self._db = db
        self.defaults = defaults

    @staticmethod
    def _tenant_id(conn: Tx, tenant: str) -> str:
        row = conn.execute("SELECT id FROM tenants WHERE id = ? OR name = ?",
                           (tenant, tenant)).fetchone()
        if row is None:
            raise UnknownTenant(f"no tenant {tenant!r} (give its id or name)")
        return row[0]

    async def get(self, tenant: str) -> QuotaView:
        now = time.time()

        def tx(conn: Tx) -> QuotaView:
            tenant_id = self._tenant_id(conn, tenant)
            overrides = overrides_of(conn, tenant_id)
            quota = self.defaults.with_overrides(overrides)
            queued, running = job_counts(conn, tenant_id)
            usage = QuotaUsage(
                queued_jobs=queued, running_jobs=running,
                cpu_ms_last_day=sum(ms for _, ms in cpu_minutes(conn, tenant_id, now)),
                submit_tokens=refill_tokens(conn, tenant_id, quota, now),
            )
            return QuotaView(tenant_id, quota, overrides, usage)

        return await self._db.run(tx)

    async def set(self, tenant: str, changes: dict[str, float], reset: list[str], *,
                  actor: str) -> QuotaView:
        """Raises InvalidQuota or UnknownTenant; records quota_changed in the audit trail."""
        check_quota_values(changes, self.defaults)
        for name in reset:
            if name not in QUOTA_FIELDS:
                raise InvalidQuota(f"reset_fields: {name!r} is not a quota; quotas are "
                                   f"{', '.join(QUOTA_FIELDS)}")
        now = time.time()

        def tx(conn: Tx) -> QuotaView:
            tenant_id = self._tenant_id(conn, tenant)
            conn.dialect.lock_tenant(conn, tenant_id)  # two changes at once both count
            before = overrides_of(conn, tenant_id)
            overrides = {k: v for k, v in before.items() if k not in reset}
            overrides.update(changes)
            conn.execute(
                "INSERT INTO tenant_quotas (tenant_id, overrides, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(tenant_id) DO UPDATE SET overrides = excluded.overrides,"
                " updated_at = excluded.updated_at",
                (tenant_id, json.dumps(overrides, sort_keys=True), now),
            )
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="quota_changed",
                         now=now, changed=changes, reset=sorted(reset), before=before)
            return QuotaView(tenant_id, self.defaults.with_overrides(overrides), overrides)

        return await self._db.run(tx)
