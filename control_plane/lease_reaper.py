"""Finds attempts whose worker went silent and sends their jobs round again.

A worker killed mid-job drops its RunJob stream (the gateway then expires the lease at once)
and its unacked message goes back to the queue; a worker that hangs keeps both. Either way
the lease runs out and this loop publishes the job again through a retry tier, or, out of
attempts, to the dead letters, so no job stays RUNNING forever.

Every control plane runs one. Releasing a lost attempt is a guarded change of the store
(that attempt, still RUNNING, its lease run out), so when two reapers find the same attempt
only one records it; the other's extra message is refused at the claim like any duplicate.
"""

from __future__ import annotations

from control_plane import metrics
from control_plane.job_messages import event_message
from control_plane.job_publisher import BrokerUnavailable, JobPublisher
from control_plane.periodic_sweep import sweep_forever
from control_plane.store.jobs import JobStore
from control_plane.watch_hub import WatchHub
from sluice.observability import get_logger
from sluice.topology import JobMessage, retry_delay_ms

log = get_logger(__name__)


class LeaseReaper:
    def __init__(self, jobs: JobStore, publisher: JobPublisher, hub: WatchHub, *,
                 max_attempts: int, interval_s: float = 1.0) -> None:
        self._jobs = jobs
        self._publisher = publisher
        self._hub = hub
        self._max_attempts = max_attempts
        self._interval_s = interval_s

    async def run_forever(self) -> None:
        await sweep_forever(self.sweep, interval_s=self._interval_s,
                            failure_event="lease_sweep_failed")

    async def sweep(self) -> int:
        handled = 0
        for lost in await self._jobs.expired_leases():
            dead = lost.attempt >= self._max_attempts
            reason = (f"attempt {lost.attempt} lost (worker {lost.worker_id} stopped reporting)"
                      f" and no attempts remain (limit {self._max_attempts})")
            message = JobMessage(lost.job_id, lost.tenant_id)
            try:
                if dead:
                    await self._publisher.publish_dead_letter(message, reason=reason)
                else:
                    await self._publisher.publish(message, delay_ms=retry_delay_ms(lost.attempt))
            except BrokerUnavailable as exc:
                # Left RUNNING with its lease run out: the next sweep tries again.
                log.warning("requeue_deferred", job_id=lost.job_id, tenant=lost.tenant_id,
                            error=str(exc))
                continue
            events = await self._jobs.release_lost_attempt(
                lost, dead_reason=reason if dead else None)
            if events:
                self._hub.notify(lost.job_id, [event_message(e) for e in events])
                handled += 1
                if dead:
                    metrics.JOBS_FINISHED.labels("JOB_STATE_DEAD_LETTERED").inc()
                else:
                    metrics.JOBS_REQUEUED.inc()
                log.warning("attempt_lost", job_id=lost.job_id, tenant=lost.tenant_id,
                            attempt=lost.attempt, worker_id=lost.worker_id,
                            dead_lettered=dead)
        return handled
