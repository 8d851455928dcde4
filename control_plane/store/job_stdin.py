"""An interactive job's stdin: what callers send through AttachJob, held in order.

Every piece is a row of job_stdin, numbered per job and placed at its byte offset in the
job's whole stdin; a closing row (eof) ends it. The control plane that holds the job's
worker stream reads the rows after the last it sent and sends them down, whichever control
plane stored them; a resumed stream starts at the byte its worker says it has. The job's
row is locked while a piece is added, so two callers' pieces never share a number and
the cap holds for the sum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from control_plane.store.backend import Backend, Tx
from control_plane.store.jobs import TERMINAL_STATES, Reader, reader_tenant


class StdinRefusal(enum.Enum):
    NOT_FOUND = "not_found"  # no such job of this tenant
    NOT_INTERACTIVE = "not_interactive"
    CLOSED = "closed"  # close_stdin came already
    OVER_CAP = "over_cap"


@dataclass(frozen=True)
class StdinPiece:
    seq: int
    offset: int
    data: bytes
    eof: bool


@dataclass(frozen=True)
class StdinAppended:
    """refusal None: stored (or dropped because the job has ended: nobody reads it)."""
    refusal: StdinRefusal | None = None
    total_bytes: int = 0  # the job's stdin so far, with this piece if it was stored
    ended: bool = False
    piece: StdinPiece | None = None  # as stored


class JobStdinStore:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def append(self, job_id: str, reader: Reader, data: bytes, *, close: bool,
                     max_bytes: int) -> StdinAppended:
        def tx(conn: Tx) -> StdinAppended:
            tenant_id = reader_tenant(conn, reader)
            row = conn.execute(
                f"SELECT tenant_id, state, interactive FROM jobs WHERE id = ?"
                f"{conn.dialect.for_update}", (job_id,)).fetchone()
            if row is None or row[0] != tenant_id:
                return StdinAppended(StdinRefusal.NOT_FOUND)
            if not row[2]:
                return StdinAppended(StdinRefusal.NOT_INTERACTIVE)
            last = conn.execute(
                "SELECT seq, offset_bytes + length(data), eof FROM job_stdin WHERE job_id = ?"
                " ORDER BY seq DESC LIMIT 1", (job_id,)).fetchone()
            seq, total, closed = (last[0], last[1], bool(last[2])) if last else (0, 0, False)
            if closed:
                return StdinAppended(StdinRefusal.CLOSED, total)
            if row[1] in TERMINAL_STATES:
                return StdinAppended(total_bytes=total, ended=True)
            if total + len(data) > max_bytes:
                return StdinAppended(StdinRefusal.OVER_CAP, total)
            conn.execute(
                "INSERT INTO job_stdin (job_id, seq, offset_bytes, data, eof)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, seq + 1, total, data, 1 if close else 0))
            return StdinAppended(total_bytes=total + len(data),
                                 piece=StdinPiece(seq + 1, total, data, close))

        return await self._db.run(tx)

    async def after(self, job_id: str, after_seq: int, limit: int = 256) -> list[StdinPiece]:
        def tx(conn: Tx) -> list[StdinPiece]:
            rows = conn.execute(
                "SELECT seq, offset_bytes, data, eof FROM job_stdin WHERE job_id = ?"
                " AND seq > ? ORDER BY seq LIMIT ?", (job_id, after_seq, limit))
            return [StdinPiece(r[0], r[1], bytes(r[2]), bool(r[3])) for r in rows]

        return await self._db.run(tx)
