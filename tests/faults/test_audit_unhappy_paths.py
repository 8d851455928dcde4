"""The audit trail of the unhappy paths: a lost attempt retried, a job out of attempts
dead-lettered with its reason, replays by an operator and by the recovery service. Each
record names its time, tenant, actor and job, and is also a JSON log line of the control
plane."""

from __future__ import annotations

import asyncio
import json
import time

from sluice.client import SluiceClient
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.faults.conftest import MakeStack, running_with_output, wait_for_state
from tests.support.admin import AdminClient
from tests.support.platform import Platform


def job(tag: str, sleep_s: float) -> api.SubmitJobRequest:
    return python_job(f"import time\nprint('{tag} started', flush=True)\n"
                      f"time.sleep({sleep_s})\nprint('{tag} done')\n")


async def start(stack: Platform) -> tuple[AdminClient, str]:
    """The control plane and worker-1, and an admin client with its key's id."""
    await asyncio.to_thread(stack.start_control_plane)
    stack.start_worker()
    name = "ops"
    admin_key = await asyncio.to_thread(stack.create_tenant, name, admin=True)
    await asyncio.to_thread(wait_for_languages, stack, admin_key)
    admin = AdminClient(stack.api_target, admin_key)
    tenants = await admin.stub.ListTenants(adm.ListTenantsRequest(), metadata=admin.metadata)
    ops = next(t for t in tenants.tenants if t.name == name)
    keys = await admin.stub.ListApiKeys(adm.ListApiKeysRequest(tenant_id=ops.id),
                                        metadata=admin.metadata)
    return admin, keys.api_keys[0].id


async def worker_consuming(stack: Platform, name: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while '"worker_started"' not in stack.log(name):
        assert time.monotonic() < deadline, f"{name} did not start"
        await asyncio.sleep(0.2)


def logged_audit(stack: Platform, job_id: str) -> list[dict[str, object]]:
    """The control plane's audit log lines about the job, in order."""
    records = [json.loads(line) for line in stack.log("control-plane").splitlines()
               if line.startswith("{") and job_id in line]
    return [r for r in records if str(r["event"]).startswith("audit_")]


def assert_well_formed(trail: list[adm.AuditEvent], *, tenant_id: str, job_id: str,
                       since: float) -> None:
    times = [e.time.ToNanoseconds() for e in trail]
    assert times == sorted(times)
    assert since * 1e9 <= times[0] and times[-1] <= time.time() * 1e9
    assert all(e.tenant_id == tenant_id and e.job_id == job_id and e.actor for e in trail)


def assert_logged(stack: Platform, trail: list[adm.AuditEvent]) -> None:
    logged = logged_audit(stack, trail[0].job_id)
    assert [(r["event"], r["actor"], r["tenant"]) for r in logged] == [
        (f"audit_{e.action}", e.actor, e.tenant_id) for e in trail]


async def test_a_killed_workers_job_is_retried_then_succeeds(make_stack: MakeStack) -> None:
    stack = make_stack({"SLUICE_MAX_ATTEMPTS": "2", "SLUICE_LEASE_TIMEOUT_MS": "3000",
                        "SLUICE_WORKER_SLOTS": "1"})
    since = time.time()
    admin, _ = await start(stack)
    tenant = await admin.create_tenant("audit-retry")
    # Two workers consuming: the killed one's message goes straight to the other, racing
    # the lease reaper; the trail must read the same whichever wins.
    stack.start_worker()
    await worker_consuming(stack, "worker-2")
    async with admin, SluiceClient(stack.api_target, tenant.key) as client:
        submitted = await client.submit(job("R", 3))
        await running_with_output(client, submitted.id)
        first = (await admin.audit(job_id=submitted.id, action="started"))[0].actor
        second = "worker:worker-2" if first == "worker:worker-1" else "worker:worker-1"
        await asyncio.to_thread(stack.kill, first.removeprefix("worker:"))
        done = await client.wait(submitted.id, within_s=90)
        assert done.state == pb.JOB_STATE_SUCCEEDED and done.attempt == 2
        assert done.result.stdout == b"R started\nR done\n"

        trail = await admin.audit(job_id=submitted.id)
    assert [(e.action, e.actor) for e in trail] == [
        ("submitted", f"key:{tenant.key_id}"), ("started", first), ("retried", "platform"),
        ("started", second), ("output_finished", second), ("succeeded", second)]
    assert_well_formed(trail, tenant_id=tenant.id, job_id=submitted.id, since=since)
    retried = trail[2]
    assert retried.detail["attempt"] == 1
    assert retried.detail["reason"] == (f"attempt 1 lost (worker {first.removeprefix('worker:')}"
                                        " stopped reporting)")
    assert [e.detail["attempt"] for e in trail if e.action == "started"] == [1, 2]
    assert_logged(stack, trail)


async def test_dead_lettered_jobs_replayed_by_an_operator_and_by_recovery(
        make_stack: MakeStack) -> None:
    stack = make_stack({"SLUICE_MAX_ATTEMPTS": "1", "SLUICE_LEASE_TIMEOUT_MS": "3000",
                        "SLUICE_WORKER_SLOTS": "2", "SLUICE_RECOVERY_INTERVAL_S": "1",
                        "SLUICE_RECOVERY_BACKOFF_S": "0"})
    since = time.time()
    admin, admin_key_id = await start(stack)
    tenant = await admin.create_tenant("audit-dead")
    async with admin, SluiceClient(stack.api_target, tenant.key) as client:
        by_operator = await client.submit(job("O", 2))
        by_recovery = await client.submit(job("V", 2))
        for submitted in (by_operator, by_recovery):
            await running_with_output(client, submitted.id)
        # One attempt allowed: with no worker left, the lease reaper dead-letters both.
        await asyncio.to_thread(stack.kill, "worker-1")
        for submitted in (by_operator, by_recovery):
            dead = await wait_for_state(client, submitted.id, pb.JOB_STATE_DEAD_LETTERED)
            assert "no attempts remain (limit 1)" in dead.state_reason
        stack.start_worker()

        replay = await admin.stub.ReplayDeadLetters(
            adm.ReplayDeadLettersRequest(job_ids=[by_operator.id]), metadata=admin.metadata)
        assert list(replay.replayed_job_ids) == [by_operator.id]
        await wait_for_state(client, by_operator.id, pb.JOB_STATE_SUCCEEDED)
        assert (await client.get(by_recovery.id)).state == pb.JOB_STATE_DEAD_LETTERED

        stack.start_recovery()
        await wait_for_state(client, by_recovery.id, pb.JOB_STATE_SUCCEEDED)

        trails = {j.id: await admin.audit(job_id=j.id) for j in (by_operator, by_recovery)}
        # The replayed runs are whole: a fresh first attempt with the program's output.
        for submitted, tag in ((by_operator, "O"), (by_recovery, "V")):
            final = await client.get(submitted.id)
            assert final.attempt == 1
            assert final.result.stdout == f"{tag} started\n{tag} done\n".encode()
    for submitted, replayer in ((by_operator, f"key:{admin_key_id}"),
                                (by_recovery, "recovery")):
        trail = trails[submitted.id]
        assert [(e.action, e.actor) for e in trail] == [
            ("submitted", f"key:{tenant.key_id}"), ("started", "worker:worker-1"),
            ("dead_lettered", "platform"), ("replayed", replayer),
            ("started", "worker:worker-2"), ("output_finished", "worker:worker-2"),
            ("succeeded", "worker:worker-2")]
        assert_well_formed(trail, tenant_id=tenant.id, job_id=submitted.id, since=since)
        dead, replayed = trail[2], trail[3]
        assert dead.detail["reason"] == ("attempt 1 lost (worker worker-1 stopped reporting)"
                                         " and no attempts remain (limit 1)")
        assert dead.detail["attempt"] == 1
        assert replayed.detail["reason"] == "replayed from the dead letters (replay 1)"
        assert_logged(stack, trail)
