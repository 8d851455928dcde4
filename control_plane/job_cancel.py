"""Cancelling a job, for a tenant's CancelJob and an operator's alike."""

from __future__ import annotations

from control_plane import metrics
from control_plane.job_messages import event_message, job_message
from control_plane.store.jobs import JobStore
from control_plane.watch_hub import WatchHub
from control_plane.worker_gateway import WorkerGateway
from sluice.observability import get_logger
from sluice.v1 import job_pb2 as pb

log = get_logger(__name__)


async def cancel_job(jobs: JobStore, hub: WatchHub, gateway: WorkerGateway, job_id: str,
                     tenant_id: str, *, actor: str) -> pb.Job | None:
    """A queued job ends CANCELLED; a running one is marked and its worker told to kill it.
    None: the tenant has no such job."""
    outcome = await jobs.cancel(job_id, tenant_id, actor=actor)
    if outcome is None:
        return None
    stored, events = outcome
    job = job_message(stored)
    if events:
        hub.notify(job.id, [event_message(e) for e in events])
        metrics.JOBS_FINISHED.labels(pb.JobState.Name(job.state)).inc()
    if job.state == pb.JOB_STATE_RUNNING:
        await gateway.cancel_running(job.id)
    log.info("job_cancel_requested", tenant=tenant_id, job_id=job.id, actor=actor,
             state=pb.JobState.Name(job.state))
    return job
