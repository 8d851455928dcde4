"""Checks a SubmitJobRequest and fills in default limits; every refusal names the field."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sluice.message_limits import (
    MAX_ARG_CHARS,
    MAX_FILE_NAME_CHARS,
    MAX_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS,
    MAX_TEST_CASE_NAME_CHARS,
)
from sluice.settings import Settings
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb

# One pattern for label keys wherever they arrive (SubmitJob's labels, ListJobs' filter).
LABEL_KEY_PATTERN = r"[a-z0-9]([a-z0-9_.\-/]{0,61}[a-z0-9])?"
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
OPTION_PREFIXES = ("-", "@")  # what compilers and interpreters take for an option


class InvalidRequest(ValueError):
    """The message is one line a caller can act on."""


@dataclass(frozen=True)
class LimitRule:
    field: str
    default: int
    cap: int


def limit_rules(settings: Settings) -> list[LimitRule]:
    return [
        LimitRule("wall_time_ms", settings.default_wall_time_ms, settings.max_wall_time_ms),
        LimitRule("cpu_time_ms", settings.default_cpu_time_ms, settings.max_cpu_time_ms),
        LimitRule("memory_bytes", settings.default_memory_bytes, settings.max_memory_bytes),
        LimitRule("max_processes", settings.default_max_processes, settings.max_max_processes),
        LimitRule("max_output_bytes", settings.default_max_output_bytes,
                  settings.max_max_output_bytes),
    ]


def resolve_limits(requested: pb.Limits, rules: list[LimitRule]) -> pb.Limits:
    resolved = pb.Limits()
    for rule in rules:
        value = getattr(requested, rule.field)
        if value > rule.cap:
            raise InvalidRequest(f"limits.{rule.field} is {value}, over the cap of {rule.cap}")
        setattr(resolved, rule.field, value or rule.default)
    return resolved


def validate_labels(labels: Mapping[str, str], settings: Settings) -> None:
    """SubmitJob's labels and ListJobs' label filter: the same keys, the same caps."""
    if len(labels) > settings.max_labels:
        raise InvalidRequest(f"labels has {len(labels)} entries, over the cap of "
                             f"{settings.max_labels}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidRequest(
                f"labels key {key!r} must match {LABEL_KEY_PATTERN} (1-63 characters of "
                "a-z 0-9 _ . - /, starting and ending with a letter or digit)")
        if len(value) > MAX_LABEL_VALUE_CHARS or "\0" in value:
            raise InvalidRequest(f"labels[{key!r}] is over the cap of {MAX_LABEL_VALUE_CHARS} "
                                 "characters or holds a NUL character")


def _validate_args(field: str, args: Sequence[str]) -> None:
    for index, arg in enumerate(args):
        if len(arg) > MAX_ARG_CHARS or "\0" in arg:
            raise InvalidRequest(f"{field}[{index}] is over {MAX_ARG_CHARS} characters or "
                                 "holds a NUL character")


def _validate_stdin_modes(request: api.SubmitJobRequest, settings: Settings) -> None:
    """A job's stdin comes one way: the request's, live (interactive), or per test case."""
    if request.interactive and request.test_cases:
        raise InvalidRequest("interactive and test_cases are exclusive: an interactive job "
                             "has one live stdin, a job with test cases one stdin per case")
    if request.interactive and request.stdin:
        raise InvalidRequest("stdin must be empty when interactive is set: send it through "
                             "AttachJob")
    if request.test_cases and request.stdin:
        raise InvalidRequest("stdin must be empty when test_cases are given: each case has "
                             "its own (test_cases[].stdin)")
    if request.comparison not in pb.Comparison.values():
        raise InvalidRequest(f"comparison {request.comparison} is not a Comparison value")
    if request.comparison and not request.test_cases:
        raise InvalidRequest("comparison is set but test_cases is empty")
    cases = request.test_cases
    if len(cases) > settings.max_test_cases:
        raise InvalidRequest(f"test_cases has {len(cases)} entries, over the cap of "
                             f"{settings.max_test_cases}")
    held = args = 0
    for index, case in enumerate(cases):
        if len(case.name) > MAX_TEST_CASE_NAME_CHARS or "\0" in case.name:
            raise InvalidRequest(f"test_cases[{index}].name is over {MAX_TEST_CASE_NAME_CHARS}"
                                 " characters or holds a NUL character")
        _validate_args(f"test_cases[{index}].args", case.args)
        held += len(case.stdin) + len(case.expected_stdout)
        args += len(case.args)
    if held > settings.max_stdin_bytes:
        raise InvalidRequest(f"test_cases stdin and expected_stdout total {held} bytes, over "
                             f"the stdin cap of {settings.max_stdin_bytes} bytes")
    if args + len(request.args) > settings.max_args:
        raise InvalidRequest(f"args and test_cases[].args have {args + len(request.args)} "
                             f"entries together, over the cap of {settings.max_args}")


def validate_submission(request: api.SubmitJobRequest, settings: Settings,
                        languages: set[str]) -> api.SubmitJobRequest:
    """Returns the request as it will be stored: limits resolved, nothing else changed."""
    if not request.language:
        raise InvalidRequest("language is empty; ListLanguages gives the ids")
    if request.language not in languages:
        known = ", ".join(sorted(languages)) or "none yet: no worker has registered"
        raise InvalidRequest(f"language {request.language!r} is unknown; available: {known}")
    if not request.files:
        raise InvalidRequest("files is empty; the first file is the program's entry point")
    if len(request.files) > settings.max_files:
        raise InvalidRequest(f"files has {len(request.files)} entries, over the cap of "
                             f"{settings.max_files}")
    seen: set[str] = set()
    total = 0
    for index, file in enumerate(request.files):
        name = file.name
        if (not name or "/" in name or "\\" in name or "\0" in name or name in (".", "..")
                or len(name) > MAX_FILE_NAME_CHARS):
            raise InvalidRequest(
                f"files[{index}].name {name!r} is not a plain file name "
                f"(1-{MAX_FILE_NAME_CHARS} characters, no '/', not '.' or '..')")
        if name[0] in OPTION_PREFIXES:
            # A compiler reads a name like "-o" or "@opts" as an option (or a file of them).
            raise InvalidRequest(
                f"files[{index}].name {name!r} starts with {name[0]!r}; a file name may not "
                f"start with {' or '.join(repr(c) for c in OPTION_PREFIXES)}")
        if name in seen:
            raise InvalidRequest(f"files[{index}].name {name!r} appears twice")
        seen.add(name)
        total += len(file.content)
    if total > settings.max_source_bytes:
        raise InvalidRequest(f"files total {total} bytes, over the source size cap of "
                             f"{settings.max_source_bytes} bytes")
    if len(request.stdin) > settings.max_stdin_bytes:
        raise InvalidRequest(f"stdin is {len(request.stdin)} bytes, over the cap of "
                             f"{settings.max_stdin_bytes} bytes")
    if len(request.args) > settings.max_args:
        raise InvalidRequest(f"args has {len(request.args)} entries, over the cap of "
                             f"{settings.max_args}")
    _validate_args("args", request.args)
    _validate_stdin_modes(request, settings)
    for field in ("idempotency_key", "ordering_key"):
        if len(getattr(request, field)) > MAX_KEY_CHARS:
            raise InvalidRequest(f"{field} is over the cap of {MAX_KEY_CHARS} characters")
    validate_labels(request.labels, settings)
    stored = api.SubmitJobRequest()
    stored.CopyFrom(request)
    stored.limits.CopyFrom(resolve_limits(request.limits, limit_rules(settings)))
    return stored
