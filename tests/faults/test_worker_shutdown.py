"""A worker told to stop (SIGTERM) takes no new job, hands back the messages it holds, lets
its running jobs finish within its grace period, and hands back those that outlast it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

from sluice.client import SluiceClient
from sluice.topology import Topology
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.faults.conftest import (
    MakeStack,
    running_with_output,
    state_changes,
    wait_for_state,
)
from tests.support.admin import TERMINAL_ACTIONS, AdminClient, NewTenant
from tests.support.broker import ready_messages
from tests.support.platform import Platform


def tagged_job(tag: str, sleep_s: float) -> api.SubmitJobRequest:
    source = (f"import time\nprint('{tag} started', flush=True)\ntime.sleep({sleep_s})\n"
              f"print('{tag} done')\n")
    return python_job(source, limits=pb.Limits(wall_time_ms=60_000))


def output_of(tag: str) -> bytes:
    return f"{tag} started\n{tag} done\n".encode()


async def start(stack: Platform) -> AdminClient:
    await asyncio.to_thread(stack.start_control_plane)
    stack.start_worker()
    admin_key = await asyncio.to_thread(stack.create_tenant, "ops", admin=True)
    await asyncio.to_thread(wait_for_languages, stack, admin_key)
    return AdminClient(stack.api_target, admin_key)


async def tenants_on_two_shards(admin: AdminClient) -> tuple[NewTenant, NewTenant]:
    first = await admin.create_tenant("shutdown-a")
    while (second := await admin.create_tenant("shutdown-b")).shard == first.shard:
        pass
    return first, second


async def until(condition: Callable[[], Awaitable[bool]], what: str,
                within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_sigterm_finishes_running_jobs_and_hands_back_held_ones(
        make_stack: MakeStack) -> None:
    # Default grace (30 s): the running jobs (8 s) finish inside it.
    stack = make_stack({"SLUICE_WORKER_SLOTS": "2", "SLUICE_LEASE_TIMEOUT_MS": "3000"})
    admin = await start(stack)
    a, b = await tenants_on_two_shards(admin)
    topology = Topology(stack.env["SLUICE_QUEUE_PREFIX"])
    amqp_url = stack.env["SLUICE_AMQP_URL"]
    a_queue, b_queue = topology.work_queue(a.shard), topology.work_queue(b.shard)
    async with (admin, SluiceClient(stack.api_target, a.key) as ca,
                SluiceClient(stack.api_target, b.key) as cb):
        running = {f"A{i}": await ca.submit(tagged_job(f"A{i}", 8)) for i in (1, 2)}
        for job in running.values():
            await running_with_output(ca, job.id)
        # worker-1's two slots are busy: B's jobs wait inside it (its shard consumer's
        # prefetch, twice the slots), as do A3 and A4; A5 and A6 wait in the broker (A's
        # prefetch is taken by A1 to A4).
        held = {f"B{i}": await cb.submit(tagged_job(f"B{i}", 0)) for i in (1, 2)}
        held |= {f"A{i}": await ca.submit(tagged_job(f"A{i}", 0)) for i in (3, 4)}
        waiting = {f"A{i}": await ca.submit(tagged_job(f"A{i}", 0)) for i in (5, 6)}

        async def worker_holds_its_prefetch() -> bool:
            return (await ready_messages(amqp_url, b_queue) == 0
                    and await ready_messages(amqp_url, a_queue) == 2)

        await until(worker_holds_its_prefetch, "worker-1 to hold B1, B2, A3, A4")
        for tag, job in held.items():
            client = cb if tag.startswith("B") else ca
            assert (await client.get(job.id)).state == pb.JOB_STATE_QUEUED

        signalled_at = time.time()
        stack.send_signal("worker-1", signal.SIGTERM)

        async def held_handed_back() -> bool:
            return (await ready_messages(amqp_url, b_queue) == 2
                    and await ready_messages(amqp_url, a_queue) == 4)

        await until(held_handed_back, "worker-1 to hand its held messages back", within_s=30)
        # ...at once, not when its connection closed at exit: it is still running A1, A2.
        assert stack.running("worker-1"), "held messages came back only when worker-1 exited"
        for job in running.values():
            assert (await ca.get(job.id)).state == pb.JOB_STATE_RUNNING

        stack.start_worker()
        status = await asyncio.to_thread(stack.wait_exited, "worker-1", 60)
        assert status == 0
        log = stack.log("worker-1")
        assert '"worker_stopping"' in log and '"running": 2' in log and '"worker_stopped"' in log

        clients = {tag: cb if tag.startswith("B") else ca
                   for tag in [*running, *held, *waiting]}
        jobs = {**running, **held, **waiting}
        for tag, job in jobs.items():
            done = await clients[tag].wait(job.id, within_s=90)
            assert done.state == pb.JOB_STATE_SUCCEEDED, (tag, done.state_reason)
            assert done.attempt == 1, tag  # handed back unstarted: no attempt spent
            assert done.result.stdout == output_of(tag)
            changes = await state_changes(clients[tag], job.id)
            assert [c.state for c in changes] == [
                pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED], tag

        # Who ran what, from the audit trail: worker-1 finished what it had started and
        # started nothing after the signal; everything else ran on worker-2, once.
        for tag, job in jobs.items():
            trail = await admin.audit(job_id=job.id)
            starts = [e for e in trail if e.action == "started"]
            ends = [e for e in trail if e.action in TERMINAL_ACTIONS]
            worker = "worker:worker-1" if tag in running else "worker:worker-2"
            assert [e.actor for e in starts] == [worker], tag
            assert [(e.action, e.actor) for e in ends] == [("succeeded", worker)], tag
        started_by_1 = [e for e in await admin.audit(action="started")
                        if e.actor == "worker:worker-1"]
        assert {e.job_id for e in started_by_1} == {j.id for j in running.values()}
        assert all(e.time.ToNanoseconds() < signalled_at * 1e9 for e in started_by_1)


async def test_job_outlasting_the_grace_is_handed_back_and_runs_elsewhere(
        make_stack: MakeStack) -> None:
    stack = make_stack({"SLUICE_WORKER_SLOTS": "1", "SLUICE_LEASE_TIMEOUT_MS": "3000",
                        "SLUICE_WORKER_SHUTDOWN_GRACE_S": "1"})
    admin = await start(stack)
    tenant = await admin.create_tenant("shutdown-long")
    async with admin, SluiceClient(stack.api_target, tenant.key) as client:
        job = await client.submit(tagged_job("L", 6))
        await running_with_output(client, job.id)
        stack.send_signal("worker-1", signal.SIGTERM)
        status = await asyncio.to_thread(stack.wait_exited, "worker-1", 60)
        assert status == 0
        # Stopped and handed back, visibly: QUEUED again with the reason, not left RUNNING.
        queued = await wait_for_state(client, job.id, pb.JOB_STATE_QUEUED, within_s=30)
        assert "attempt 1" in queued.state_reason
        trail = [e.action for e in await admin.audit(job_id=job.id)]
        assert trail == ["submitted", "started", "retried"]

        stack.start_worker()
        done = await client.wait(job.id, within_s=90)
        assert done.state == pb.JOB_STATE_SUCCEEDED
        assert done.attempt == 2
        assert done.result.stdout == output_of("L")  # the second attempt's whole output
        changes = await state_changes(client, job.id)
        assert [(c.state, c.attempt) for c in changes] == [
            (pb.JOB_STATE_QUEUED, 0), (pb.JOB_STATE_RUNNING, 1), (pb.JOB_STATE_QUEUED, 1),
            (pb.JOB_STATE_RUNNING, 2), (pb.JOB_STATE_SUCCEEDED, 2)]
        trail = await admin.audit(job_id=job.id)
        assert [(e.action, e.actor) for e in trail] == [
            ("submitted", f"key:{tenant.key_id}"), ("started", "worker:worker-1"),
            ("retried", "platform"), ("started", "worker:worker-2"),
            ("output_finished", "worker:worker-2"), ("succeeded", "worker:worker-2")]
