"""The worker-token store, the lease guards by identity, the languages each identity
registers, and the checks of what a worker reports."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.job_messages import CODEC
from control_plane.report_checks import (
    CPU_MARGIN_MS,
    STEPS_PER_JOB,
    OutputAllowance,
    clamp_usage,
)
from control_plane.store.database import Database
from control_plane.store.jobs import JobStore
from control_plane.store.records import (
    JobSpec,
    JobState,
    LanguageRecord,
    Limits,
    OutputStream,
    ResultRecord,
    SourceFile,
    Usage,
    Verdict,
)
from control_plane.store.tenants import hash_key
from control_plane.store.worker_languages import WorkerLanguageStore
from control_plane.store.worker_tokens import (
    TOKEN_PREFIX,
    InvalidWorkerTokenName,
    WorkerTokenExists,
    WorkerTokenStore,
)
from sluice.v1 import job_pb2 as pb


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "store.db")
    await database.open()
    yield database
    await database.close()


def audit_actions(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "store.db") as conn:
        return conn.execute("SELECT action, detail FROM audit_events ORDER BY seq").fetchall()


async def test_a_token_is_shown_once_stored_hashed_and_proves_its_name(
        db: Database, tmp_path: Path) -> None:
    store = WorkerTokenStore(db)
    token, secret = await store.create("pool-a", actor="key:k_1")
    assert secret.startswith(TOKEN_PREFIX) and token.prefix == secret[:10]
    identity = await store.live_identity(hash_key(secret))
    assert identity is not None and (identity.token_id, identity.name) == (token.id, "pool-a")
    with sqlite3.connect(tmp_path / "store.db") as conn:
        stored = conn.execute("SELECT token_hash FROM worker_tokens").fetchall()
    assert stored == [(hash_key(secret),)]  # the secret itself is nowhere
    assert await store.live_identity(hash_key(TOKEN_PREFIX + "guessed")) is None
    assert [action for action, _ in audit_actions(tmp_path)] == ["worker_token_created"]


async def test_names_are_unique_among_live_tokens_and_checked(db: Database) -> None:
    store = WorkerTokenStore(db)
    await store.create("pool-a")
    with pytest.raises(WorkerTokenExists, match="pool-a"):
        await store.create("pool-a")
    for bad in ("", "-rf", "@file", "a b", "x" * 65, "naïve"):
        with pytest.raises(InvalidWorkerTokenName):
            await store.create(bad)
    await store.revoke("pool-a")
    await store.create("pool-a")  # the name is free again once its token is revoked
    assert [t.name for t in await store.list()] == ["pool-a"]
    assert len(await store.list(include_revoked=True)) == 2


async def test_revoking_refuses_the_token_and_gives_up_its_leases(
        db: Database, tmp_path: Path) -> None:
    store, jobs = WorkerTokenStore(db), JobStore(db, CODEC)
    token, secret = await store.create("pool-a")
    _, other_secret = await store.create("pool-b")
    mine, theirs = await new_job(jobs), await new_job(jobs)
    await claim(jobs, mine, "pool-a")
    await claim(jobs, theirs, "pool-b")

    revoked = await store.revoke(token.name)  # by name; by id works as well
    assert revoked is not None and revoked.id == token.id and revoked.revoked_at is not None
    assert await store.live_identity(hash_key(secret)) is None
    assert await store.live_identity(hash_key(other_secret)) is not None
    lost = {lease.job_id for lease in await jobs.expired_leases()}
    assert lost == {mine}  # pool-b's lease is untouched
    assert await store.revoke("no-such-token") is None
    again = await store.revoke(token.id)
    assert again is not None and again.revoked_at == revoked.revoked_at
    detail = [d for action, d in audit_actions(tmp_path) if action == "worker_token_revoked"]
    assert len(detail) == 1 and '"leases_released": 1' in detail[0]


async def test_rotate_replaces_the_live_token_of_a_name(db: Database) -> None:
    store = WorkerTokenStore(db)
    _, first = await store.create("node-worker-1")
    _, second = await store.rotate("node-worker-1", actor="sluice-up")
    assert await store.live_identity(hash_key(first)) is None
    identity = await store.live_identity(hash_key(second))
    assert identity is not None and identity.name == "node-worker-1"


# Leases belong to the identity that claimed them ---------------------------------------


async def new_job(jobs: JobStore) -> str:
    spec = JobSpec(language="python",
                                files=(SourceFile(name="main.py", content=b"print(1)"),),
                                limits=Limits(cpu_time_ms=1000, wall_time_ms=2000))
    job, _ = await jobs.create(lambda conn: ("t_1", "key:k_1"), spec)
    return job.id


async def claim(jobs: JobStore, job_id: str, owner: str) -> int:
    outcome = await jobs.claim(job_id, owner, replays=0, lease_s=30, max_attempts=3,
                               heartbeat_interval_ms=1000)
    assert outcome.assignment is not None, outcome.detail
    return outcome.assignment.attempt


async def test_reports_for_another_identitys_lease_change_nothing(db: Database) -> None:
    jobs = JobStore(db, CODEC)
    job_id = await new_job(jobs)
    attempt = await claim(jobs, job_id, "pool-a")

    assert not (await jobs.heartbeat(job_id, attempt, "intruder", 30)).valid
    assert await jobs.append_output(job_id, attempt, "intruder", OutputStream.STDOUT,
                                    b"forged") is None
    forged = ResultRecord(verdict=Verdict.OK, usage=Usage(cpu_time_ms=10))
    assert await jobs.finish(job_id, attempt, "intruder", forged) is None
    assert await jobs.requeue_failed_attempt(job_id, attempt, "intruder", "forged") == []
    await jobs.drop_lease(job_id, attempt, "intruder")
    assert await jobs.expired_leases() == []  # the owner's lease still runs
    job = await jobs.get(job_id, None)
    assert job is not None and job.state == JobState.RUNNING

    # The owner's own reports go through, and its output is what is kept.
    assert (await jobs.heartbeat(job_id, attempt, "pool-a", 30)).valid
    assert await jobs.append_output(job_id, attempt, "pool-a", OutputStream.STDOUT,
                                    b"real\n") is not None
    stored = await jobs.finish(job_id, attempt, "pool-a", ResultRecord(verdict=Verdict.OK))
    assert stored is not None and stored.state == JobState.SUCCEEDED
    job = await jobs.get(job_id, None)
    assert job is not None and job.result.stdout == b"real\n"


async def test_the_lease_owner_is_the_claimers_identity(db: Database, tmp_path: Path) -> None:
    jobs = JobStore(db, CODEC)
    job_id = await new_job(jobs)
    await claim(jobs, job_id, "pool-a")
    with sqlite3.connect(tmp_path / "store.db") as conn:
        owner, actor = conn.execute(
            "SELECT lease_owner, (SELECT actor FROM audit_events WHERE action = 'started')"
            " FROM jobs").fetchone()
    assert (owner, actor) == ("pool-a", "worker:pool-a")


# Languages, by identity ------------------------------------------------------------------


async def test_languages_are_listed_while_a_live_identity_keeps_registering(
        db: Database) -> None:
    tokens, languages = WorkerTokenStore(db), WorkerLanguageStore(db, CODEC)
    await tokens.create("pool-a")
    await tokens.create("pool-b")
    await languages.record("pool-a", [LanguageRecord(id="python", version="3.11")])
    await languages.record("pool-b", [LanguageRecord(id="python", version="3.12"),
                                      LanguageRecord(id="c")])
    live = await languages.live(60)
    assert [(lang.id, lang.version) for lang in live] == [("c", ""), ("python", "3.12")]
    # pool-b's registration does not touch pool-a's rows: pool-a's python stays its own.
    await tokens.revoke("pool-b")
    assert [(lang.id, lang.version) for lang in await languages.live(60)] == [
        ("python", "3.11")]
    # Unheard of within the window: gone.
    assert await languages.live(0) == []
    # An identity with no live token lists nothing, whatever it wrote.
    await languages.record("nobody", [LanguageRecord(id="cobol")])
    assert "cobol" not in {lang.id for lang in await languages.live(60)}


# What a worker reports, re-checked ---------------------------------------------------------


def test_output_past_the_allowance_is_cut_and_the_result_says_so() -> None:
    allowance = OutputAllowance(10)
    assert allowance.take(pb.OUTPUT_STREAM_STDOUT, b"123456") == b"123456"
    assert allowance.take(pb.OUTPUT_STREAM_STDERR, b"abcdef") == b"abcd"
    assert allowance.take(pb.OUTPUT_STREAM_STDOUT, b"more") == b""
    result = pb.Result(verdict=pb.VERDICT_OK)
    allowance.apply(result)
    assert result.stdout_truncated and result.stderr_truncated
    assert result.verdict == pb.VERDICT_OUTPUT_LIMIT_EXCEEDED
    within = OutputAllowance(10)
    within.take(pb.OUTPUT_STREAM_STDOUT, b"0123456789")
    untouched = pb.Result(verdict=pb.VERDICT_OK)
    within.apply(untouched)
    assert untouched == pb.Result(verdict=pb.VERDICT_OK)


def test_usage_is_clamped_to_what_the_limits_allow() -> None:
    limits = pb.Limits(cpu_time_ms=2000, wall_time_ms=5000, memory_bytes=64 << 20)
    day_ms = 86_400_000
    result = pb.Result(usage=pb.Usage(cpu_time_ms=day_ms, wall_time_ms=day_ms,
                                              peak_memory_bytes=1 << 40))
    over = clamp_usage(result, limits)
    assert over == {"cpu_time_ms": day_ms, "wall_time_ms": day_ms,
                    "peak_memory_bytes": 1 << 40}
    assert result.usage.cpu_time_ms == STEPS_PER_JOB * 2000 + CPU_MARGIN_MS
    assert result.usage.peak_memory_bytes == 64 << 20
    honest = pb.Result(usage=pb.Usage(cpu_time_ms=2010, wall_time_ms=5100,
                                              peak_memory_bytes=1 << 20))
    assert clamp_usage(honest, limits) == {}
    assert honest.usage.cpu_time_ms == 2010
