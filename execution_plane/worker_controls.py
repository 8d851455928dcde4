"""The operator's controls of this worker (drain, slots), as the gateway hands them back on
each report, applied live: no restart, and no running job stopped.

A drain, or zero slots, stops consuming and hands the waiting messages back to the broker
for other workers; the running jobs finish. Other slot counts change how many jobs the
worker admits at once and its prefetch (twice the slots).
"""

from __future__ import annotations

import asyncio

from execution_plane import metrics
from execution_plane.claim_admission import ClaimAdmission
from execution_plane.consumer import JobConsumer
from execution_plane.job_runner import JobRunner
from sluice.observability import get_logger
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw

log = get_logger(__name__)


class WorkerControls:
    def __init__(self, worker_id: str, slots: int, admission: ClaimAdmission) -> None:
        self._worker_id = worker_id
        self._slots = slots  # the sandbox's: the most it may run
        self._admission = admission
        self._consumer: JobConsumer | None = None
        self._runner: JobRunner | None = None
        self._draining = False
        # apply() and attach()/detach() start and stop the consumer: one at a time.
        self._lock = asyncio.Lock()

    async def attach(self, consumer: JobConsumer, runner: JobRunner) -> None:
        """The worker is ready to consume: it does unless a control says otherwise."""
        async with self._lock:
            self._consumer = consumer
            self._runner = runner
            if self.consuming_wanted:
                await consumer.start(prefetch=2 * self._admission.slots)

    async def detach(self) -> None:
        """Shutting down: controls no longer start or stop the consumer."""
        async with self._lock:
            self._consumer = None

    @property
    def consuming_wanted(self) -> bool:
        return not self._draining and self._admission.slots > 0

    def report(self, languages: list[pb.Language]) -> gw.RegisterWorkerRequest:
        return gw.RegisterWorkerRequest(
            worker_id=self._worker_id, slots=self._slots, languages=languages,
            active_slots=0 if self._draining else self._admission.slots,
            running_jobs=self._runner.running_count if self._runner is not None else 0,
            draining=self._draining)

    async def apply(self, controls: gw.RegisterWorkerResponse) -> bool:
        """True when something changed (the worker then reports again at once, so that
        the operator sees it in effect)."""
        async with self._lock:
            return await self._apply(controls)

    async def _apply(self, controls: gw.RegisterWorkerResponse) -> bool:
        slots = controls.slots if controls.HasField("slots") else self._slots
        slots = max(0, min(slots, self._slots))
        if slots == self._admission.slots and controls.drain == self._draining:
            return False
        was_slots, was_draining = self._admission.slots, self._draining
        self._draining = controls.drain
        self._admission.set_slots(slots)
        metrics.SLOTS.set(0 if self._draining else slots)
        returned = 0
        consumer = self._consumer
        if consumer is not None:
            if not self.consuming_wanted:
                if consumer.consuming:
                    returned = await consumer.pause()
            elif not consumer.consuming or slots != was_slots:
                if consumer.consuming:
                    returned = await consumer.pause()
                await consumer.start(prefetch=2 * slots)
        log.info("worker_controls_applied", worker_id=self._worker_id, slots=slots,
                 was_slots=was_slots, draining=self._draining, was_draining=was_draining,
                 returned_to_queue=returned)
        return True
