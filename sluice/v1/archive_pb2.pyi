from sluice.v1 import admin_service_pb2 as _admin_service_pb2
from sluice.v1 import execution_service_pb2 as _execution_service_pb2
from sluice.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArchivedJob(_message.Message):
    __slots__ = ("tenant_id", "job", "events", "spec", "replays")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    job: _job_pb2.Job
    events: _containers.RepeatedCompositeFieldContainer[_job_pb2.JobEvent]
    spec: _execution_service_pb2.SubmitJobRequest
    replays: int
    def __init__(self, tenant_id: _Optional[str] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_job_pb2.JobEvent, _Mapping]]] = ..., spec: _Optional[_Union[_execution_service_pb2.SubmitJobRequest, _Mapping]] = ..., replays: _Optional[int] = ...) -> None: ...

class ArchivedAuditBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_admin_service_pb2.AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_admin_service_pb2.AuditEvent, _Mapping]]] = ...) -> None: ...
