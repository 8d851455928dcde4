"""Jobs and their events: the state machine that makes at-least-once delivery run jobs once.

    QUEUED ──claim──▶ RUNNING ──finish──▶ SUCCEEDED | FAILED | CANCELLED
      ▲                 │ lease lost (no heartbeat, worker gone)
      └──── requeue ────┘ while attempts remain, else DEAD_LETTERED

Only the holder of the current attempt may report; a claim for a job that is finished or
leased to a live worker is refused, so a redelivered message never runs a job twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control_plane.store import audit, quotas
from control_plane.store.backend import Backend, Tx
from control_plane.store.holds import ClaimHeld
from control_plane.store.records import (
    TERMINAL_STATES,
    Assignment,
    EventRecord,
    JobRecord,
    JobSpec,
    JobState,
    Limits,
    OutputChunk,
    OutputStream,
    RecordCodec,
    Refusal,
    ResultRecord,
    StateChange,
    TestCaseResult,
    Verdict,
)

_JOB_COLUMNS = (
    "id, tenant_id, state, language, attempt, spec, idempotency_key, ordering_key, labels,"
    " created_at, started_at, ended_at, result, state_reason"
)
# A job's output is stored once, as its output events. The Result row and the result event
# are stored without stdout/stderr (their truncation flags stay); reads put them back from
# the output events of the final attempt: those after the event that started it
# (jobs.attempt_seq) and before the result event. A job with a result has ended, and ended
# with two events, the result and then its terminal state change: its result event's seq
# is its last_seq - 1.
_OUTPUT_OF_ENDED_JOBS = (
    "SELECT e.job_id, e.event FROM job_events e JOIN jobs j ON j.id = e.job_id"
    " WHERE e.job_id IN ({ids}) AND j.result IS NOT NULL"
    " AND e.seq > j.attempt_seq AND e.seq < j.last_seq - 1 ORDER BY e.job_id, e.seq"
)
_CHUNK = 500  # ids per IN list: under SQLite's parameter limit


def new_job_id() -> str:
    """Time-ordered (so ids sort by creation, which paging relies on) and unguessable."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


PURGED = 2  # jobs.parked: purged from the parking lot by an operator

_ACTIONS = {
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


def state_for_verdict(verdict: Verdict) -> JobState:
    if verdict == Verdict.OK:
        return JobState.SUCCEEDED
    if verdict == Verdict.CANCELLED:
        return JobState.CANCELLED
    return JobState.FAILED


@dataclass(frozen=True)
class AttemptOutput:
    """What the final attempt's events hold of its Result: its output, and its test cases'
    results (each an event of its own)."""
    stdout: bytes = b""
    stderr: bytes = b""
    test_results: tuple[TestCaseResult, ...] = ()

    def into(self, result: ResultRecord) -> ResultRecord:
        return dataclasses.replace(result, stdout=self.stdout, stderr=self.stderr,
                                   test_results=self.test_results)


def _job_from_row(codec: RecordCodec, row: tuple, output: AttemptOutput = AttemptOutput()
                  ) -> JobRecord:
    """A row of _JOB_COLUMNS as a job; `output`: what its final attempt's events hold."""
    result = None
    if row[12] is not None:
        result = output.into(codec.decode_result(row[12]))
    return JobRecord(
        id=row[0], tenant_id=row[1], state=JobState(row[2]), language=row[3],
        attempt=row[4], idempotency_key=row[6], ordering_key=row[7],
        labels=json.loads(row[8]), limits=codec.decode_spec(row[5]).limits,
        created_at=row[9], started_at=row[10], ended_at=row[11], result=result,
        state_reason=row[13],
    )


def _collect_output(codec: RecordCodec, blobs: list[bytes]) -> AttemptOutput:
    """A run of stored events' output chunks and test case results, in order."""
    stdout, stderr = bytearray(), bytearray()
    cases: list[TestCaseResult] = []
    for blob in blobs:
        event = codec.decode_event(blob)
        if event.output is not None:
            target = stdout if event.output.stream == OutputStream.STDOUT else stderr
            target += event.output.data
        elif event.test_case_result is not None:
            cases.append(event.test_case_result)
    return AttemptOutput(bytes(stdout), bytes(stderr), tuple(cases))


def jobs_from_rows(conn: Tx, codec: RecordCodec, rows: list[tuple]) -> list[JobRecord]:
    """Rows of _JOB_COLUMNS as jobs, the output of those with a result read back in one
    query per 500 of them (a page of ListJobs is one), not one per job."""
    ended = [row[0] for row in rows if row[12] is not None]
    blobs: dict[str, list[bytes]] = {}
    for start in range(0, len(ended), _CHUNK):
        chunk = ended[start:start + _CHUNK]
        for job_id, blob in conn.execute(
                _OUTPUT_OF_ENDED_JOBS.format(ids=", ".join("?" * len(chunk))), chunk):
            blobs.setdefault(job_id, []).append(blob)
    return [_job_from_row(codec, row, _collect_output(codec, blobs.get(row[0], [])))
            for row in rows]


def events_with_output(conn: Tx, codec: RecordCodec, job_id: str, blobs: list[bytes]
                       ) -> list[EventRecord]:
    """Stored events of one job as WatchJob streams them: a result event with its
    stdout/stderr and test results put back (from the events before it, which an after_seq
    may have left out of this read)."""
    events = [codec.decode_event(blob) for blob in blobs]
    for i, event in enumerate(events):
        if event.result is not None:
            output = conn.execute(
                "SELECT event FROM job_events WHERE job_id = ? AND seq < ?"
                " AND seq > (SELECT attempt_seq FROM jobs WHERE id = ?) ORDER BY seq",
                (job_id, event.seq, job_id),
            ).fetchall()
            collected = _collect_output(codec, [row[0] for row in output])
            events[i] = dataclasses.replace(event, result=collected.into(event.result))
    return events


@dataclass
class ClaimOutcome:
    assignment: Assignment | None = None
    refusal: Refusal = Refusal.UNSPECIFIED
    detail: str = ""
    tenant_id: str = ""
    events: list[EventRecord] = field(default_factory=list)
    since_created_s: float = 0.0  # with an assignment: how long the job waited to start


@dataclass(frozen=True)
class StoredResult:
    """What finish() stored: the job's terminal state; the verdict, run time and the events
    it wrote only when this call stored it (a repeated report finds it stored already)."""
    state: JobState
    verdict: Verdict = Verdict.UNSPECIFIED
    run_s: float = 0.0
    events: list[EventRecord] = field(default_factory=list)


@dataclass(frozen=True)
class ResumedAttempt:
    """What resume() found: the attempt goes on (its lease renewed, with the bytes of each
    stream stored so far), its result is stored already (finished), or it is lost."""
    tenant_id: str = ""
    going_on: bool = False
    finished: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    test_case_results: int = 0
    limits: Limits = field(default_factory=Limits)
    interactive: bool = False
    runs: int = 1  # sandboxed runs of the program (its test cases, or the one)


@dataclass
class LeaseState:
    valid: bool
    cancel_requested: bool


@dataclass(frozen=True)
class ExpiredLease:
    job_id: str
    tenant_id: str
    attempt: int
    worker_id: str


# Inside claim's transaction, for a QUEUED job about to start: None lets it start; a
# ClaimHeld refuses the claim and the job waits, QUEUED (ordering key, running quota).
ClaimGateCheck = Callable[[Tx, str, str, float], ClaimHeld | None]
# Inside create's transaction, first: who submits, as (tenant_id, actor); raises to refuse
# (SubmitJob checks the caller's key there: one trip to the store, not two).
Submitter = Callable[[Tx], tuple[str, str]]
# Inside create's transaction, before the insert: quota checks, given (tenant_id, job_id,
# now); raises to refuse the job; returns the spec to store when it changed it (the
# tenant's ceilings lower its limits), else None.
SubmitCheck = Callable[[Tx, str, str, float], JobSpec | None]
# Whose jobs a read may see: a tenant id, or a check run first inside the read's transaction
# that returns it (GetJob and WatchJob check the caller's key there: one trip, not two).
Reader = str | Callable[[Tx], str]


def _next_seq_of_attempt(conn: Tx, job_id: str, attempt: int, owner: str) -> int | None:
    """The seq of the attempt's next event, taken by the statement that checks the attempt
    is current and the owner's; None when it is not (a superseded worker's late report)."""
    current = conn.execute(
        "UPDATE jobs SET last_seq = last_seq + 1 WHERE id = ? AND attempt = ?"
        " AND state = ? AND lease_owner = ? RETURNING last_seq",
        (job_id, attempt, JobState.RUNNING, owner),
    ).fetchone()
    return None if current is None else current[0]


def reader_tenant(conn: Tx, reader: Reader) -> str:
    return reader if isinstance(reader, str) else reader(conn)


class JobStore:
    def __init__(self, db: Backend, codec: RecordCodec, *,
                 claim_gate: ClaimGateCheck | None = None) -> None:
        self._db = db
        self._codec = codec
        self._claim_gate = claim_gate

    # Events ------------------------------------------------------------------------------

    def _append_event(self, conn: Tx, job_id: str, now: float, *,
                      seq: int | None = None, **event: object) -> EventRecord:
        """seq: one the caller took already (raising last_seq in its own UPDATE of the job,
        which saves a statement); otherwise the next one is taken here."""
        if seq is None:
            seq = conn.execute(
                "UPDATE jobs SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                (job_id,),
            ).fetchone()[0]
        record = EventRecord(job_id=job_id, seq=seq, time_ns=int(now * 1e9),
                             **event)  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO job_events (job_id, seq, event) VALUES (?, ?, ?)",
            (job_id, seq, self._codec.encode_event(record)),
        )
        return record

    def _change_state(self, conn: Tx, job_id: str, now: float, state: JobState,
                      attempt: int, reason: str = "", *, action: str, actor: str,
                      tenant_id: str | None = None, seq: int | None = None) -> EventRecord:
        """Every state change is an event for watchers and a record in the audit trail.
        tenant_id and seq, when the caller has them, save a statement each."""
        if tenant_id is None:
            tenant_id = conn.execute("SELECT tenant_id FROM jobs WHERE id = ?",
                                     (job_id,)).fetchone()[0]
        audit.record(conn, tenant_id=tenant_id, actor=actor, action=action, job_id=job_id,
                     now=now, attempt=attempt, **({"reason": reason} if reason else {}))
        return self._append_event(
            conn, job_id, now, seq=seq,
            state_change=StateChange(state=state, attempt=attempt, reason=reason),
        )

    async def events_after(self, job_id: str, after_seq: int, limit: int = 500
                           ) -> list[EventRecord]:
        def tx(conn: Tx) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after_seq, limit),
            )
            return events_with_output(conn, self._codec, job_id, [row[0] for row in rows])

        return await self._db.run(tx)

    async def watch_read(self, job_id: str, reader: Reader, after_seq: int, limit: int = 500
                         ) -> tuple[list[EventRecord], bool] | None:
        """(events after after_seq, whether the job has ended), read in one transaction so
        the two agree; None when the tenant has no such job. A watcher's whole read is one
        trip to the store."""

        def tx(conn: Tx) -> tuple[list[EventRecord], bool] | None:
            tenant_id = reader_tenant(conn, reader)
            row = conn.execute("SELECT tenant_id, state FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
            if row is None or row[0] != tenant_id:
                return None
            rows = conn.execute(
                "SELECT event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after_seq, limit),
            )
            return (events_with_output(conn, self._codec, job_id, [r[0] for r in rows]),
                    row[1] in TERMINAL_STATES)

        return await self._db.run(tx)

    async def last_seqs(self, job_ids: list[str]) -> dict[str, int]:
        """The seq of each job's latest event (jobs that do not exist are left out)."""

        def tx(conn: Tx) -> dict[str, int]:
            seqs: dict[str, int] = {}
            for start in range(0, len(job_ids), 500):  # under SQLite's parameter limit
                chunk = job_ids[start:start + 500]
                seqs.update(conn.execute(
                    f"SELECT id, last_seq FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall())
            return seqs

        return await self._db.run(tx)

    # Submission and reads ----------------------------------------------------------------

    async def create(self, submitter: Submitter, spec: JobSpec, *,
                     check: SubmitCheck | None = None) -> tuple[JobRecord, bool]:
        """Stores a QUEUED job. Returns (job, created); created is False when the tenant's
        idempotency key names an existing job, which comes back unchanged. `submitter`
        says whose job it is, `check` runs before the insert (quotas); both run in the
        same transaction and may raise to refuse."""
        now = time.time()
        job_id = new_job_id()

        def tx(conn: Tx) -> tuple[JobRecord, bool]:
            tenant_id, actor = submitter(conn)
            # One submission of a tenant at a time, across every control plane: its quota
            # counts, its idempotency keys and its ordering keys are read, then written.
            conn.dialect.lock_tenant(conn, tenant_id)
            if spec.idempotency_key:
                row = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant_id = ? AND idempotency_key = ?",
                    (tenant_id, spec.idempotency_key),
                ).fetchone()
                if row:
                    return jobs_from_rows(conn, self._codec, [row])[0], False
            stored = spec
            if check is not None:
                stored = check(conn, tenant_id, job_id, now) or spec
            # The row, its first event and the audit record, written directly rather than
            # through _change_state: a new job's state is known, nothing needs reading back.
            job = JobRecord(id=job_id, tenant_id=tenant_id, state=JobState.QUEUED,
                            language=stored.language, idempotency_key=stored.idempotency_key,
                            ordering_key=stored.ordering_key, labels=dict(stored.labels),
                            limits=stored.limits, created_at=now)
            conn.execute(
                "INSERT INTO jobs (id, tenant_id, state, language, spec, idempotency_key,"
                " ordering_key, labels, created_at, last_seq, seq, interactive)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, {conn.dialect.next_job_seq}, ?)",
                (job_id, tenant_id, JobState.QUEUED, stored.language,
                 self._codec.encode_spec(stored), stored.idempotency_key, stored.ordering_key,
                 json.dumps(dict(stored.labels), sort_keys=True), now,
                 1 if stored.interactive else 0),
            )
            event = EventRecord(job_id=job_id, seq=1, time_ns=int(now * 1e9),
                                state_change=StateChange(state=JobState.QUEUED))
            conn.execute("INSERT INTO job_events (job_id, seq, event) VALUES (?, 1, ?)",
                         (job_id, self._codec.encode_event(event)))
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="submitted",
                         job_id=job_id, now=now, attempt=0)
            return job, True

        return await self._db.run(tx)

    async def delete_unpublished(self, job_id: str) -> None:
        """Undoes create() when the broker would not take the job: nothing half-made stays."""

        def tx(conn: Tx) -> None:
            conn.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM job_stdin WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM audit_events WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id = ? AND state = ?",
                         (job_id, JobState.QUEUED))

        await self._db.run(tx)

    async def get(self, job_id: str, reader: Reader | None, *,
                  include_files: bool = False) -> JobRecord | None:
        """reader None reads any tenant's job (the platform's own calls)."""

        def tx(conn: Tx) -> JobRecord | None:
            tenant_id = None if reader is None else reader_tenant(conn, reader)
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None or (tenant_id is not None and row[1] != tenant_id):
                return None
            job = jobs_from_rows(conn, self._codec, [row])[0]
            if include_files:
                spec = conn.execute("SELECT spec FROM jobs WHERE id = ?", (job_id,)).fetchone()
                job = dataclasses.replace(
                    job, files=self._codec.decode_spec(bytes(spec[0])).files)
            return job

        return await self._db.run(tx)

    async def tenant_of(self, job_id: str) -> str | None:
        """The id of the job's tenant; None when there is no such job (operators' calls,
        which name a job of any tenant)."""

        def tx(conn: Tx) -> str | None:
            row = conn.execute("SELECT tenant_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return row[0] if row else None

        return await self._db.run(tx)

    async def list_for_tenant(self, tenant_id: str, *, states: list[int], labels: dict[str, str],
                   created_after: float | None, created_before: float | None,
                   before_id: str | None, limit: int) -> list[JobRecord]:
        clauses = ["tenant_id = ?"]
        params: list[object] = [tenant_id]
        if states:
            clauses.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        for key, value in labels.items():
            clause, values = self._db.dialect.label_equals(key, value)
            clauses.append(clause)
            params.extend(values)
        if created_after is not None:
            clauses.append("created_at >= ?")
            params.append(created_after)
        if created_before is not None:
            clauses.append("created_at < ?")
            params.append(created_before)
        if before_id:
            # Pages follow the order of submission (jobs.seq); the page token is a job id.
            clauses.append("seq < coalesce((SELECT seq FROM jobs WHERE id = ?), 0)")
            params.append(before_id)
        sql = (f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)}"
               " ORDER BY seq DESC LIMIT ?")
        params.append(limit)

        def tx(conn: Tx) -> list[JobRecord]:
            return jobs_from_rows(conn, self._codec, conn.execute(sql, params).fetchall())

        return await self._db.run(tx)

    # The worker's side ---------------------------------------------------------------------

    async def claim(self, job_id: str, owner: str, *, replays: int, lease_s: float,
                    max_attempts: int, heartbeat_interval_ms: int,
                    replayed_by: str = "recovery") -> ClaimOutcome:
        """owner: the worker identity (its token's name) that will hold the lease; only it
        may report on the attempt."""
        now = time.time()

        def tx(conn: Tx) -> ClaimOutcome:
            row = conn.execute(
                "SELECT tenant_id, state, attempt, replays, lease_expires_at, spec, lease_owner,"
                f" created_at FROM jobs WHERE id = ?{conn.dialect.for_update}",
                (job_id,),
            ).fetchone()
            if row is None:
                return ClaimOutcome(refusal=Refusal.NOT_FOUND,
                                    detail=f"no job {job_id}")
            (tenant_id, state, attempt, job_replays, lease_expires_at, spec_bytes,
             lost_owner, created_at) = row
            events: list[EventRecord] = []
            if replays < job_replays:
                # A copy from before the job was replayed; the replay's own message runs it.
                return ClaimOutcome(refusal=Refusal.FINISHED, tenant_id=tenant_id,
                                    detail=f"stale message (replay {replays} < {job_replays})")
            if state == JobState.DEAD_LETTERED and replays > job_replays:
                # Replayed (by the recovery service or an operator): a fresh budget of
                # attempts.
                conn.execute(
                    "UPDATE jobs SET state = ?, attempt = 0, replays = ?, state_reason = '',"
                    " parked = 0, ended_at = NULL WHERE id = ?",
                    (JobState.QUEUED, replays, job_id),
                )
                events.append(self._change_state(
                    conn, job_id, now, JobState.QUEUED, 0,
                    f"replayed from the dead letters (replay {replays})",
                    action="replayed", actor=replayed_by))
                state, attempt = JobState.QUEUED, 0
            if state in TERMINAL_STATES:
                return ClaimOutcome(refusal=Refusal.FINISHED, tenant_id=tenant_id,
                                    detail=f"job is JOB_STATE_{JobState(state).name}",
                                    events=events)
            if state == JobState.RUNNING and (lease_expires_at or 0) > now:
                return ClaimOutcome(refusal=Refusal.LEASED, tenant_id=tenant_id,
                                    detail=f"attempt {attempt} holds a live lease")
            if state == JobState.RUNNING and attempt < max_attempts:
                # The attempt's lease ran out (its worker went) and this redelivery came
                # before the lease reaper: record the lost attempt as the reaper would, so
                # the trail shows the retry whichever of the two got here first.
                events.append(self._requeue_lost_attempt(conn, job_id, attempt, lost_owner,
                                                         now))
                state = JobState.QUEUED
            if attempt >= max_attempts:
                reason = (f"the platform failed to run the job {attempt} times "
                          f"(limit {max_attempts}); dead-lettered")
                conn.execute(
                    "UPDATE jobs SET state = ?, ended_at = ?, lease_owner = NULL,"
                    " lease_expires_at = NULL, state_reason = ? WHERE id = ?",
                    (JobState.DEAD_LETTERED, now, reason, job_id),
                )
                events.append(self._change_state(
                    conn, job_id, now, JobState.DEAD_LETTERED, attempt, reason,
                    action="dead_lettered", actor=f"worker:{owner}"))
                return ClaimOutcome(refusal=Refusal.EXHAUSTED, tenant_id=tenant_id,
                                    detail=reason, events=events)
            if state == JobState.QUEUED and self._claim_gate is not None:
                held = self._claim_gate(conn, job_id, tenant_id, now)
                if held is not None:
                    return ClaimOutcome(refusal=held.refusal, tenant_id=tenant_id,
                                        detail=held.detail, events=events)
            attempt += 1
            # The started event's seq is taken in the same statement: SET reads the old
            # last_seq, RETURNING gives the new one.
            seq = conn.execute(
                "UPDATE jobs SET state = ?, attempt = ?, started_at = ?, lease_owner = ?,"
                " lease_expires_at = ?, state_reason = '', last_seq = last_seq + 1,"
                " attempt_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
                (JobState.RUNNING, attempt, now, owner, now + lease_s, job_id),
            ).fetchone()[0]
            events.append(self._change_state(
                conn, job_id, now, JobState.RUNNING, attempt, action="started",
                actor=f"worker:{owner}", tenant_id=tenant_id, seq=seq))
            assignment = Assignment(job_id=job_id, attempt=attempt,
                                    spec=self._codec.decode_spec(spec_bytes),
                                    heartbeat_interval_ms=heartbeat_interval_ms)
            return ClaimOutcome(assignment=assignment, tenant_id=tenant_id, events=events,
                                since_created_s=now - created_at)

        return await self._db.run(tx)

    # Every report below names the attempt and the identity reporting it; each statement is
    # guarded by both, so a report for another identity's lease changes nothing.

    async def heartbeat(self, job_id: str, attempt: int, owner: str, lease_s: float
                        ) -> LeaseState:
        now = time.time()

        def tx(conn: Tx) -> LeaseState:
            row = conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND state = ?"
                " AND lease_owner = ? RETURNING cancel_requested",
                (now + lease_s, job_id, attempt, JobState.RUNNING, owner),
            ).fetchone()
            if row is None:
                return LeaseState(valid=False, cancel_requested=False)
            return LeaseState(valid=True, cancel_requested=bool(row[0]))

        return await self._db.run(tx)

    async def append_output(self, job_id: str, attempt: int, owner: str,
                            stream: OutputStream, data: bytes) -> EventRecord | None:
        """None when the attempt is no longer current (a superseded worker's late report) or
        not the owner's."""
        now = time.time()

        def tx(conn: Tx) -> EventRecord | None:
            seq = _next_seq_of_attempt(conn, job_id, attempt, owner)
            if seq is None:
                return None
            return self._append_event(conn, job_id, now, seq=seq,
                                      output=OutputChunk(stream=stream, data=data))

        return await self._db.run(tx)

    async def append_test_case(self, job_id: str, attempt: int, owner: str,
                               case: TestCaseResult) -> EventRecord | None:
        """A test case's result as an event of its own; None as for append_output."""
        now = time.time()

        def tx(conn: Tx) -> EventRecord | None:
            seq = _next_seq_of_attempt(conn, job_id, attempt, owner)
            if seq is None:
                return None
            return self._append_event(conn, job_id, now, seq=seq, test_case_result=case)

        return await self._db.run(tx)

    async def finish(self, job_id: str, attempt: int, owner: str, result: ResultRecord
                     ) -> StoredResult | None:
        """Stores the attempt's result; None when the attempt is not current or not the
        owner's. Reporting the same attempt's result again is answered as stored, with no
        events, so a retried report is safe. The caller has checked the result against the
        job's limits (control_plane/report_checks.py): its CPU time is charged as it is."""
        now = time.time()

        def tx(conn: Tx) -> StoredResult | None:
            row = conn.execute(
                "SELECT state, attempt, attempt_seq, cancel_requested, tenant_id, lease_owner"
                f" FROM jobs WHERE id = ?{conn.dialect.for_update}",
                (job_id,),
            ).fetchone()
            if row is None or row[1] != attempt:
                return None
            state, _, attempt_seq, cancel_requested, tenant_id, lease_owner = row
            if state != JobState.RUNNING:
                return StoredResult(JobState(state)) if state in TERMINAL_STATES else None
            if lease_owner != owner:
                return None
            blobs = [row[0] for row in conn.execute(
                "SELECT event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                (job_id, attempt_seq),
            )]
            # Output and test cases as the gateway stored them (checked against the job's
            # output limit), whatever the worker's result says.
            stored = _collect_output(self._codec, blobs).into(result)
            if cancel_requested and stored.verdict != Verdict.OK:
                stored = dataclasses.replace(stored, verdict=Verdict.CANCELLED)
            new_state = state_for_verdict(stored.verdict)
            # Output and test case results are stored once, as their events: the row and
            # the result event leave them out. Two events (the result, then the state
            # change): both seqs taken by the statement that ends the job.
            without_output = AttemptOutput().into(stored)
            ended = conn.execute(
                "UPDATE jobs SET state = ?, ended_at = ?, result = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, last_seq = last_seq + 2 WHERE id = ?"
                " AND attempt = ? AND state = ? AND lease_owner = ?"
                " RETURNING last_seq, started_at",
                (new_state, now, self._codec.encode_result(without_output), job_id, attempt,
                 JobState.RUNNING, owner),
            ).fetchone()
            if ended is None:
                return None
            seq, started_at = ended
            actor = f"worker:{owner}"
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="output_finished",
                         job_id=job_id, now=now, stdout_bytes=len(stored.stdout),
                         stderr_bytes=len(stored.stderr))
            quotas.record_cpu(conn, tenant_id, now, stored.usage.cpu_time_ms)
            # Watchers of this process get the result event as a read would give it.
            self._append_event(conn, job_id, now, seq=seq - 1, result=without_output)
            events = [
                EventRecord(job_id=job_id, seq=seq - 1, time_ns=int(now * 1e9), result=stored),
                self._change_state(conn, job_id, now, new_state, attempt,
                                   action=_ACTIONS[new_state], actor=actor,
                                   tenant_id=tenant_id, seq=seq),
            ]
            return StoredResult(new_state, stored.verdict, now - (started_at or now), events)

        return await self._db.run(tx)

    def _requeue_lost_attempt(self, conn: Tx, job_id: str, attempt: int,
                              worker_id: str | None, now: float) -> EventRecord:
        """A RUNNING attempt whose lease ran out goes back to QUEUED, as `retried`: the
        lease reaper and a redelivered claim, whichever notices first."""
        reason = f"attempt {attempt} lost (worker {worker_id} stopped reporting)"
        conn.execute(
            "UPDATE jobs SET state = ?, state_reason = ?, lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = ?",
            (JobState.QUEUED, reason, job_id),
        )
        return self._change_state(conn, job_id, now, JobState.QUEUED, attempt, reason,
                                  action="retried", actor="platform")

    async def drop_lease(self, job_id: str, attempt: int, owner: str) -> None:
        """The worker's stream ended without a result: let the next delivery take over now
        rather than after the lease would have run out."""

        def tx(conn: Tx) -> None:
            conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND state = ?"
                " AND lease_owner = ?",
                (time.time(), job_id, attempt, JobState.RUNNING, owner),
            )

        await self._db.run(tx)

    async def resume(self, job_id: str, worker_id: str, attempt: int, lease_s: float
                     ) -> ResumedAttempt:
        """A worker's attempt goes on over a new stream (the one it had broke with the
        gateway that held it): only while the attempt is current and leased to this worker.
        The lease is renewed in the same statement that checks it."""
        now = time.time()

        def tx(conn: Tx) -> ResumedAttempt:
            row = conn.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND state = ?"
                " AND lease_owner = ? RETURNING tenant_id, attempt_seq, spec",
                (now + lease_s, job_id, attempt, JobState.RUNNING, worker_id),
            ).fetchone()
            if row is None:
                ended = conn.execute(
                    "SELECT tenant_id, state FROM jobs WHERE id = ? AND attempt = ?",
                    (job_id, attempt),
                ).fetchone()
                # Ended by this attempt's own result (stored before its stream broke):
                # nothing is lost. Otherwise another attempt has, or will have, the job.
                finished = ended is not None and ended[1] in TERMINAL_STATES
                return ResumedAttempt(tenant_id=ended[0] if ended else "", finished=finished)
            tenant_id, attempt_seq, spec_blob = row
            blobs = [row[0] for row in conn.execute(
                "SELECT event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                (job_id, attempt_seq),
            ).fetchall()]
            held = _collect_output(self._codec, blobs)
            spec = self._codec.decode_spec(spec_blob)
            return ResumedAttempt(tenant_id=tenant_id, going_on=True,
                                  stdout_bytes=len(held.stdout), stderr_bytes=len(held.stderr),
                                  test_case_results=len(held.test_results), limits=spec.limits,
                                  interactive=spec.interactive,
                                  runs=max(1, len(spec.test_cases)))

        return await self._db.run(tx)

    async def expired_leases(self) -> list[ExpiredLease]:
        """RUNNING jobs whose worker stopped reporting. Nothing changes here: the caller
        publishes the job again first and then calls release_lost_attempt, so a job is never
        QUEUED without a message to run it."""
        now = time.time()

        def tx(conn: Tx) -> list[ExpiredLease]:
            rows = conn.execute(
                "SELECT id, tenant_id, attempt, lease_owner FROM jobs"
                " WHERE state = ? AND lease_expires_at < ?",
                (JobState.RUNNING, now),
            )
            return [ExpiredLease(*row) for row in rows]

        return await self._db.run(tx)

    async def release_lost_attempt(self, lost: ExpiredLease, *, dead_reason: str | None
                                   ) -> list[EventRecord]:
        """Back to QUEUED, or DEAD_LETTERED with dead_reason; no-op if the attempt moved on."""
        now = time.time()

        def tx(conn: Tx) -> list[EventRecord]:
            row = conn.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND state = ?"
                f" AND lease_expires_at < ?{conn.dialect.for_update}",
                (lost.job_id, lost.attempt, JobState.RUNNING, now),
            ).fetchone()
            if row is None:
                return []
            if dead_reason is not None:
                conn.execute(
                    "UPDATE jobs SET state = ?, ended_at = ?, state_reason = ?,"
                    " lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                    (JobState.DEAD_LETTERED, now, dead_reason, lost.job_id),
                )
                return [self._change_state(conn, lost.job_id, now, JobState.DEAD_LETTERED,
                                           lost.attempt, dead_reason, action="dead_lettered",
                                           actor="platform")]
            return [self._requeue_lost_attempt(conn, lost.job_id, lost.attempt,
                                               lost.worker_id, now)]

        return await self._db.run(tx)

    async def record_dead_letter(self, job_id: str, *, replays: int, reason: str,
                                 parked: bool, actor: str
                                 ) -> tuple[JobState, bool, list[EventRecord]]:
        """The recovery service found this job's message among the dead letters (or parked
        it). Returns (state, current, events); current is False for a stale letter: the job
        finished, was replayed since, or runs under a live lease, and the letter is dropped."""
        now = time.time()

        def tx(conn: Tx) -> tuple[JobState, bool, list[EventRecord]]:
            row = conn.execute(
                "SELECT state, attempt, replays, lease_expires_at, parked FROM jobs WHERE id = ?"
                + conn.dialect.for_update,
                (job_id,),
            ).fetchone()
            if row is None:
                return JobState.UNSPECIFIED, False, []
            state, attempt, job_replays, lease_expires_at, was_parked = row
            live = state == JobState.RUNNING and (lease_expires_at or 0) > now
            finished = state in TERMINAL_STATES and state != JobState.DEAD_LETTERED
            if replays != job_replays or live or finished:
                return JobState(state), False, []
            events: list[EventRecord] = []
            if state != JobState.DEAD_LETTERED or bool(was_parked) != parked:
                # Guarded as read: never over a live lease (a worker's, whoever reports).
                changed = conn.execute(
                    "UPDATE jobs SET state = ?, ended_at = ?, state_reason = ?, parked = ?,"
                    " lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND state = ?"
                    " AND replays = ? AND NOT (state = ? AND COALESCE(lease_expires_at, 0) > ?)"
                    " RETURNING id",
                    (JobState.DEAD_LETTERED, now, reason, int(parked), job_id, state,
                     replays, JobState.RUNNING, now),
                ).fetchone()
                if changed is None:
                    return JobState(state), False, []
                events.append(self._change_state(
                    conn, job_id, now, JobState.DEAD_LETTERED, attempt, reason,
                    action="parked" if parked else "dead_lettered", actor=actor))
            return JobState.DEAD_LETTERED, True, events

        return await self._db.run(tx)

    async def dead_lettered(self, *, parked: bool | None, tenant_id: str = "",
                            job_ids: list[str] | None = None, after_id: str = "",
                            limit: int = 1000) -> list[tuple[str, str, int, str, bool]]:
        """(job id, tenant, replays, reason, parked) of dead-lettered jobs, oldest first
        (in submission order), those after `after_id` only when it is set."""
        clauses, params = ["state = ?"], [JobState.DEAD_LETTERED]
        if after_id:
            clauses.append("seq > coalesce((SELECT seq FROM jobs WHERE id = ?), 0)")
            params.append(after_id)
        if parked is None:
            clauses.append(f"parked != {PURGED}")
        else:
            clauses.append("parked = ?")
            params.append(int(parked))
        if tenant_id:
            clauses.append("tenant_id = ?")
            params.append(tenant_id)
        if job_ids:
            clauses.append(f"id IN ({', '.join('?' * len(job_ids))})")
            params.extend(job_ids)
        sql = (f"SELECT id, tenant_id, replays, state_reason, parked FROM jobs"
               f" WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT ?")
        params.append(limit)

        def tx(conn: Tx) -> list[tuple[str, str, int, str, bool]]:
            return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in conn.execute(sql, params)]

        return await self._db.run(tx)

    async def purge_parked(self, *, actor: str) -> int:
        """The parked jobs stay DEAD_LETTERED for good and leave the dead-letter lists."""
        now = time.time()

        def tx(conn: Tx) -> int:
            rows = conn.execute(
                f"UPDATE jobs SET parked = {PURGED} WHERE state = ? AND parked = 1"
                " RETURNING id, tenant_id",
                (JobState.DEAD_LETTERED,),
            ).fetchall()
            for job_id, tenant_id in rows:
                audit.record(conn, tenant_id=tenant_id, actor=actor, action="purged",
                             job_id=job_id, now=now)
            return len(rows)

        return await self._db.run(tx)

    async def requeue_failed_attempt(self, job_id: str, attempt: int, owner: str,
                                     reason: str) -> list[EventRecord]:
        """The platform, not the program, failed this attempt (the worker reported
        INTERNAL_ERROR): back to QUEUED; the caller has already published the retry."""
        now = time.time()

        def tx(conn: Tx) -> list[EventRecord]:
            updated = conn.execute(
                "UPDATE jobs SET state = ?, state_reason = ?, lease_owner = NULL,"
                " lease_expires_at = NULL WHERE id = ? AND attempt = ? AND state = ?"
                " AND lease_owner = ? RETURNING id",
                (JobState.QUEUED, reason, job_id, attempt, JobState.RUNNING, owner),
            ).fetchone()
            if updated is None:
                return []
            return [self._change_state(conn, job_id, now, JobState.QUEUED, attempt, reason,
                                       action="retried", actor=f"worker:{owner}")]

        return await self._db.run(tx)

    # Cancellation --------------------------------------------------------------------------

    async def cancel(self, job_id: str, tenant_id: str, *, actor: str
                     ) -> tuple[JobRecord, list[EventRecord]] | None:
        """A QUEUED job ends CANCELLED here; a RUNNING one is marked, and the gateway tells
        its worker to kill it. None: no such job for this tenant."""
        now = time.time()

        def tx(conn: Tx) -> tuple[JobRecord, list[EventRecord]] | None:
            row = conn.execute(
                f"SELECT tenant_id, state, attempt FROM jobs WHERE id = ?{conn.dialect.for_update}",
                (job_id,),
            ).fetchone()
            if row is None or row[0] != tenant_id:
                return None
            _, state, attempt = row
            events: list[EventRecord] = []
            if state == JobState.QUEUED:
                result = ResultRecord(verdict=Verdict.CANCELLED,
                                   detail="cancelled before it started")
                # attempt_seq moves to the last event: the output of an attempt lost before
                # is not this result's (it has none).
                conn.execute(
                    "UPDATE jobs SET state = ?, ended_at = ?, result = ?, cancel_requested = 1,"
                    " attempt_seq = last_seq WHERE id = ?",
                    (JobState.CANCELLED, now, self._codec.encode_result(result), job_id),
                )
                events.append(self._append_event(conn, job_id, now, result=result))
                events.append(self._change_state(
                    conn, job_id, now, JobState.CANCELLED, attempt, "cancelled by caller",
                    action="cancelled", actor=actor))
            elif state == JobState.RUNNING:
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                audit.record(conn, tenant_id=tenant_id, actor=actor, action="cancel_requested",
                             job_id=job_id, now=now, attempt=attempt)
            job_row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return jobs_from_rows(conn, self._codec, [job_row])[0], events

        return await self._db.run(tx)
