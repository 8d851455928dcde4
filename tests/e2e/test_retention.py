"""Retention and the archive, on the real platform and a real S3 API endpoint (moto's server,
its own process, reached through boto3 as AWS would be): a finished job leaves the store
for one object in the archive only once the archive has it, and reads back as it was."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from control_plane.archive import JobArchive
from control_plane.job_messages import CODEC
from control_plane.retention import BATCH, RetentionSweeper
from control_plane.store.database import Database
from control_plane.store.jobs import JobStore
from control_plane.store.records import JobSpec
from control_plane.store.retention import RetentionStore
from sluice.client import SluiceClient
from sluice.v1 import archive_pb2 as arc
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job, wait_for_languages
from tests.e2e.test_metrics import scrape, value
from tests.support.admin import AdminClient, NewTenant
from tests.support.broker import RunVhost
from tests.support.platform import Platform, free_port
from tests.support.s3 import CREDENTIALS, S3Server, object_keys
from tests.support.tcp_proxy import TcpProxy

BUCKET = "sluice-archive"
PREFIX = "prod/jobs"
SHORT = {"SLUICE_RETENTION_S": "1", "SLUICE_RETENTION_SWEEP_S": "0.5",
         "SLUICE_AUDIT_RETENTION_S": "1", "SLUICE_WORKER_SLOTS": "2"}
# Output on both streams, in several chunks, and a non-zero exit: a Result with everything.
NOISY = ("import sys, time\n"
         "for n in range(3):\n"
         "    print('out', n, flush=True)\n"
         "    print('err', n, file=sys.stderr, flush=True)\n"
         "    time.sleep(0.05)\n"
         "sys.exit(3)\n")


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout_s: float = 180) -> None:
    """Waits for check() to hold; the deadline only stops a test that would hang."""
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.2)
    assert await check(), what


def stored_rows(store: Path, job_id: str) -> tuple[int, int]:
    """(job rows, event rows) of the job, read from the SQLite file itself."""
    with sqlite3.connect(store) as conn:
        jobs = conn.execute("SELECT count(*) FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        events = conn.execute("SELECT count(*) FROM job_events WHERE job_id = ?",
                              (job_id,)).fetchone()[0]
    return jobs, events


def audit_rows(store: Path, job_id: str) -> int:
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT count(*) FROM audit_events WHERE job_id = ?",
                            (job_id,)).fetchone()[0]


async def watched(client: SluiceClient, job_id: str, after_seq: int = 0) -> list[pb.JobEvent]:
    return [event async for event in client.watch(job_id, after_seq, reconnect=False)]


async def expect(code: grpc.StatusCode, call: Awaitable[object]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


@pytest.fixture
async def s3(tmp_path: Path) -> AsyncIterator[S3Server]:
    server = S3Server(tmp_path)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(server.client().create_bucket, Bucket=BUCKET)
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def start(platform: Platform, control_plane_env: dict[str, str] | None = None
                ) -> tuple[AdminClient, NewTenant, NewTenant]:
    await asyncio.to_thread(platform.start_control_plane, control_plane_env)
    platform.start_worker()
    admin_key = await asyncio.to_thread(platform.create_tenant, "ops", admin=True)
    await asyncio.to_thread(wait_for_languages, platform, admin_key)
    admin = AdminClient(platform.api_target, admin_key)
    return admin, await admin.create_tenant("owner"), await admin.create_tenant("stranger")


async def test_a_job_leaves_the_store_only_once_archived_and_reads_back_the_same(
        vhost: RunVhost, tmp_path: Path, s3: S3Server) -> None:
    # The platform reaches moto through a proxy the test cuts: the archive starts down.
    proxy = TcpProxy("127.0.0.1", s3.port)
    await proxy.start()
    await proxy.cut()
    metrics_port = free_port()
    # SQLite whatever SLUICE_TEST_STORE says: the test reads the store's file itself.
    platform = Platform(tmp_path, vhost.amqp_url(), prefix=f"{tmp_path.name}-archive",
                        store="sqlite", extra_env={**SHORT, **CREDENTIALS,
                                   "SLUICE_ARCHIVE_URL": f"s3://{BUCKET}/{PREFIX}",
                                   "SLUICE_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"})
    store = tmp_path / "sluice.db"
    reader = s3.client()
    try:
        admin, owner, stranger = await start(
            platform, {"SLUICE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"})
        async with (admin, SluiceClient(platform.api_target, owner.key) as mine,
                    SluiceClient(platform.api_target, stranger.key) as theirs):
            job = await mine.submit(python_job(NOISY, labels={"team": "owner"},
                                               idempotency_key=uuid.uuid4().hex))
            await mine.wait(job.id)
            before = await mine.get(job.id)
            events = await watched(mine, job.id)
            assert before.result.verdict == pb.VERDICT_RUNTIME_ERROR
            assert before.result.stdout == b"out 0\nout 1\nout 2\n"
            assert before.result.stderr == b"err 0\nerr 1\nerr 2\n"

            # The archive is down: the sweeps try the job, fail and count it; it stays.
            async def failed_to_write() -> bool:
                return "finished jobs stay in the store" in platform.log("control-plane")

            await eventually(failed_to_write, "the sweep never tried the archive")
            samples = await asyncio.to_thread(scrape, metrics_port)
            assert value(samples, "sluice_archive_failures_total", operation="put") >= 1
            assert value(samples, "sluice_jobs_deleted_total") == 0
            assert stored_rows(store, job.id) == (1, len(events))
            assert await mine.get(job.id) == before
            assert await watched(mine, job.id) == events

            # The archive is back: the job goes there, then leaves the store.
            await proxy.mend()

            async def gone() -> bool:
                return stored_rows(store, job.id) == (0, 0)

            await eventually(gone, "the job never left the store")
            key = f"{PREFIX}/{owner.id}/{job.id}.binpb"
            body = (await asyncio.to_thread(reader.get_object, Bucket=BUCKET, Key=key)
                    )["Body"].read()
            archived = arc.ArchivedJob.FromString(body)
            assert archived.tenant_id == owner.id
            assert archived.job == before
            assert list(archived.events) == events
            assert archived.spec.files[0].content == NOISY.encode()

            # GetJob and WatchJob read it back exactly; replay resumes after any seq.
            assert await mine.get(job.id) == before
            assert await watched(mine, job.id) == events
            for after in (1, events[len(events) // 2].seq, events[-1].seq):
                assert await watched(mine, job.id, after) == [e for e in events if e.seq > after]
            assert await mine.cancel(job.id) == before  # a finished job, unchanged

            # Another tenant's archived job reads exactly like no job at all.
            not_found = f"job {job.id!r} not found"
            assert await expect(grpc.StatusCode.NOT_FOUND, theirs.get(job.id)) == not_found
            assert await expect(grpc.StatusCode.NOT_FOUND, watched(theirs, job.id)) == not_found
            assert await expect(grpc.StatusCode.NOT_FOUND, theirs.cancel(job.id)) == not_found
            unknown = job.id[:-4] + "0000"
            assert await expect(grpc.StatusCode.NOT_FOUND, mine.get(unknown)) == (
                f"job {unknown!r} not found")

            # The audit trail went the same way, in batches in seq order.
            async def audit_archived() -> bool:
                return audit_rows(store, job.id) == 0

            await eventually(audit_archived, "the job's audit records never left the store")
            keys = await asyncio.to_thread(object_keys, reader, BUCKET, f"{PREFIX}/audit/")
            assert keys == sorted(keys)
            records = []
            for audit_key in keys:
                obj = await asyncio.to_thread(reader.get_object, Bucket=BUCKET, Key=audit_key)
                records.extend(arc.ArchivedAuditBatch.FromString(obj["Body"].read()).events)
            actions = [r.action for r in records if r.job_id == job.id]
            assert actions[0] == "submitted" and actions[-1] == "failed"
            assert [r.seq for r in records] == sorted({r.seq for r in records})

            samples = await asyncio.to_thread(scrape, metrics_port)
            assert value(samples, "sluice_jobs_archived_total") >= 1
            assert value(samples, "sluice_jobs_deleted_total") >= 1
            assert ("sluice_store_oldest_job_age_seconds", ()) in samples

            # The archive down again: a read of an archived job says so, and is not a lie.
            await proxy.cut()
            details = await expect(grpc.StatusCode.UNAVAILABLE, mine.get(job.id))
            assert "archive" in details
            await proxy.mend()
            assert await mine.get(job.id) == before
    finally:
        await asyncio.to_thread(platform.stop)
        await proxy.close()


async def test_an_operator_reads_an_archived_job_back_by_its_id_alone(
        vhost: RunVhost, tmp_path: Path, s3: S3Server) -> None:
    """AdminService names a job, not its tenant: once the job has left the store, the audit
    trail (kept longer) says whose it was, and the archive gives it back."""
    platform = Platform(tmp_path, vhost.amqp_url(), prefix=f"{tmp_path.name}-operator",
                        store="sqlite", extra_env={
                            **SHORT, **CREDENTIALS, "SLUICE_AUDIT_RETENTION_S": "3600",
                            "SLUICE_ARCHIVE_URL": f"s3://{BUCKET}/{PREFIX}",
                            "SLUICE_S3_ENDPOINT_URL": s3.endpoint_url})
    store = tmp_path / "sluice.db"
    try:
        admin, owner, _ = await start(platform)
        async with admin, SluiceClient(platform.api_target, owner.key) as mine:
            job = await mine.submit(python_job(NOISY))
            await mine.wait(job.id)
            before = await admin.stub.GetJob(api.GetJobRequest(job_id=job.id),
                                             metadata=admin.metadata)
            with_files = await admin.stub.GetJob(
                api.GetJobRequest(job_id=job.id, include_files=True), metadata=admin.metadata)
            events = [e async for e in admin.stub.WatchJob(
                api.WatchJobRequest(job_id=job.id), metadata=admin.metadata)]
            assert before.result.stdout == b"out 0\nout 1\nout 2\n"

            async def gone() -> bool:
                return stored_rows(store, job.id) == (0, 0)

            await eventually(gone, "the job never left the store")
            assert audit_rows(store, job.id) > 0  # the trail still holds it
            assert await admin.stub.GetJob(api.GetJobRequest(job_id=job.id),
                                           metadata=admin.metadata) == before
            assert await admin.stub.GetJob(
                api.GetJobRequest(job_id=job.id, include_files=True),
                metadata=admin.metadata) == with_files
            after = events[len(events) // 2].seq
            assert [e async for e in admin.stub.WatchJob(
                api.WatchJobRequest(job_id=job.id, after_seq=after),
                metadata=admin.metadata)] == [e for e in events if e.seq > after]
            unknown = job.id[:-4] + "0000"
            assert await expect(grpc.StatusCode.NOT_FOUND, admin.stub.GetJob(
                api.GetJobRequest(job_id=unknown), metadata=admin.metadata)) == (
                f"job {unknown!r} not found")
    finally:
        await asyncio.to_thread(platform.stop)


async def test_without_an_archive_retention_deletes(vhost: RunVhost, tmp_path: Path) -> None:
    platform = Platform(tmp_path, vhost.amqp_url(), prefix=f"{tmp_path.name}-retention",
                        store="sqlite", extra_env=SHORT)
    store = tmp_path / "sluice.db"
    try:
        admin, owner, _ = await start(platform)
        async with admin, SluiceClient(platform.api_target, owner.key) as mine:
            job = await mine.submit(python_job(NOISY))
            await mine.result(job.id)

            async def gone() -> bool:
                return stored_rows(store, job.id) == (0, 0) and audit_rows(store, job.id) == 0

            await eventually(gone, "the job never left the store")
            assert await expect(grpc.StatusCode.NOT_FOUND, mine.get(job.id)) == (
                f"job {job.id!r} not found")
    finally:
        await asyncio.to_thread(platform.stop)


async def test_two_sweeps_at_once_write_each_job_once_and_an_archive_down_keeps_them(
        tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two control planes' sweeps, side by side on one store (as two replicas on a shared
    store): claims split the jobs between them; with the archive unreachable, nothing
    leaves."""
    for name, setting in CREDENTIALS.items():
        monkeypatch.setenv(name, setting)
    db = Database(tmp_path / "store.db")
    await db.open()
    try:
        jobs = JobStore(db, CODEC)
        ids = []
        for _ in range(2 * BATCH + 30):  # over two batches
            job, _ = await jobs.create(lambda conn: ("t_0123456789abcdef", "test"),
                                       JobSpec(language="python"))
            await jobs.cancel(job.id, "t_0123456789abcdef", actor="test")
            ids.append(job.id)
        nowhere = await JobArchive.open(f"s3://{BUCKET}/{PREFIX}",
                                        f"http://127.0.0.1:{free_port()}")
        down = RetentionSweeper(RetentionStore(db, CODEC), nowhere, retention_s=1e-6,
                                audit_retention_s=0, interval_s=1)
        outcome = await down.sweep()
        assert outcome.failures >= 1 and outcome.deleted == 0
        assert rows_left(tmp_path / "store.db") == len(ids)

        archive = await JobArchive.open(f"s3://{BUCKET}/{PREFIX}", s3.endpoint_url)
        sweepers = [RetentionSweeper(RetentionStore(db, CODEC), archive, retention_s=1e-6,
                                     audit_retention_s=0, interval_s=1) for _ in range(2)]
        outcomes = await asyncio.gather(*(sweeper.sweep() for sweeper in sweepers))
        assert sum(o.archived for o in outcomes) == len(ids)  # none written twice
        assert sum(o.deleted for o in outcomes) == len(ids)
        assert all(o.failures == 0 for o in outcomes)
        assert rows_left(tmp_path / "store.db") == 0
        keys = await asyncio.to_thread(object_keys, s3.client(), BUCKET,
                                       f"{PREFIX}/t_0123456789abcdef/")
        assert sorted(keys) == sorted(f"{PREFIX}/t_0123456789abcdef/{i}.binpb" for i in ids)
    finally:
        await db.close()


def rows_left(store: Path) -> int:
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
