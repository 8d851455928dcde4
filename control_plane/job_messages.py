"""The one place where the store's records (control_plane/store/records.py) become
sluice.v1 messages and back: for the API, the worker gateway, the archive, and the bytes
the store keeps (CODEC: the records as the same messages, so rows written before records
existed read the same).

A field the API gains is one line in each direction here, and one in records.py.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from control_plane.store.records import (
    Assignment,
    Comparison,
    EventRecord,
    JobRecord,
    JobSnapshot,
    JobSpec,
    JobState,
    LanguageRecord,
    Limits,
    OutputChunk,
    OutputStream,
    ResultRecord,
    SourceFile,
    StateChange,
    TestCase,
    TestCaseResult,
    Usage,
    Verdict,
)
from sluice.v1 import archive_pb2 as arc
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def limits_message(limits: Limits) -> pb.Limits:
    return pb.Limits(wall_time_ms=limits.wall_time_ms, cpu_time_ms=limits.cpu_time_ms,
                     memory_bytes=limits.memory_bytes, max_processes=limits.max_processes,
                     max_output_bytes=limits.max_output_bytes)


def limits_record(message: pb.Limits) -> Limits:
    return Limits(wall_time_ms=message.wall_time_ms, cpu_time_ms=message.cpu_time_ms,
                  memory_bytes=message.memory_bytes, max_processes=message.max_processes,
                  max_output_bytes=message.max_output_bytes)


def _usage_message(usage: Usage) -> pb.Usage | None:
    # A result nobody measured (cancelled before it started) has no usage, as it had none
    # before it was a record.
    if usage == Usage():
        return None
    return pb.Usage(cpu_time_ms=usage.cpu_time_ms, wall_time_ms=usage.wall_time_ms,
                    peak_memory_bytes=usage.peak_memory_bytes)


def _usage_record(usage: pb.Usage) -> Usage:
    return Usage(cpu_time_ms=usage.cpu_time_ms, wall_time_ms=usage.wall_time_ms,
                 peak_memory_bytes=usage.peak_memory_bytes)


def test_case_result_message(case: TestCaseResult) -> pb.TestCaseResult:
    return pb.TestCaseResult(
        name=case.name, verdict=case.verdict, exit_code=case.exit_code, signal=case.signal,
        stdout=case.stdout, stderr=case.stderr, stdout_truncated=case.stdout_truncated,
        stderr_truncated=case.stderr_truncated, usage=_usage_message(case.usage))


def test_case_result_record(message: pb.TestCaseResult) -> TestCaseResult:
    return TestCaseResult(
        name=message.name, verdict=Verdict(message.verdict), exit_code=message.exit_code,
        signal=message.signal, stdout=message.stdout, stderr=message.stderr,
        stdout_truncated=message.stdout_truncated, stderr_truncated=message.stderr_truncated,
        usage=_usage_record(message.usage))


def result_message(result: ResultRecord) -> pb.Result:
    return pb.Result(
        verdict=result.verdict, exit_code=result.exit_code, signal=result.signal,
        stdout=result.stdout, stderr=result.stderr,
        stdout_truncated=result.stdout_truncated, stderr_truncated=result.stderr_truncated,
        compile_output=result.compile_output, usage=_usage_message(result.usage),
        detail=result.detail,
        test_results=[test_case_result_message(case) for case in result.test_results])


def result_record(message: pb.Result) -> ResultRecord:
    return ResultRecord(
        verdict=Verdict(message.verdict), exit_code=message.exit_code, signal=message.signal,
        stdout=message.stdout, stderr=message.stderr,
        stdout_truncated=message.stdout_truncated, stderr_truncated=message.stderr_truncated,
        compile_output=message.compile_output, usage=_usage_record(message.usage),
        detail=message.detail,
        test_results=tuple(test_case_result_record(case) for case in message.test_results))


def _test_case_message(case: TestCase) -> pb.TestCase:
    message = pb.TestCase(name=case.name, stdin=case.stdin, args=list(case.args))
    if case.expected_stdout is not None:
        message.expected_stdout = case.expected_stdout
    return message


def _test_case_record(message: pb.TestCase) -> TestCase:
    return TestCase(name=message.name, stdin=message.stdin, args=tuple(message.args),
                    expected_stdout=(message.expected_stdout
                                     if message.HasField("expected_stdout") else None))


def spec_message(spec: JobSpec) -> api.SubmitJobRequest:
    return api.SubmitJobRequest(
        language=spec.language,
        files=[pb.File(name=f.name, content=f.content) for f in spec.files],
        stdin=spec.stdin, args=list(spec.args), limits=limits_message(spec.limits),
        idempotency_key=spec.idempotency_key, ordering_key=spec.ordering_key,
        labels=dict(spec.labels), interactive=spec.interactive,
        test_cases=[_test_case_message(case) for case in spec.test_cases],
        comparison=spec.comparison)


def spec_record(message: api.SubmitJobRequest) -> JobSpec:
    return JobSpec(
        language=message.language,
        files=tuple(SourceFile(name=f.name, content=f.content) for f in message.files),
        stdin=message.stdin, args=tuple(message.args), limits=limits_record(message.limits),
        idempotency_key=message.idempotency_key, ordering_key=message.ordering_key,
        labels=dict(message.labels), interactive=message.interactive,
        test_cases=tuple(_test_case_record(case) for case in message.test_cases),
        comparison=Comparison(message.comparison))


def job_message(job: JobRecord) -> pb.Job:
    message = pb.Job(
        id=job.id, state=job.state, language=job.language, attempt=job.attempt,
        idempotency_key=job.idempotency_key, ordering_key=job.ordering_key,
        labels=dict(job.labels), limits=limits_message(job.limits),
        create_time=_timestamp(job.created_at), start_time=_timestamp(job.started_at),
        end_time=_timestamp(job.ended_at), state_reason=job.state_reason,
        files=[pb.File(name=f.name, content=f.content) for f in job.files])
    if job.result is not None:
        message.result.CopyFrom(result_message(job.result))
    return message


def event_message(event: EventRecord) -> pb.JobEvent:
    message = pb.JobEvent(job_id=event.job_id, seq=event.seq)
    message.time.FromNanoseconds(event.time_ns)
    if event.state_change is not None:
        change = event.state_change
        message.state_change.CopyFrom(pb.StateChange(state=change.state, attempt=change.attempt,
                                                     reason=change.reason))
    elif event.output is not None:
        message.output.CopyFrom(pb.OutputChunk(stream=event.output.stream,
                                               data=event.output.data))
    elif event.result is not None:
        message.result.CopyFrom(result_message(event.result))
    elif event.test_case_result is not None:
        message.test_case_result.CopyFrom(test_case_result_message(event.test_case_result))
    return message


def event_record(message: pb.JobEvent) -> EventRecord:
    kind = message.WhichOneof("event")
    return EventRecord(
        job_id=message.job_id, seq=message.seq, time_ns=message.time.ToNanoseconds(),
        state_change=StateChange(state=JobState(message.state_change.state),
                                 attempt=message.state_change.attempt,
                                 reason=message.state_change.reason)
        if kind == "state_change" else None,
        output=OutputChunk(stream=OutputStream(message.output.stream),
                           data=message.output.data) if kind == "output" else None,
        result=result_record(message.result) if kind == "result" else None,
        test_case_result=(test_case_result_record(message.test_case_result)
                          if kind == "test_case_result" else None))


def language_message(language: LanguageRecord) -> pb.Language:
    return pb.Language(id=language.id, name=language.name, version=language.version,
                       file_name=language.file_name, compiled=language.compiled)


def language_record(message: pb.Language) -> LanguageRecord:
    return LanguageRecord(id=message.id, name=message.name, version=message.version,
                          file_name=message.file_name, compiled=message.compiled)


def assignment_message(assignment: Assignment) -> gw.Assignment:
    spec = spec_message(assignment.spec)
    return gw.Assignment(job_id=assignment.job_id, attempt=assignment.attempt,
                         language=spec.language, files=spec.files, stdin=spec.stdin,
                         args=spec.args, limits=spec.limits,
                         heartbeat_interval_ms=assignment.heartbeat_interval_ms,
                         interactive=spec.interactive, test_cases=spec.test_cases,
                         comparison=spec.comparison)


def archived_job(snapshot: JobSnapshot) -> arc.ArchivedJob:
    """The archive's object for a finished job (docs/operations.md)."""
    return arc.ArchivedJob(tenant_id=snapshot.tenant_id, job=job_message(snapshot.job),
                           events=[event_message(e) for e in snapshot.events],
                           spec=spec_message(snapshot.spec), replays=snapshot.replays)


class ProtobufCodec:
    """The store's blobs as the sluice.v1 messages."""

    def encode_event(self, event: EventRecord) -> bytes:
        return event_message(event).SerializeToString()

    def decode_event(self, blob: bytes) -> EventRecord:
        return event_record(pb.JobEvent.FromString(blob))

    def encode_result(self, result: ResultRecord) -> bytes:
        return result_message(result).SerializeToString()

    def decode_result(self, blob: bytes) -> ResultRecord:
        return result_record(pb.Result.FromString(blob))

    def encode_spec(self, spec: JobSpec) -> bytes:
        return spec_message(spec).SerializeToString()

    def decode_spec(self, blob: bytes) -> JobSpec:
        return spec_record(api.SubmitJobRequest.FromString(blob))

    def encode_language(self, language: LanguageRecord) -> bytes:
        return language_message(language).SerializeToString()

    def decode_language(self, blob: bytes) -> LanguageRecord:
        return language_record(pb.Language.FromString(blob))


CODEC = ProtobufCodec()
