from sluice.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RefusalReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUSAL_REASON_UNSPECIFIED: _ClassVar[RefusalReason]
    REFUSAL_REASON_FINISHED: _ClassVar[RefusalReason]
    REFUSAL_REASON_LEASED: _ClassVar[RefusalReason]
    REFUSAL_REASON_NOT_FOUND: _ClassVar[RefusalReason]
    REFUSAL_REASON_ORDERED: _ClassVar[RefusalReason]
    REFUSAL_REASON_EXHAUSTED: _ClassVar[RefusalReason]
    REFUSAL_REASON_THROTTLED: _ClassVar[RefusalReason]
REFUSAL_REASON_UNSPECIFIED: RefusalReason
REFUSAL_REASON_FINISHED: RefusalReason
REFUSAL_REASON_LEASED: RefusalReason
REFUSAL_REASON_NOT_FOUND: RefusalReason
REFUSAL_REASON_ORDERED: RefusalReason
REFUSAL_REASON_EXHAUSTED: RefusalReason
REFUSAL_REASON_THROTTLED: RefusalReason

class ReportDeadLetterRequest(_message.Message):
    __slots__ = ("job_id", "replays", "reason", "parked")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARKED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    replays: int
    reason: str
    parked: bool
    def __init__(self, job_id: _Optional[str] = ..., replays: _Optional[int] = ..., reason: _Optional[str] = ..., parked: _Optional[bool] = ...) -> None: ...

class ReportDeadLetterResponse(_message.Message):
    __slots__ = ("current", "state")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    current: bool
    state: _job_pb2.JobState
    def __init__(self, current: _Optional[bool] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "languages", "slots", "active_slots", "running_jobs", "draining")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    languages: _containers.RepeatedCompositeFieldContainer[_job_pb2.Language]
    slots: int
    active_slots: int
    running_jobs: int
    draining: bool
    def __init__(self, worker_id: _Optional[str] = ..., languages: _Optional[_Iterable[_Union[_job_pb2.Language, _Mapping]]] = ..., slots: _Optional[int] = ..., active_slots: _Optional[int] = ..., running_jobs: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("slots", "drain")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    slots: int
    drain: bool
    def __init__(self, slots: _Optional[int] = ..., drain: _Optional[bool] = ...) -> None: ...

class RunJobRequest(_message.Message):
    __slots__ = ("claim", "output", "heartbeat", "result", "test_case_result")
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TEST_CASE_RESULT_FIELD_NUMBER: _ClassVar[int]
    claim: Claim
    output: _job_pb2.OutputChunk
    heartbeat: Heartbeat
    result: _job_pb2.Result
    test_case_result: _job_pb2.TestCaseResult
    def __init__(self, claim: _Optional[_Union[Claim, _Mapping]] = ..., output: _Optional[_Union[_job_pb2.OutputChunk, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., result: _Optional[_Union[_job_pb2.Result, _Mapping]] = ..., test_case_result: _Optional[_Union[_job_pb2.TestCaseResult, _Mapping]] = ...) -> None: ...

class Claim(_message.Message):
    __slots__ = ("job_id", "worker_id", "redelivered", "replays", "replayed_by", "resume_attempt", "stdin_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_BY_FIELD_NUMBER: _ClassVar[int]
    RESUME_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STDIN_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    redelivered: bool
    replays: int
    replayed_by: str
    resume_attempt: int
    stdin_bytes: int
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., redelivered: _Optional[bool] = ..., replays: _Optional[int] = ..., replayed_by: _Optional[str] = ..., resume_attempt: _Optional[int] = ..., stdin_bytes: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunJobResponse(_message.Message):
    __slots__ = ("assignment", "refusal", "cancel", "result_accepted", "resumed", "stdin")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    RESULT_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    refusal: Refusal
    cancel: Cancel
    result_accepted: ResultAccepted
    resumed: Resumed
    stdin: Stdin
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., result_accepted: _Optional[_Union[ResultAccepted, _Mapping]] = ..., resumed: _Optional[_Union[Resumed, _Mapping]] = ..., stdin: _Optional[_Union[Stdin, _Mapping]] = ...) -> None: ...

class Stdin(_message.Message):
    __slots__ = ("offset", "data", "eof")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    eof: bool
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("job_id", "attempt", "language", "files", "stdin", "args", "limits", "heartbeat_interval_ms", "interactive", "test_cases", "comparison")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_FIELD_NUMBER: _ClassVar[int]
    TEST_CASES_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    language: str
    files: _containers.RepeatedCompositeFieldContainer[_job_pb2.File]
    stdin: bytes
    args: _containers.RepeatedScalarFieldContainer[str]
    limits: _job_pb2.Limits
    heartbeat_interval_ms: int
    interactive: bool
    test_cases: _containers.RepeatedCompositeFieldContainer[_job_pb2.TestCase]
    comparison: _job_pb2.Comparison
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., language: _Optional[str] = ..., files: _Optional[_Iterable[_Union[_job_pb2.File, _Mapping]]] = ..., stdin: _Optional[bytes] = ..., args: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[_job_pb2.Limits, _Mapping]] = ..., heartbeat_interval_ms: _Optional[int] = ..., interactive: _Optional[bool] = ..., test_cases: _Optional[_Iterable[_Union[_job_pb2.TestCase, _Mapping]]] = ..., comparison: _Optional[_Union[_job_pb2.Comparison, str]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: RefusalReason
    detail: str
    def __init__(self, reason: _Optional[_Union[RefusalReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResultAccepted(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Resumed(_message.Message):
    __slots__ = ("stdout_bytes", "stderr_bytes", "test_case_results")
    STDOUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEST_CASE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    stdout_bytes: int
    stderr_bytes: int
    test_case_results: int
    def __init__(self, stdout_bytes: _Optional[int] = ..., stderr_bytes: _Optional[int] = ..., test_case_results: _Optional[int] = ...) -> None: ...
