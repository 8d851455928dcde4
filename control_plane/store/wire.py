"""Protocol Buffers' wire format, just enough for a migration to edit stored blobs.

Migrations must read blobs as they were written whatever the code's message types are by
then, so they work on field numbers (fixed forever: the contract only ever adds fields)
rather than on generated classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _varint(blob: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = blob[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(blob: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, start of the field, end of its tag, start of its payload, end) of
    each field."""
    at = 0
    while at < len(blob):
        start = at
        tag, at = _varint(blob, at)
        number, wire_type = tag >> 3, tag & 7
        tag_end = payload = at
        if wire_type == _VARINT:
            _, at = _varint(blob, at)
        elif wire_type == _FIXED64:
            at += 8
        elif wire_type == _LENGTH:
            length, payload = _varint(blob, at)
            at = payload + length
        elif wire_type == _FIXED32:
            at += 4
        else:
            raise ValueError(f"wire type {wire_type} (groups) in a stored message")
        yield number, start, tag_end, payload, at


def edit(blob: bytes, *, drop: frozenset[int] = frozenset(),
         nested: dict[int, Callable[[bytes], bytes]] | None = None) -> bytes:
    """The message without the fields numbered in `drop`, and with each length-delimited
    field numbered in `nested` replaced by what its function makes of its payload."""
    nested = nested or {}
    out = bytearray()
    for number, start, tag_end, payload, end in _fields(blob):
        if number in drop:
            continue
        if number in nested:
            inner = nested[number](blob[payload:end])
            out += blob[start:tag_end] + _encode_varint(len(inner)) + inner
        else:
            out += blob[start:end]
    return bytes(out)


def field(blob: bytes, number: int) -> bytes | None:
    """The payload of the last length-delimited field `number` (proto3's rule), if any."""
    found = None
    for field_number, _, _, payload, end in _fields(blob):
        if field_number == number:
            found = blob[payload:end]
    return found
