"""AdminService's dead-letter RPCs against the real platform: ListDeadLetters (reasons,
filters, pages, queue depths), ReplayDeadLetters (by id, by tenant, all; parked jobs too),
PurgeParked; admin keys only; bad input named.

Jobs are dead-lettered the real way: one attempt allowed (SLUICE_MAX_ATTEMPTS=1) and the
worker running them killed; the recovery service, with a replay budget of 0, parks them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.faults.conftest import running_with_output, state_changes, wait_for_state
from tests.support.admin import AdminClient
from tests.support.broker import RunVhost
from tests.support.platform import Platform

LOST = "attempt 1 lost (worker {worker} stopped reporting) and no attempts remain (limit 1)"


@dataclass
class Stack:
    platform: Platform
    admin: AdminClient
    admin_key_id: str
    workers: list[str]


@pytest.fixture(scope="module")
async def stack(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Stack]:
    workdir = tmp_path_factory.mktemp("dead-letters")
    platform = Platform(workdir, vhost.amqp_url(), prefix=workdir.name, extra_env={
        "SLUICE_MAX_ATTEMPTS": "1", "SLUICE_LEASE_TIMEOUT_MS": "3000",
        "SLUICE_WORKER_SLOTS": "5", "SLUICE_RECOVERY_INTERVAL_S": "1",
        "SLUICE_RECOVERY_BACKOFF_S": "0", "SLUICE_RECOVERY_REPLAY_BUDGET": "0"})
    try:
        await asyncio.to_thread(platform.start_control_plane)
        worker = platform.start_worker()
        key = await asyncio.to_thread(platform.create_tenant, "ops", admin=True)
        await asyncio.to_thread(wait_for_languages, platform, key)
        async with AdminClient(platform.api_target, key) as admin:
            tenants = await admin.stub.ListTenants(adm.ListTenantsRequest(),
                                                   metadata=admin.metadata)
            ops = next(t for t in tenants.tenants if t.name == "ops")
            keys = await admin.stub.ListApiKeys(adm.ListApiKeysRequest(tenant_id=ops.id),
                                                metadata=admin.metadata)
            yield Stack(platform, admin, keys.api_keys[0].id, [worker])
    finally:
        await asyncio.to_thread(platform.stop)


def job(tag: str, sleep_s: float = 2) -> api.SubmitJobRequest:
    return python_job(f"import time\nprint('{tag} started', flush=True)\n"
                      f"time.sleep({sleep_s})\nprint('{tag} done')\n")


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def dead_letter(stack: Stack, jobs: list[tuple[SluiceClient, str]]) -> str:
    """Kills the worker running these jobs (they must be running on it) and starts another;
    with one attempt allowed, each job is dead-lettered. Returns the killed worker's id."""
    for client, job_id in jobs:
        await running_with_output(client, job_id)
    killed = stack.workers.pop()
    await asyncio.to_thread(stack.platform.kill, killed)
    for client, job_id in jobs:
        dead = await wait_for_state(client, job_id, pb.JOB_STATE_DEAD_LETTERED)
        assert dead.state_reason == LOST.format(worker=killed)
    stack.workers.append(stack.platform.start_worker())
    return killed


async def list_dead(stack: Stack, **filters: object) -> adm.ListDeadLettersResponse:
    return await stack.admin.stub.ListDeadLetters(adm.ListDeadLettersRequest(**filters),
                                                  metadata=stack.admin.metadata, timeout=10)


async def replay(stack: Stack, **selection: object) -> list[str]:
    reply = await stack.admin.stub.ReplayDeadLetters(
        adm.ReplayDeadLettersRequest(**selection), metadata=stack.admin.metadata, timeout=10)
    return list(reply.replayed_job_ids)


async def test_only_admin_keys_and_bad_input_is_named(stack: Stack) -> None:
    admin = stack.admin
    tenant = await admin.create_tenant("dl-plain")
    async with SluiceClient(stack.platform.api_target, tenant.key) as client:
        finished = await client.submit(python_job("print('fine')"))
        assert (await client.wait(finished.id)).state == pb.JOB_STATE_SUCCEEDED

    plain = AdminClient(stack.platform.api_target, tenant.key)
    async with plain:
        for call in (plain.stub.ListDeadLetters(adm.ListDeadLettersRequest(),
                                                metadata=plain.metadata),
                     plain.stub.ReplayDeadLetters(adm.ReplayDeadLettersRequest(all=True),
                                                  metadata=plain.metadata),
                     plain.stub.PurgeParked(adm.PurgeParkedRequest(), metadata=plain.metadata)):
            assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED

    def replay_call(**fields: object) -> object:
        return admin.stub.ReplayDeadLetters(adm.ReplayDeadLettersRequest(**fields),
                                            metadata=admin.metadata)

    def list_call(**fields: object) -> object:
        return admin.stub.ListDeadLetters(adm.ListDeadLettersRequest(**fields),
                                          metadata=admin.metadata)

    cases: list[tuple[object, grpc.StatusCode, tuple[str, ...]]] = [
        (replay_call(), grpc.StatusCode.INVALID_ARGUMENT, ("job_ids", "tenant_id", "all")),
        (replay_call(job_ids=["01a2nosuchjob"]), grpc.StatusCode.NOT_FOUND,
         ("job_ids", "01a2nosuchjob")),
        (replay_call(job_ids=[finished.id]), grpc.StatusCode.FAILED_PRECONDITION,
         ("job_ids", finished.id, "JOB_STATE_SUCCEEDED", "not dead-lettered")),
        (replay_call(job_ids=[""]), grpc.StatusCode.INVALID_ARGUMENT, ("job_ids", "empty")),
        (replay_call(job_ids=[f"j{i}" for i in range(1001)]),
         grpc.StatusCode.INVALID_ARGUMENT, ("job_ids", "1001", "1000")),
        (replay_call(tenant_id="t_nobody"), grpc.StatusCode.NOT_FOUND,
         ("tenant_id", "t_nobody")),
        (replay_call(all=True, tenant_id=tenant.id), grpc.StatusCode.INVALID_ARGUMENT,
         ("all", "tenant_id")),
        (list_call(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT, ("page_size", "-1")),
        (list_call(page_size=1001), grpc.StatusCode.INVALID_ARGUMENT,
         ("page_size", "1001", "1000")),
        (list_call(page_token="%%"), grpc.StatusCode.INVALID_ARGUMENT, ("page_token",)),
        (list_call(tenant_id="t_nobody"), grpc.StatusCode.NOT_FOUND, ("tenant_id",)),
    ]
    for call, code, words in cases:
        error = await refused(call)
        assert error.code() == code, (words, error.details())
        assert all(word in error.details() for word in words), (words, error.details())
    # A refused replay replayed nothing: the finished job is untouched.
    async with SluiceClient(stack.platform.api_target, tenant.key) as client:
        assert [c.state for c in await state_changes(client, finished.id)] == [
            pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED]


async def test_list_replay_park_and_purge(stack: Stack) -> None:
    admin = stack.admin
    t1, t2 = await admin.create_tenant("dl-one"), await admin.create_tenant("dl-two")
    async with (SluiceClient(stack.platform.api_target, t1.key) as c1,
                SluiceClient(stack.platform.api_target, t2.key) as c2):
        clients = {t1.id: c1, t2.id: c2}
        submitted = {}
        for tag, tenant in (("a1", t1), ("a2", t1), ("a3", t1), ("b1", t2), ("b2", t2)):
            submitted[tag] = (await clients[tenant.id].submit(job(tag))).id
        owner = {tag: (t1 if tag.startswith("a") else t2) for tag in submitted}
        killed = await dead_letter(
            stack, [(clients[owner[t].id], j) for t, j in submitted.items()])

        # Listed with reasons, oldest first; filters and pages agree with the whole list.
        listing = await list_dead(stack)
        assert [(d.job_id, d.tenant_id, d.replays, d.reason, d.parked)
                for d in listing.dead_letters] == [
            (job_id, owner[tag].id, 0, LOST.format(worker=killed), False)
            for tag, job_id in sorted(submitted.items(), key=lambda item: item[1])]
        assert listing.dead_letter_queue_depth == 5 and listing.parked_queue_depth == 0
        assert listing.next_page_token == ""
        paged, token = [], ""
        while True:
            page = await list_dead(stack, page_size=2, page_token=token)
            assert len(page.dead_letters) <= 2
            paged.extend(d.job_id for d in page.dead_letters)
            if not (token := page.next_page_token):
                break
        assert paged == [d.job_id for d in listing.dead_letters]
        for tenant_filter in (t2.id, t2.name):
            assert {d.job_id for d in (await list_dead(stack, tenant_id=tenant_filter))
                    .dead_letters} == {submitted["b1"], submitted["b2"]}
        assert not (await list_dead(stack, parked=True)).dead_letters
        assert len((await list_dead(stack, parked=False)).dead_letters) == 5

        # Replay one job, then a tenant's, then all that are left.
        async def replayed_and_ran(tags: list[str]) -> None:
            for tag in tags:
                client = clients[owner[tag].id]
                done = await wait_for_state(client, submitted[tag], pb.JOB_STATE_SUCCEEDED)
                assert done.attempt == 1
                assert done.result.stdout == f"{tag} started\n{tag} done\n".encode()
                assert [c.state for c in await state_changes(client, submitted[tag])] == [
                    pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_DEAD_LETTERED,
                    pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED]

        assert await replay(stack, job_ids=[submitted["a1"]]) == [submitted["a1"]]
        await replayed_and_ran(["a1"])
        assert await replay(stack, tenant_id=t2.id) == [submitted["b1"], submitted["b2"]]
        await replayed_and_ran(["b1", "b2"])
        assert await replay(stack, all=True) == [submitted["a2"], submitted["a3"]]
        await replayed_and_ran(["a2", "a3"])
        assert not (await list_dead(stack)).dead_letters
        assert await replay(stack, all=True) == []
        for tag, job_id in submitted.items():
            replays = await admin.audit(job_id=job_id, action="replayed")
            assert [e.actor for e in replays] == [f"key:{stack.admin_key_id}"], tag

        # Parked: over its replay budget (0 here), the recovery service parks a dead letter;
        # the old letters of the jobs replayed above are stale and dropped.
        parked = {tag: (await c1.submit(job(tag, 5))).id for tag in ("p1", "p2")}
        killed = await dead_letter(stack, [(c1, job_id) for job_id in parked.values()])
        stack.platform.start_recovery()
        deadline = time.monotonic() + 60
        while True:
            listing = await list_dead(stack)
            if (listing.dead_letter_queue_depth == 0 and listing.parked_queue_depth == 2
                    and all(d.parked for d in listing.dead_letters)):
                break
            assert time.monotonic() < deadline, listing
            await asyncio.sleep(0.5)
        assert [d.job_id for d in listing.dead_letters] == list(parked.values())
        for letter in listing.dead_letters:
            assert letter.reason == ("replay budget of 0 used up; last: "
                                     + LOST.format(worker=killed))
        assert [d.job_id for d in (await list_dead(stack, parked=True)).dead_letters] == list(
            parked.values())
        assert not (await list_dead(stack, parked=False)).dead_letters

        # An operator may still replay a parked job; purging drops the rest for good.
        assert await replay(stack, job_ids=[parked["p2"]]) == [parked["p2"]]
        done = await wait_for_state(c1, parked["p2"], pb.JOB_STATE_SUCCEEDED)
        assert done.result.stdout == b"p2 started\np2 done\n"
        purge = await admin.stub.PurgeParked(adm.PurgeParkedRequest(), metadata=admin.metadata)
        assert purge.purged_messages == 2  # p1's letter and p2's stale one
        listing = await list_dead(stack)
        assert not listing.dead_letters and listing.parked_queue_depth == 0
        assert (await c1.get(parked["p1"])).state == pb.JOB_STATE_DEAD_LETTERED
        error = await refused(admin.stub.ReplayDeadLetters(
            adm.ReplayDeadLettersRequest(job_ids=[parked["p1"]]), metadata=admin.metadata))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "purged" in error.details()
        assert await replay(stack, all=True) == []
        p1_trail = [(e.action, e.actor) for e in await admin.audit(job_id=parked["p1"])]
        assert p1_trail[-3:] == [("dead_lettered", "platform"), ("parked", "recovery"),
                                 ("purged", f"key:{stack.admin_key_id}")]
