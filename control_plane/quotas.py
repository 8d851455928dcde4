"""A submission against its tenant's quotas: checked in the transaction that stores the job.

Order of the checks: the per-job ceilings (INVALID_ARGUMENT: waiting would not help), then
jobs queued at once, CPU-seconds in the rolling day and the submit rate (RESOURCE_EXHAUSTED
with a RetryInfo saying how long to wait). The submit token is taken last; a refusal rolls
the transaction back, so a refused submission costs the tenant nothing.

Jobs running at once is not a reason to refuse a submission: the job is stored and waits,
QUEUED, until one of the tenant's jobs ends (the claim holds it; see store/holds.py).
"""

from __future__ import annotations

import dataclasses
import math

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from control_plane.store import holds
from control_plane.store import quotas as store
from control_plane.store.backend import Tx
from control_plane.store.quotas import LIMIT_CEILINGS, TenantQuota
from control_plane.store.records import JobSpec
from control_plane.submit_validation import InvalidRequest
from sluice.v1 import execution_service_pb2 as api


class QuotaExceeded(Exception):
    """The message names the quota and its value; retry_after_s is how long waiting takes."""

    def __init__(self, quota: str, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.quota = quota
        self.retry_after_s = retry_after_s

    def status(self) -> grpc.Status:
        retry = error_details_pb2.RetryInfo(retry_delay=_duration(self.retry_after_s))
        quota_failure = error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=self.quota,
                                                     description=str(self))])
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(self))
        status.details.add().Pack(retry)
        status.details.add().Pack(quota_failure)
        return rpc_status.to_status(status)


def _duration(seconds: float) -> duration_pb2.Duration:
    # Rounded up to the millisecond: retrying a hair early would only be refused again.
    millis = max(1, math.ceil(seconds * 1000))
    return duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


# A full queue drains as jobs start; how fast is not known here, so a short hint.
QUEUED_RETRY_S = 1.0


class SubmitAdmission:
    """One SubmitJob's checks, called by JobStore.create inside its transaction after the
    idempotency lookup (a repeated key returns its job without using any quota)."""

    def __init__(self, defaults: TenantQuota, request: api.SubmitJobRequest,
                 spec: JobSpec) -> None:
        self._defaults = defaults
        self._request = request
        self._spec = spec
        self.held = False  # stored QUEUED but not published: it waits for its ordering key

    def __call__(self, conn: Tx, tenant_id: str, job_id: str, now: float
                 ) -> JobSpec:
        """Returns the spec to store: its limits lowered to the tenant's ceilings."""
        state = store.submit_state(conn, tenant_id, self._defaults, now)
        quota = state.quota
        self._apply_ceilings(quota)

        queued = state.queued
        if queued >= quota.max_queued_jobs:
            raise QuotaExceeded(
                "max_queued_jobs",
                f"quota max_queued_jobs: the tenant has {queued} jobs queued, the most it may "
                f"have at once ({quota.max_queued_jobs}); submit again as they start",
                QUEUED_RETRY_S)

        used_ms = state.cpu_ms_last_day
        limit_ms = quota.cpu_seconds_per_day * 1000
        if used_ms >= limit_ms:
            minutes = store.cpu_minutes(conn, tenant_id, now)  # only to say when it frees
            raise QuotaExceeded(
                "cpu_seconds_per_day",
                f"quota cpu_seconds_per_day: the tenant's jobs used {used_ms / 1000:.1f} "
                f"CPU-seconds in the last 24 hours, the most it may use "
                f"({quota.cpu_seconds_per_day})",
                _cpu_frees_in(minutes, used_ms - limit_ms, now))

        tokens = state.tokens
        if tokens < 1:
            raise QuotaExceeded(
                "submit_rate_per_s",
                f"quota submit_rate_per_s: the tenant may submit {quota.submit_rate_per_s:g} "
                f"jobs a second (bursts of {quota.submit_burst}); slow down",
                (1 - tokens) / quota.submit_rate_per_s)
        store.store_tokens(conn, tenant_id, tokens - 1, now)

        self.held = holds.hold_at_submit(conn, job_id, tenant_id, self._spec.ordering_key, now)
        return self._spec

    def _apply_ceilings(self, quota: TenantQuota) -> None:
        """The request was checked against the platform's caps already; the tenant's own may
        be lower. A zero (the default) is lowered to the tenant's ceiling, not refused."""
        total = sum(len(file.content) for file in self._request.files)
        if total > quota.max_source_bytes:
            raise InvalidRequest(f"files total {total} bytes, over the tenant's source size cap "
                                 f"of {quota.max_source_bytes} bytes (quota max_source_bytes)")
        for field, ceiling_name in LIMIT_CEILINGS.items():
            ceiling = getattr(quota, ceiling_name)
            asked = getattr(self._request.limits, field)
            if asked > ceiling:
                raise InvalidRequest(f"limits.{field} is {asked}, over the tenant's cap of "
                                     f"{ceiling} (quota {ceiling_name})")
            if not asked and getattr(self._spec.limits, field) > ceiling:
                self._spec = dataclasses.replace(self._spec, limits=dataclasses.replace(
                    self._spec.limits, **{field: ceiling}))


def _cpu_frees_in(minutes: list[tuple[int, int]], excess_ms: int, now: float) -> float:
    """Seconds until enough of the day's CPU use has aged out to bring it under the quota."""
    freed = 0
    for minute, ms in minutes:
        freed += ms
        if freed > excess_ms:
            return max(1.0, store.minute_leaves_day_at(minute) - now)
    return float(store.DAY_S)
