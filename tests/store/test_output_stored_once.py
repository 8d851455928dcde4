"""A job's output is stored once (as its output events), and every read gives it back as
it gave it when the Result and the result event held copies of it: GetJob, ListJobs,
CancelJob's answer, an idempotent resubmission, WatchJob's replay from any after_seq and
the archive's snapshot. A store from before (output three times) is migrated to it."""

from __future__ import annotations

import os

from control_plane.job_messages import CODEC
from control_plane.store.backend import Backend, Tx
from control_plane.store.jobs import ExpiredLease, JobStore
from control_plane.store.records import (
    JobRecord,
    OutputStream,
    ResultRecord,
    TestCase,
    TestCaseResult,
    Usage,
    Verdict,
)
from control_plane.store.retention import ExpiredJob, RetentionStore
from sluice.v1 import job_pb2 as pb
from tests.store.conftest import OpenBackend
from tests.store.helpers import claim, job_store, new_tenant, spec, submit

CHUNK = 4096


def marker() -> bytes:
    """Output no other bytes of the store can contain by chance."""
    return os.urandom(16).hex().encode()


async def stored_bytes(db: Backend, job_id: str) -> tuple[list[bytes], int]:
    """Every blob the store holds for the job (its row's result, its events), and their
    total size."""

    def tx(conn: Tx) -> list[bytes]:
        blobs = [bytes(row[0]) for row in conn.execute(
            "SELECT result FROM jobs WHERE id = ? AND result IS NOT NULL", (job_id,))]
        blobs += [bytes(row[0]) for row in conn.execute(
            "SELECT event FROM job_events WHERE job_id = ?", (job_id,))]
        return blobs

    blobs = await db.run(tx)
    return blobs, sum(len(blob) for blob in blobs)


async def run_job(jobs: JobStore, tenant_id: str, stdout: list[bytes], stderr: list[bytes],
                  **fields: object) -> str:
    job = await submit(jobs, tenant_id, idempotency_key=marker().decode(), **fields)
    assert (await claim(jobs, job.id)).assignment is not None
    for out, err in zip(stdout, stderr, strict=True):
        assert await jobs.append_output(job.id, 1, "w1", OutputStream.STDOUT, out)
        assert await jobs.append_output(job.id, 1, "w1", OutputStream.STDERR, err)
    stored = await jobs.finish(job.id, 1, "w1", ResultRecord(
        verdict=Verdict.RUNTIME_ERROR, exit_code=3, stdout_truncated=True,
        usage=Usage(cpu_time_ms=7)))
    assert stored is not None and stored.events[0].result.stdout == b"".join(stdout)
    return job.id


async def every_read(db: Backend, jobs: JobStore, tenant_id: str, job_id: str
                     ) -> list[JobRecord]:
    """The job as each read path gives it."""
    got = await jobs.get(job_id, tenant_id)
    assert got is not None and got.idempotency_key
    listed = await jobs.list_for_tenant(tenant_id, states=[], labels={}, created_after=None,
                                        created_before=None, before_id=None, limit=100)
    resubmitted, created = await jobs.create(lambda tx: (tenant_id, "key:test"),
                                             spec(idempotency_key=got.idempotency_key))
    assert not created
    cancelled = await jobs.cancel(job_id, tenant_id, actor="key:test")
    assert cancelled is not None and cancelled[1] == []  # ended already: nothing changes
    snapshot = await RetentionStore(db, CODEC).snapshot(await expired(db, job_id))
    assert snapshot is not None
    return [got, *[job for job in listed if job.id == job_id], resubmitted, cancelled[0],
            snapshot.job]


async def expired(db: Backend, job_id: str) -> ExpiredJob:
    row = await db.run(lambda tx: tx.execute(
        "SELECT id, tenant_id, state, last_seq, parked FROM jobs WHERE id = ?",
        (job_id,)).fetchone())
    return ExpiredJob(*row)


async def result_events(jobs: JobStore, tenant_id: str, job_id: str) -> list[ResultRecord]:
    """The result event as WatchJob replays it from every after_seq before it, and as the
    archive's snapshot holds it."""
    events = await jobs.events_after(job_id, 0)
    results = []
    for after in range(events[-1].seq - 1):
        watched = await jobs.watch_read(job_id, tenant_id, after)
        assert watched is not None and watched[1]
        results += [e.result for e in watched[0] if e.result is not None]
    assert len(results) == events[-1].seq - 1
    return results


async def test_output_is_stored_once_and_read_back_everywhere(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    out, err = marker(), marker()
    stdout = [out + b"o" * CHUNK for _ in range(4)]
    stderr = [err + b"e" * CHUNK for _ in range(4)]
    job_id = await run_job(jobs, tenant_id, stdout, stderr, labels={"x": "1"})

    blobs, size = await stored_bytes(db, job_id)
    assert sum(blob.count(out) for blob in blobs) == 4  # each chunk once, in its event
    assert sum(blob.count(err) for blob in blobs) == 4
    output = sum(map(len, stdout + stderr))
    # Once: the output and a few hundred bytes of the rest (was over three times it).
    assert output < size < output + 1024, (output, size)

    for job in await every_read(db, jobs, tenant_id, job_id):
        assert job.result.stdout == b"".join(stdout)
        assert job.result.stderr == b"".join(stderr)
        assert job.result.stdout_truncated and job.result.exit_code == 3
        assert job.result.usage.cpu_time_ms == 7
    for result in await result_events(jobs, tenant_id, job_id):
        assert (result.stdout, result.stderr) == (b"".join(stdout), b"".join(stderr))
    snapshot = await RetentionStore(db, CODEC).snapshot(await expired(db, job_id))
    assert snapshot is not None
    assert list(snapshot.events) == await jobs.events_after(job_id, 0)


async def test_a_retried_job_reads_only_its_final_attempts_output(db: Backend) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    job = await submit(jobs, tenant_id, idempotency_key=marker().decode())
    assert (await claim(jobs, job.id, lease_s=-1)).assignment is not None
    assert await jobs.append_output(job.id, 1, "w1", OutputStream.STDOUT, b"lost ")
    assert await jobs.release_lost_attempt(ExpiredLease(job.id, tenant_id, 1, "w1"),
                                           dead_reason=None)
    assert (await claim(jobs, job.id, "w2")).assignment is not None
    assert await jobs.append_output(job.id, 2, "w2", OutputStream.STDOUT, b"kept")
    assert await jobs.finish(job.id, 2, "w2", ResultRecord(verdict=Verdict.OK))
    for read in await every_read(db, jobs, tenant_id, job.id):
        assert read.result.stdout == b"kept"
    assert {r.stdout for r in await result_events(jobs, tenant_id, job.id)} == {b"kept"}

    # Cancelled while queued after a lost attempt: the lost output is not its result's.
    queued = await submit(jobs, tenant_id, idempotency_key=marker().decode())
    assert (await claim(jobs, queued.id, lease_s=-1)).assignment is not None
    assert await jobs.append_output(queued.id, 1, "w1", OutputStream.STDOUT, b"lost")
    assert await jobs.release_lost_attempt(ExpiredLease(queued.id, tenant_id, 1, "w1"),
                                           dead_reason=None)
    cancelled = await jobs.cancel(queued.id, tenant_id, actor="key:test")
    assert cancelled is not None and cancelled[0].result.verdict == Verdict.CANCELLED
    for read in await every_read(db, jobs, tenant_id, queued.id):
        assert read.result.stdout == b"" and read.result.verdict == Verdict.CANCELLED
    assert {r.stdout for r in await result_events(jobs, tenant_id, queued.id)} == {b""}


def _as_before(job_id: str, stdout: bytes, stderr: bytes, attempt_seq: int | None):
    """Writes a job's rows as the store before migration 6 did: its output copied into
    jobs.result and into its result event (and a cancelled job's attempt_seq left where
    its lost attempt started)."""

    def tx(conn: Tx) -> None:
        blob, last_seq = conn.execute("SELECT result, last_seq FROM jobs WHERE id = ?",
                                      (job_id,)).fetchone()
        result = pb.Result.FromString(bytes(blob))
        result.stdout, result.stderr = stdout, stderr
        conn.execute("UPDATE jobs SET result = ? WHERE id = ?",
                     (result.SerializeToString(), job_id))
        if attempt_seq is not None:
            conn.execute("UPDATE jobs SET attempt_seq = ? WHERE id = ?", (attempt_seq, job_id))
        event = pb.JobEvent.FromString(bytes(conn.execute(
            "SELECT event FROM job_events WHERE job_id = ? AND seq = ?",
            (job_id, last_seq - 1)).fetchone()[0]))
        assert event.HasField("result")
        event.result.stdout, event.result.stderr = stdout, stderr
        conn.execute("UPDATE job_events SET event = ? WHERE job_id = ? AND seq = ?",
                     (event.SerializeToString(), job_id, last_seq - 1))

    return tx


async def test_a_store_with_output_stored_three_times_is_migrated(
        open_backend: OpenBackend) -> None:
    db = await open_backend()
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    out = marker()
    stdout, stderr = [out + b"1", out + b"2"], [b"err", b"or"]
    ran = await run_job(jobs, tenant_id, stdout, stderr)
    lost = await submit(jobs, tenant_id, idempotency_key=marker().decode())
    started = await claim(jobs, lost.id, lease_s=-1)
    assert await jobs.append_output(lost.id, 1, "w1", OutputStream.STDOUT, out + b"lost")
    assert await jobs.release_lost_attempt(ExpiredLease(lost.id, tenant_id, 1, "w1"),
                                           dead_reason=None)
    assert await jobs.cancel(lost.id, tenant_id, actor="key:test")
    before = {job_id: await every_read(db, jobs, tenant_id, job_id) for job_id in (ran, lost.id)}

    await db.run(_as_before(ran, b"".join(stdout), b"".join(stderr), None))
    await db.run(_as_before(lost.id, b"", b"", started.events[-1].seq))
    await db.run(lambda tx: tx.execute("DELETE FROM schema_migrations WHERE version = 6"))
    blobs, _ = await stored_bytes(db, ran)
    assert sum(blob.count(out) for blob in blobs) == 2 * 3  # as today's main stores it

    migrated = await open_backend()
    assert [m.name for m in migrated.migrations_applied] == ["output_stored_once"]
    blobs, _ = await stored_bytes(migrated, ran)
    assert sum(blob.count(out) for blob in blobs) == 2
    again = job_store(migrated)
    for job_id in (ran, lost.id):
        assert await every_read(migrated, again, tenant_id, job_id) == before[job_id]
    assert {r.stdout for r in await result_events(again, tenant_id, ran)} == {
        b"".join(stdout)}
    assert {r.stdout for r in await result_events(again, tenant_id, lost.id)} == {b""}


async def test_test_case_results_are_stored_once_and_read_back_everywhere(db: Backend
                                                                         ) -> None:
    jobs = job_store(db)
    tenant_id = await new_tenant(db)
    job = await submit(jobs, tenant_id, idempotency_key=marker().decode(),
                       test_cases=(TestCase(name="a"), TestCase(name="b")))
    assert (await claim(jobs, job.id)).assignment is not None
    cases = [TestCaseResult(name=name, verdict=verdict, stdout=marker())
             for name, verdict in (("a", Verdict.OK), ("b", Verdict.WRONG_ANSWER))]
    for case in cases:
        assert await jobs.append_test_case(job.id, 1, "w1", case)
    # Whatever the worker's result lists, the cases are the ones the gateway stored.
    stored = await jobs.finish(job.id, 1, "w1", ResultRecord(
        verdict=Verdict.WRONG_ANSWER, test_results=(TestCaseResult(name="forged"),)))
    assert stored is not None and stored.events[0].result.test_results == tuple(cases)

    blobs, _ = await stored_bytes(db, job.id)
    for case in cases:
        assert sum(blob.count(case.stdout) for blob in blobs) == 1  # in its event alone
    assert not any(b"forged" in blob for blob in blobs)
    for read in await every_read(db, jobs, tenant_id, job.id):
        assert read.result.test_results == tuple(cases)
    for result in await result_events(jobs, tenant_id, job.id):
        assert result.test_results == tuple(cases)
