"""The operator's runtime controls behind AdminService: pause and resume tenants, drain and
resize workers, read the broker's queue depths; and their messages."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from control_plane.queue_depths import QueueDepth, QueueDepths
from control_plane.store.tenant_pauses import Pause, TenantPauseStore
from control_plane.store.workers import WorkerRecord, WorkerStore
from sluice.v1 import admin_service_pb2 as adm

# ListWorkers shows workers heard from within this long: a dead one stays in sight a while.
LISTED_WITHIN_S = 600.0


@dataclass(frozen=True)
class RuntimeControls:
    pauses: TenantPauseStore
    workers: WorkerStore
    depths: QueueDepths


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def set_pause_fields(tenant: adm.Tenant, pause: Pause | None) -> adm.Tenant:
    if pause is not None:
        tenant.paused = True
        tenant.pause_time.CopyFrom(_ts(pause.paused_at))
        tenant.paused_by = pause.paused_by
    return tenant


def worker_message(worker: WorkerRecord) -> adm.Worker:
    desired = worker.controls.slots if worker.controls.slots is not None else worker.slots
    return adm.Worker(
        worker_id=worker.worker_id, identity=worker.identity, languages=worker.languages,
        slots=worker.slots, active_slots=worker.active_slots,
        running_jobs=worker.running_jobs, draining=worker.controls.draining,
        desired_slots=desired, applied=worker.applied,
        first_report_time=_ts(worker.first_seen), last_heartbeat=_ts(worker.last_seen))


def depth_message(depth: QueueDepth) -> adm.QueueDepth:
    return adm.QueueDepth(name=depth.role.name, kind=depth.role.kind,
                          shard=depth.role.shard or 0,
                          retry_delay_ms=depth.role.retry_delay_ms or 0, ready=depth.ready,
                          unacked=depth.unacked, consumers=depth.consumers)
