"""The schema is migrated, never rebuilt: from a store made before migrations existed, and
by several processes starting at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from control_plane.store.backend import Backend
from control_plane.store.database import Database
from control_plane.store.migrations import LATEST, MIGRATIONS, version
from control_plane.store.records import JobState
from tests.store.conftest import OpenBackend
from tests.store.helpers import claim, job_store, submit

BEFORE_MIGRATIONS = Path(__file__).parent / "data" / "store_before_migrations.sql"


async def versions(db: Backend) -> list[int]:
    return await db.run(lambda tx: [row[0] for row in tx.execute(
        "SELECT version FROM schema_migrations ORDER BY version")])


async def test_a_store_from_before_migrations_is_migrated_not_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(BEFORE_MIGRATIONS.read_text())
    conn.close()
    db = Database(path)
    await db.open()
    try:
        assert [m.version for m in db.migrations_applied] == [m.version for m in MIGRATIONS[1:]]
        assert await versions(db) == [m.version for m in MIGRATIONS]
        jobs = job_store(db)
        tenant_id, old_ids = await db.run(lambda tx: (
            tx.execute("SELECT id FROM tenants").fetchone()[0],
            [row[0] for row in tx.execute("SELECT id FROM jobs ORDER BY seq")]))
        assert len(old_ids) == 3
        first = await jobs.get(old_ids[0], tenant_id)
        assert first is not None and first.state == JobState.SUCCEEDED
        # The old jobs keep their order (their ordering key's): the second runs next, not
        # the third, and a new job comes after them all.
        assert (await claim(jobs, old_ids[2])).refusal != 0
        assert (await claim(jobs, old_ids[1])).assignment is not None
        new = await submit(jobs, tenant_id)
        listed = await jobs.list_for_tenant(tenant_id, states=[], labels={"n": "1"},
                                            created_after=None, created_before=None,
                                            before_id=None, limit=10)
        assert [job.id for job in listed] == [old_ids[1]]
        newest = await jobs.list_for_tenant(tenant_id, states=[], labels={},
                                            created_after=None, created_before=None,
                                            before_id=None, limit=1)
        assert [job.id for job in newest] == [new.id]
        # The counters kept by the old triggers carry on.
        counts = await db.run(lambda tx: dict(tx.execute(
            "SELECT state, jobs FROM tenant_job_counts WHERE tenant_id = ?",
            (tenant_id,)).fetchall()))
        assert counts[JobState.QUEUED] == 2 and counts[JobState.RUNNING] == 1
    finally:
        await db.close()


async def test_opening_again_applies_nothing(open_backend: OpenBackend) -> None:
    first = await open_backend()
    assert [m.version for m in first.migrations_applied] == [m.version for m in MIGRATIONS]
    second = await open_backend()
    assert second.migrations_applied == []
    assert await second.run(version) == LATEST


async def test_several_processes_migrating_at_once_do_not_race(
        open_backend: OpenBackend) -> None:
    opened = await asyncio.gather(*(open_backend() for _ in range(4)))
    assert sorted(len(db.migrations_applied) for db in opened) == [0, 0, 0, len(MIGRATIONS)]
    assert await versions(opened[0]) == [m.version for m in MIGRATIONS]
