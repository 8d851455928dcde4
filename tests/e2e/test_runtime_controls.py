"""The operator's runtime controls against the real platform: a paused tenant's jobs wait
(queued and new ones; running ones finish) while another tenant's run; a drained worker
takes no new job and finishes its running ones; its slots go down and up live without a
job killed; queue depths come from the broker; every control is in the audit trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.topology import Topology
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.support.admin import AdminClient
from tests.support.broker import RunVhost
from tests.support.platform import Platform

SLEEPER = "import time\ntime.sleep({s})\nprint('slept', flush=True)"


async def wait_state(client: SluiceClient, job_id: str, state: int,
                     within_s: float = 60) -> pb.Job:
    async with asyncio.timeout(within_s):
        while (job := await client.get(job_id)).state != state:
            await asyncio.sleep(0.1)
    return job


async def test_a_paused_tenant_waits_and_others_run(platform: Platform,
                                                    admin: AdminClient) -> None:
    paused, other = await admin.create_tenant("flood"), await admin.create_tenant("calm")
    async with SluiceClient(platform.api_target, paused.key) as flood, \
            SluiceClient(platform.api_target, other.key) as calm:
        running = await flood.submit(python_job(SLEEPER.format(s=2)))
        await wait_state(flood, running.id, pb.JOB_STATE_RUNNING)

        result = await asyncio.to_thread(platform.cli, "tenant", "pause", paused.name)
        assert result.returncode == 0, result.stderr
        assert "paused" in result.stdout
        waiting = [await flood.submit(python_job("print('after the pause')"))
                   for _ in range(3)]
        # Another tenant's job runs meanwhile, and the one running at the pause finishes.
        assert (await calm.result((await calm.submit(python_job("print(1)"))).id)
                ).verdict == pb.VERDICT_OK
        assert (await flood.result(running.id)).verdict == pb.VERDICT_OK
        await asyncio.sleep(1.5)
        for job in waiting:
            held = await flood.get(job.id)
            assert held.state == pb.JOB_STATE_QUEUED
            assert "paused by an operator" in held.state_reason, held.state_reason
        tenants = {t.name: t for t in (await admin.stub.ListTenants(
            adm.ListTenantsRequest(), metadata=admin.metadata)).tenants}
        assert tenants[paused.name].paused and not tenants[other.name].paused
        assert tenants[paused.name].paused_by.startswith("key:")

        result = await asyncio.to_thread(platform.cli, "tenant", "resume", paused.name)
        assert result.returncode == 0, result.stderr
        for job in waiting:
            assert (await flood.result(job.id)).stdout == b"after the pause\n"
            assert (await flood.get(job.id)).state_reason == ""

    actions = [event.action for event in await admin.audit(tenant_id=paused.id)
               if event.action.startswith("tenant_")]
    assert actions == ["tenant_paused", "tenant_resumed"]


async def test_pausing_an_unknown_tenant_is_not_found(admin: AdminClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await admin.stub.PauseTenant(adm.PauseTenantRequest(tenant_id="no-such-tenant"),
                                     metadata=admin.metadata)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "tenant_id" in (refused.value.details() or "")


@pytest.fixture
async def own_platform(vhost: RunVhost, tmp_path: Path) -> AsyncIterator[Platform]:
    """A platform whose one worker (two slots, reporting every half second) the test
    drains and resizes without disturbing the shared one."""
    stack = Platform(tmp_path, vhost.amqp_url(), prefix=f"controls-{tmp_path.name}",
                     extra_env={"SLUICE_WORKER_SLOTS": "2",
                                "SLUICE_WORKER_REPORT_INTERVAL_S": "0.5"})
    await asyncio.to_thread(stack.start_control_plane)
    stack.start_worker()
    yield stack
    await asyncio.to_thread(stack.stop)


async def worker_when(admin: AdminClient, check: object, within_s: float = 30) -> adm.Worker:
    async with asyncio.timeout(within_s):
        while True:
            workers = (await admin.stub.ListWorkers(adm.ListWorkersRequest(),
                                                    metadata=admin.metadata)).workers
            if workers and check(workers[0]):  # type: ignore[operator]
                return workers[0]
            await asyncio.sleep(0.05)


async def test_drain_and_slots_live(own_platform: Platform) -> None:
    stack = own_platform
    key = await asyncio.to_thread(stack.create_tenant, "steady")
    await asyncio.to_thread(wait_for_languages, stack, key)
    async with AdminClient(stack.api_target, stack.admin_key) as admin, \
            SluiceClient(stack.api_target, key) as client:
        worker = await worker_when(admin, lambda w: w.applied)
        assert worker.worker_id == "worker-1" and worker.identity == "worker-1"
        assert "python" in worker.languages and worker.slots == worker.active_slots == 2
        listed = await asyncio.to_thread(stack.cli, "workers", "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("worker-1\tworker-1\t") and "2/2 slots" in listed.stdout

        # Down to one slot with two jobs running: neither is stopped, and the next waits.
        first = [await client.submit(python_job(SLEEPER.format(s=3))) for _ in range(2)]
        for job in first:
            await wait_state(client, job.id, pb.JOB_STATE_RUNNING)
        asked = time.monotonic()
        result = await asyncio.to_thread(stack.cli, "workers", "slots", "worker-1", "1")
        assert result.returncode == 0, result.stderr
        worker = await worker_when(admin, lambda w: w.applied and w.active_slots == 1)
        print(f"slots control applied {time.monotonic() - asked:.2f} s after it was asked")
        assert worker.running_jobs == 2
        third = await client.submit(python_job(SLEEPER.format(s=1)))
        for job in first:
            assert (await client.result(job.id)).verdict == pb.VERDICT_OK
        assert (await client.result(third.id)).verdict == pb.VERDICT_OK
        # With one slot, the third started only once both of the first had run (a slot frees
        # as its program ends, a moment before the result is stored as the job's end).
        third_started = (await client.get(third.id)).start_time.ToNanoseconds()
        ends = [(await client.get(job.id)).end_time.ToNanoseconds() for job in first]
        assert third_started >= max(ends) - 500_000_000

        # Drained: the running job finishes, a new one waits in the broker, undrained it runs.
        running = await client.submit(python_job(SLEEPER.format(s=2)))
        await wait_state(client, running.id, pb.JOB_STATE_RUNNING)
        asked = time.monotonic()
        drained = await admin.stub.DrainWorker(adm.DrainWorkerRequest(worker_id="worker-1"),
                                               metadata=admin.metadata)
        assert drained.worker.draining
        await worker_when(admin, lambda w: w.applied and w.active_slots == 0)
        print(f"drain applied {time.monotonic() - asked:.2f} s after it was asked")
        waiting = await client.submit(python_job("print('after the drain')"))
        assert (await client.result(running.id)).verdict == pb.VERDICT_OK
        await asyncio.sleep(1.5)
        assert (await client.get(waiting.id)).state == pb.JOB_STATE_QUEUED
        tenant_id = next(e.tenant_id for e in await admin.audit(job_id=waiting.id))
        shard_queue = Topology(stack.env["SLUICE_QUEUE_PREFIX"]).work_queue(
            Topology("any").shard_of(tenant_id))
        # The management API's figures are as fresh as its statistics interval (5 s).
        async with asyncio.timeout(30):
            while True:
                depths = (await admin.stub.GetQueueDepths(adm.GetQueueDepthsRequest(),
                                                          metadata=admin.metadata)).queues
                by_name = {q.name: q for q in depths}
                shard = by_name[shard_queue]
                if (shard.ready, shard.unacked, shard.consumers) == (1, 0, 0):
                    break
                await asyncio.sleep(0.5)
        assert {q.kind for q in depths} == {"work", "retry", "dead_letter", "parked"}
        assert len(depths) == Topology("any").shard_count + 3 + 2
        queues = await asyncio.to_thread(stack.cli, "queues")
        assert queues.returncode == 0, queues.stderr
        assert f"{shard_queue}\twork\t1\t0\t0" in queues.stdout

        result = await asyncio.to_thread(stack.cli, "workers", "undrain", "worker-1")
        assert result.returncode == 0, result.stderr
        assert (await client.result(waiting.id)).stdout == b"after the drain\n"

        # Back up to two: two jobs run at once again.
        result = await asyncio.to_thread(stack.cli, "workers", "slots", "worker-1", "--reset")
        assert result.returncode == 0, result.stderr
        await worker_when(admin, lambda w: w.applied and w.active_slots == 2)
        pair = [await client.submit(python_job(SLEEPER.format(s=2))) for _ in range(2)]
        for job in pair:
            await wait_state(client, job.id, pb.JOB_STATE_RUNNING)
        for job in pair:
            assert (await client.result(job.id)).verdict == pb.VERDICT_OK

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.stub.SetWorkerSlots(adm.SetWorkerSlotsRequest(worker_id="worker-1",
                                                                      slots=3),
                                            metadata=admin.metadata)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "2 sandbox slots" in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.stub.DrainWorker(adm.DrainWorkerRequest(worker_id="nobody"),
                                         metadata=admin.metadata)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND

        actions = [e.action for e in await admin.audit() if e.action.startswith("worker_")
                   and e.action != "worker_token_created"]
        assert actions == ["worker_slots_set", "worker_drained", "worker_undrained",
                           "worker_slots_set"]
