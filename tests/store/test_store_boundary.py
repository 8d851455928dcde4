"""The store speaks the platform's own types: nothing in control_plane/store/ imports the
sluice.v1 protobuf modules, directly or through what it imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import control_plane.store
from control_plane.job_messages import event_message, event_record, job_message
from control_plane.store.records import (
    EventRecord,
    JobRecord,
    JobState,
    OutputChunk,
    OutputStream,
    Refusal,
    ResultRecord,
    StateChange,
    Usage,
    Verdict,
)
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw

STORE = Path(control_plane.store.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_store_module_imports_sluice_v1() -> None:
    files = sorted(STORE.glob("*.py"))
    assert len(files) > 10
    offending = {path.name: sorted(name for name in imported_modules(path)
                                   if name == "sluice.v1" or name.startswith("sluice.v1."))
                 for path in files}
    assert {name: found for name, found in offending.items() if found} == {}


def test_importing_every_store_module_loads_no_sluice_v1_module() -> None:
    modules = [f"control_plane.store.{path.stem}" for path in sorted(STORE.glob("*.py"))
               if path.stem != "__init__"]
    probe = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sluice.v1'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=STORE.parent.parent)
    assert json.loads(loaded.stdout) == []


def test_the_records_enums_are_the_contracts_numbers() -> None:
    for enum, prefix, message_enum in ((JobState, "JOB_STATE_", pb.JobState),
                                       (Verdict, "VERDICT_", pb.Verdict),
                                       (OutputStream, "OUTPUT_STREAM_", pb.OutputStream),
                                       (Refusal, "REFUSAL_REASON_", gw.RefusalReason)):
        assert {prefix + m.name: m.value for m in enum} == dict(message_enum.items())


def test_records_and_messages_convert_both_ways_unchanged() -> None:
    job = JobRecord(id="j1", tenant_id="t", state=JobState.SUCCEEDED, language="python",
                    attempt=2, created_at=1.5, started_at=2.25, ended_at=3.0,
                    result=ResultRecord(verdict=Verdict.RUNTIME_ERROR, exit_code=3,
                                        stdout=b"out", stderr=b"err", stdout_truncated=True,
                                        usage=Usage(cpu_time_ms=5, peak_memory_bytes=7),
                                        detail="d"),
                    labels={"a": "b"}, idempotency_key="k", ordering_key="o",
                    state_reason="why")
    message = job_message(job)
    assert message.result.stdout == b"out" and message.state == pb.JOB_STATE_SUCCEEDED
    assert message.create_time.ToNanoseconds() == 1_500_000_000
    for event in (EventRecord("j1", 1, 123_456_789_012, state_change=StateChange(
                      JobState.RUNNING, 1, "r")),
                  EventRecord("j1", 2, 5, output=OutputChunk(OutputStream.STDERR, b"x")),
                  EventRecord("j1", 3, 6, result=job.result)):
        assert event_record(event_message(event)) == event
