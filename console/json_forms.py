"""Protobuf messages as the pages' JSON, and the pages' query strings as requests. Bytes a
job produced become text (invalid UTF-8 replaced): the page shows them with textContent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from sluice.v1 import job_pb2 as pb


def text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _texts(message: Message, out: dict[str, Any]) -> dict[str, Any]:
    """MessageToDict writes bytes as base64; the pages want them as text."""
    for descriptor, value in message.ListFields():
        name = descriptor.name
        if descriptor.type == descriptor.TYPE_BYTES and name in out:
            repeated = descriptor.is_repeated
            out[name] = [text(v) for v in value] if repeated else text(value)
        elif descriptor.type == descriptor.TYPE_MESSAGE and name in out:
            if descriptor.is_repeated:
                if not descriptor.message_type.GetOptions().map_entry:
                    out[name] = [_texts(item, d) for item, d in zip(value, out[name],
                                                                    strict=True)]
            else:
                out[name] = _texts(value, out[name])
    return out


def as_json(message: Message) -> dict[str, Any]:
    return _texts(message, MessageToDict(message, preserving_proto_field_name=True))


def timestamp_from(value: str, field: str) -> Timestamp:
    """An ISO time from a filter (datetime-local sends no zone: taken as UTC)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {value!r} is not a time (YYYY-MM-DDTHH:MM)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def state_from(value: str) -> int:
    name = value.upper()
    if not name.startswith("JOB_STATE_"):
        name = f"JOB_STATE_{name}"
    try:
        return pb.JobState.Value(name)
    except ValueError as exc:
        states = ", ".join(s.removeprefix("JOB_STATE_").lower() for s in pb.JobState.keys()
                           if s != "JOB_STATE_UNSPECIFIED")
        raise ValueError(f"state: {value!r} is not one of {states}") from exc


def labels_from(values: list[str]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise ValueError(f"label: {value!r} is not KEY=VALUE")
        labels[key] = label
    return labels
