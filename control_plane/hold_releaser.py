"""Publishes held jobs once they may run: the next of an ordering key when the one before it
ended, a tenant's jobs past its running quota as its running jobs end, and past its CPU
quota as its use ages out of the rolling day.

It looks a few times a second rather than being told by each path that ends a job (finish,
cancel, lease loss, dead letters, another control-plane process): that way no path can
forget, and a job can never stay held after its reason is gone.

Every control plane runs one. Two may publish the same held job at once: the claim of the
second copy is refused (the job is leased or finished by then) and its message dropped, as
for any duplicate; the running quota is enforced by the claim, under the tenant's lock.
"""

from __future__ import annotations

from control_plane.job_publisher import BrokerUnavailable, JobPublisher
from control_plane.periodic_sweep import sweep_forever
from control_plane.store.holds import HoldStore, Release
from sluice.observability import get_logger
from sluice.topology import JobMessage

log = get_logger(__name__)


class HoldReleaser:
    def __init__(self, holds: HoldStore, publisher: JobPublisher, *,
                 interval_s: float = 0.2) -> None:
        self._holds = holds
        self._publisher = publisher
        self._interval_s = interval_s

    async def run_forever(self) -> None:
        await sweep_forever(self.sweep, interval_s=self._interval_s,
                            failure_event="hold_sweep_failed")

    async def sweep(self) -> int:
        released: list[Release] = []
        for release in await self._holds.releasable():
            try:
                await self._publisher.publish(JobMessage(release.job_id, release.tenant_id))
            except BrokerUnavailable as exc:
                # Still held: the next sweep tries again.
                log.warning("release_deferred", job_id=release.job_id,
                            tenant=release.tenant_id, error=str(exc))
                break
            released.append(release)
            log.info("job_released", job_id=release.job_id, tenant=release.tenant_id)
        if released:
            await self._holds.mark_released(released)
        return len(released)
