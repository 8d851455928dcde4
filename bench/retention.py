"""The store under retention: a steady load for a few minutes, and the store's size levels off.

    .venv/bin/python bench/retention.py [--minutes 3] [--rate 10] [--retention-s 20]
                                        [--sweep-s 2] [--sample-s 10] [--no-archive]

Runs a real control plane and a 2-slot worker with a short SLUICE_RETENTION_S (and the same
SLUICE_AUDIT_RETENTION_S), submits trivial python jobs at --rate per second for --minutes,
and every --sample-s seconds prints what the store holds, read from its SQLite file: rows of
jobs (those not finished apart), job_events and audit_events, the pages in use (page_count -
freelist_count: SQLite reuses freed pages, the file itself does not shrink), the file's size
and its write-ahead log's (emptied now and then by the store's checkpointer), beside the
jobs submitted, archived and deleted so far and the age of the oldest job in the store.
With an archive (the default) the jobs go to moto's S3 server, started here as its own
process, as the tests do; --no-archive deletes them. Without retention the rows would grow
with every job; with it they stop growing once the first jobs are a retention old, and the
summary compares the run's second half with its first.
Needs root for the sandbox and RabbitMQ (deploy/local/bootstrap.sh). A benchmark, not a
test: it asserts nothing, it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.platform_jobs import python_job_runner  # noqa: E402 - needs the repo on sys.path
from sluice.client import SluiceClient  # noqa: E402
from sluice.v1 import execution_service_pb2 as api  # noqa: E402
from sluice.v1 import job_pb2 as pb  # noqa: E402
from tests.support.broker import RunVhost  # noqa: E402
from tests.support.platform import Platform, free_port  # noqa: E402
from tests.support.s3 import CREDENTIALS, S3Server  # noqa: E402

BUCKET = "sluice-bench-archive"
JOB = api.SubmitJobRequest(language="python",
                           files=[pb.File(name="main.py", content=b"print('retained')\n")])


@dataclass(frozen=True)
class Sample:
    at_s: float
    jobs: int
    unfinished: int
    events: int
    audit: int
    used_mb: float
    file_mb: float
    wal_mb: float
    submitted: int
    archived: float
    deleted: float
    oldest_s: float


def store_figures(store: Path) -> tuple[int, int, int, int, float, float, float]:
    """(jobs, of which not finished, job_events and audit_events rows, MB of pages in use,
    of the file, of its write-ahead log)."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        jobs, events, audit = (conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                               for table in ("jobs", "job_events", "audit_events"))
        unfinished = conn.execute(
            "SELECT count(*) FROM jobs WHERE ended_at IS NULL").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        used = (conn.execute("PRAGMA page_count").fetchone()[0]
                - conn.execute("PRAGMA freelist_count").fetchone()[0])
    wal = Path(f"{store}-wal")
    return (jobs, unfinished, events, audit, used * page / 2**20, store.stat().st_size / 2**20,
            (wal.stat().st_size if wal.exists() else 0) / 2**20)


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


async def load(client: SluiceClient, rate: float, seconds: float, sent: list[int]) -> None:
    """Submits at `rate` per second, open loop (each on time whether or not the last has
    answered), for `seconds`; sent[0] counts the jobs accepted."""

    async def submit() -> None:
        await client.submit(JOB)
        sent[0] += 1

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    while (due := start + len(tasks) / rate) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(submit()))
    await asyncio.gather(*tasks, return_exceptions=True)


async def run(options: argparse.Namespace) -> None:
    vhost = RunVhost()
    await asyncio.to_thread(vhost.__enter__)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="sluice-bench-retention-"))
    metrics_port = free_port()
    env = {"SLUICE_WORKER_SLOTS": "2", "SLUICE_LOG_LEVEL": "warning",
           "SLUICE_RETENTION_S": str(options.retention_s),
           "SLUICE_AUDIT_RETENTION_S": str(options.retention_s),
           "SLUICE_RETENTION_SWEEP_S": str(options.sweep_s)}
    s3 = None
    if not options.no_archive:
        s3 = S3Server(workdir)
        await asyncio.to_thread(s3.start)
        await asyncio.to_thread(s3.client().create_bucket, Bucket=BUCKET)
        env |= {**CREDENTIALS, "SLUICE_ARCHIVE_URL": f"s3://{BUCKET}/bench",
                "SLUICE_S3_ENDPOINT_URL": s3.endpoint_url}
    stack = Platform(workdir, vhost.amqp_url(), prefix=f"retention-{uuid.uuid4().hex[:6]}",
                     extra_env=env)
    store = workdir / "sluice.db"
    samples: list[Sample] = []
    try:
        await asyncio.to_thread(stack.start_control_plane,
                                {"SLUICE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"})
        await asyncio.to_thread(stack.start_worker)
        key = await asyncio.to_thread(stack.create_tenant, f"bench-{uuid.uuid4().hex[:6]}")
        async with SluiceClient(stack.api_target, key) as client:
            await python_job_runner(client, b"pass\n")  # waits for the worker's languages
            print(f"retention {options.retention_s:g} s, sweep every {options.sweep_s:g} s,"
                  f" {options.rate:g} jobs/s for {options.minutes:g} min,"
                  f" {'archive: moto S3' if s3 else 'no archive'}; store {store}")
            print("     t   jobs (queued/running)  events   audit  used MB  file MB   WAL MB"
                  "  submitted  archived  deleted  oldest s")
            sent = [0]
            seconds = options.minutes * 60
            loading = asyncio.create_task(load(client, options.rate, seconds, sent))
            start = time.monotonic()
            while not loading.done():
                await asyncio.wait([loading], timeout=options.sample_s)
                jobs, unfinished, events, audit, used, size, wal = await asyncio.to_thread(
                    store_figures, store)
                counters = await asyncio.to_thread(metrics, metrics_port)
                sample = Sample(time.monotonic() - start, jobs, unfinished, events, audit, used,
                                size, wal, sent[0], counters.get("sluice_jobs_archived_total", 0),
                                counters.get("sluice_jobs_deleted_total", 0),
                                counters.get("sluice_store_oldest_job_age_seconds", 0))
                samples.append(sample)
                print(f"{sample.at_s:6.0f} {jobs:6d} {f'({unfinished})':>16} {events:7d}"
                      f" {audit:7d} {used:8.2f} {size:8.2f} {wal:8.2f} {sample.submitted:10d}"
                      f" {sample.archived:9.0f} {sample.deleted:8.0f} {sample.oldest_s:9.1f}")
            await loading
    finally:
        await asyncio.to_thread(stack.stop)
        if s3 is not None:
            await asyncio.to_thread(s3.stop)
        await asyncio.to_thread(vhost.__exit__, None, None, None)
    half = [s for s in samples if s.at_s >= samples[-1].at_s / 2]
    if len(half) >= 2:
        first, last = half[0], half[-1]
        print(f"second half ({first.at_s:.0f}-{last.at_s:.0f} s): jobs {first.jobs} -> {last.jobs}"
              f" ({first.unfinished} -> {last.unfinished} not finished),"
              f" events {first.events} -> {last.events}, audit {first.audit} -> {last.audit},"
              f" pages in use {first.used_mb:.2f} -> {last.used_mb:.2f} MB,"
              f" file {first.file_mb:.2f} -> {last.file_mb:.2f} MB"
              f" (WAL {first.wal_mb:.2f} -> {last.wal_mb:.2f} MB),"
              f" while {last.submitted - first.submitted} more jobs were submitted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=10.0, help="jobs submitted per second")
    parser.add_argument("--retention-s", type=float, default=20.0)
    parser.add_argument("--sweep-s", type=float, default=2.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--no-archive", action="store_true",
                        help="retention deletes; no S3 server is started")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
