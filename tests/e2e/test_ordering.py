"""Ordering keys: one key's jobs run one at a time in submission order; keys run in parallel.

The audit trail is written in the transactions that change the jobs, so its seq order is the
order things happened in the store: submission order is the order of the `submitted`
records, and a job ran alone if its `started` follows the end of the one before it.
"""

from __future__ import annotations

import asyncio
import itertools

from sluice.client import SluiceClient
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.admin import TERMINAL_ACTIONS, AdminClient
from tests.support.platform import Platform

STEP = "import sys, time\ntime.sleep(0.4)\nprint(sys.argv[1])\n"


def by_job(trail: list[adm.AuditEvent], action: str) -> dict[str, int]:
    return {e.job_id: e.seq for e in trail if e.action == action}


def ended(trail: list[adm.AuditEvent]) -> dict[str, int]:
    return {e.job_id: e.seq for e in trail if e.action in TERMINAL_ACTIONS}


def assert_one_at_a_time_in_order(trail: list[adm.AuditEvent], job_ids: list[str]) -> None:
    submitted, started, finished = (by_job(trail, "submitted"), by_job(trail, "started"),
                                    ended(trail))
    in_submission_order = sorted(job_ids, key=submitted.__getitem__)
    ran = [job_id for job_id in in_submission_order if job_id in started]
    assert sorted(ran, key=started.__getitem__) == ran, "started out of submission order"
    for before, after in itertools.pairwise(ran):
        assert finished[before] < started[after], f"{after} started before {before} ended"


async def test_same_key_one_at_a_time_in_order_other_keys_in_parallel(
        platform: Platform, admin: AdminClient) -> None:
    tenant = await admin.create_tenant("ordering")
    async with SluiceClient(platform.api_target, tenant.key) as client:
        # Submitted concurrently: the store decides the order, and the trail records it.
        submissions = [client.submit(python_job(STEP, args=[f"{key}-{i}"], ordering_key=key))
                       for i in range(4) for key in ("left", "right")]
        jobs = await asyncio.gather(*submissions)
        for job in jobs:
            done = await client.wait(job.id)
            assert done.state == pb.JOB_STATE_SUCCEEDED, done
    trail = await admin.audit(tenant_id=tenant.id)
    for key in ("left", "right"):
        assert_one_at_a_time_in_order(trail, [j.id for j in jobs if j.ordering_key == key])
    # Different keys are not serialised: some left job ran while a right one did.
    started, finished = by_job(trail, "started"), ended(trail)
    left = [j.id for j in jobs if j.ordering_key == "left"]
    right = [j.id for j in jobs if j.ordering_key == "right"]
    assert any(started[a] < finished[b] and started[b] < finished[a]
               for a in left for b in right)


async def test_chain_goes_on_past_a_failed_and_a_cancelled_job(
        platform: Platform, admin: AdminClient) -> None:
    tenant = await admin.create_tenant("ordering-chain")
    async with SluiceClient(platform.api_target, tenant.key) as client:
        first = await client.submit(python_job(
            "import time\ntime.sleep(1.5)\nraise SystemExit(4)\n", ordering_key="k"))
        second = await client.submit(python_job("print('never')", ordering_key="k"))
        third = await client.submit(python_job("print('third')", ordering_key="k"))
        # Waiting behind the first: QUEUED, and cancelling it means it never runs.
        assert (await client.get(second.id)).state == pb.JOB_STATE_QUEUED
        assert (await client.cancel(second.id)).state == pb.JOB_STATE_CANCELLED
        assert (await client.wait(first.id)).state == pb.JOB_STATE_FAILED
        done = await client.wait(third.id)
        assert done.state == pb.JOB_STATE_SUCCEEDED and done.result.stdout == b"third\n"
    trail = await admin.audit(tenant_id=tenant.id)
    assert second.id not in by_job(trail, "started")
    assert_one_at_a_time_in_order(trail, [first.id, second.id, third.id])


async def test_a_waiting_job_does_not_use_a_worker(client: SluiceClient,
                                                   other_client: SluiceClient) -> None:
    """While a key's first job runs, its next ones hold no worker slot: another job still
    gets the worker's second slot and finishes first."""
    key = "slot-check"
    head = await client.submit(python_job("import time\ntime.sleep(5)\n", ordering_key=key))
    behind = [await client.submit(python_job("pass", ordering_key=key)) for _ in range(3)]
    other = await other_client.submit(python_job("print('other')"))
    other_done = await other_client.wait(other.id)
    assert other_done.state == pb.JOB_STATE_SUCCEEDED
    assert (await client.get(head.id)).state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
    for job in behind:
        assert (await client.get(job.id)).state == pb.JOB_STATE_QUEUED
    for job in (head, *behind):
        assert (await client.wait(job.id)).state == pb.JOB_STATE_SUCCEEDED
