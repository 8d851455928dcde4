"""Audit paging on PostgreSQL never skips a record whose seq was drawn before another's but
committed after it: a reader pages only up to seqs that have settled."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest

from control_plane.job_messages import CODEC
from control_plane.store import audit
from control_plane.store.audit import AuditLog
from control_plane.store.backend import Backend, Tx, backend_for
from control_plane.store.retention import RetentionStore
from tests.support.postgres import TestDatabase

TENANT = "t_audit"


@pytest.fixture
async def pg() -> AsyncIterator[Backend]:
    with TestDatabase() as database:
        backend = backend_for(database.url)
        await backend.open()
        try:
            yield backend
        finally:
            await backend.close()


def write(action: str):  # type: ignore[no-untyped-def]
    def tx(conn: Tx) -> int:
        audit.record(conn, tenant_id=TENANT, actor="test", action=action)
        return conn.execute("SELECT max(seq) FROM audit_events").fetchone()[0]

    return tx


class SlowWriter:
    """A transaction that draws an audit seq and then stays open until released."""

    def __init__(self, db: Backend) -> None:
        self.written = threading.Event()
        self.release = threading.Event()

        def tx(conn: Tx) -> int:
            audit.record(conn, tenant_id=TENANT, actor="test", action="slow")
            # Its own uncommitted record is the newest it can see.
            seq = conn.execute("SELECT max(seq) FROM audit_events").fetchone()[0]
            self.written.set()
            assert self.release.wait(30)
            return seq

        self.task = asyncio.ensure_future(db.run(tx))

    async def started(self) -> None:
        assert await asyncio.to_thread(self.written.wait, 30)


async def actions(log: AuditLog, after_seq: int = 0, limit: int = 100) -> list[str]:
    return [r.action for r in await log.query(tenant_id=TENANT, after_seq=after_seq,
                                              limit=limit)]


async def test_a_seq_committed_late_is_not_paged_past(pg: Backend,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(pg)
    slow = SlowWriter(pg)
    await slow.started()
    fast_seq = await pg.run(write("fast"))  # drawn after the slow one's, committed first

    # While the slow writer is open, a reader that will not wait gets nothing new: never
    # the fast record without the slow one before it.
    monkeypatch.setattr(audit, "SETTLE_WAIT_S", 0.2)
    assert await actions(log) == []
    assert await RetentionStore(pg, CODEC).expired_audit(before=time.time() + 60, limit=10) == []
    monkeypatch.undo()

    # A reader that waits gets both, in seq order, once the slow one commits; writers
    # are not held up meanwhile.
    reader = asyncio.ensure_future(actions(log, limit=1))
    await asyncio.sleep(0.2)
    assert not reader.done()
    started = time.monotonic()
    other_seq = await pg.run(write("other"))
    assert time.monotonic() - started < 5
    slow.release.set()
    slow_seq = await slow.task
    assert slow_seq < fast_seq < other_seq
    assert await reader == ["slow"]
    assert await actions(log, after_seq=slow_seq) == ["fast", "other"]


async def test_a_rolled_back_seq_does_not_stop_the_trail(pg: Backend) -> None:
    log = AuditLog(pg)

    def undone(conn: Tx) -> None:
        audit.record(conn, tenant_id=TENANT, actor="test", action="undone")
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await pg.run(undone)
    await pg.run(write("kept"))
    assert await actions(log) == ["kept"]
