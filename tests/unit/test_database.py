"""The store's database thread: calls that queue up are committed together, each atomic."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.store.database import Database


class Refused(Exception):
    pass


async def open_db(tmp_path: Path) -> Database:
    db = Database(tmp_path / "store.db")
    await db.open()
    await db.run(lambda conn: conn.execute("CREATE TABLE t (v TEXT PRIMARY KEY)"))
    return db


def stored(tmp_path: Path) -> set[str]:
    """What another connection (another process) sees: committed rows only."""
    with sqlite3.connect(tmp_path / "store.db") as conn:
        return {row[0] for row in conn.execute("SELECT v FROM t")}


async def test_a_failing_call_is_rolled_back_alone_in_a_batch(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    gate = threading.Event()
    try:
        # Hold the thread so the next calls queue up and run as one batch.
        blocker = asyncio.ensure_future(db.run(lambda conn: gate.wait(10)))
        await asyncio.sleep(0.05)

        def insert(value: str, fail: bool = False) -> object:
            def tx(conn: sqlite3.Connection) -> str:
                conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
                if fail:
                    raise Refused(value)
                return value
            return db.run(tx)

        calls = [insert("a"), insert("b", fail=True), insert("c"), insert("a")]
        results = asyncio.gather(*calls, return_exceptions=True)
        gate.set()
        await blocker
        a, b, c, duplicate = await results
        assert (a, c) == ("a", "c")
        assert isinstance(b, Refused)
        assert isinstance(duplicate, sqlite3.IntegrityError)
        assert stored(tmp_path) == {"a", "c"}
    finally:
        gate.set()
        await db.close()


async def test_a_result_comes_back_only_once_committed(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    try:
        for i in range(20):
            await db.run(lambda conn, i=i: conn.execute("INSERT INTO t (v) VALUES (?)", (str(i),)))
            assert str(i) in stored(tmp_path)
        values = [str(i) for i in range(100, 300)]
        await asyncio.gather(*(
            db.run(lambda conn, v=v: conn.execute("INSERT INTO t (v) VALUES (?)", (v,)))
            for v in values))
        assert set(values) <= stored(tmp_path)
    finally:
        await db.close()


async def test_calls_after_close_fail_clearly(tmp_path: Path) -> None:
    db = await open_db(tmp_path)
    await db.close()
    with pytest.raises(RuntimeError, match="open"):
        await db.run(lambda conn: conn.execute("SELECT 1"))


# Under concurrency: calls that share a commit still behave one by one.
@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "sluice.db")
    await database.open()
    await database.run(lambda conn: conn.execute(
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield database
    await database.close()


def insert(k: int, *, fail: bool = False):
    def tx(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, f"v{k}"))
        if fail:
            raise Refused(f"call {k} refused after its insert")
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]

    return tx


async def rows(db: Database) -> list[int]:
    return await db.run(lambda conn: [r[0] for r in conn.execute("SELECT k FROM t ORDER BY k")])


async def test_a_failing_call_is_undone_alone_among_concurrent_calls(db: Database) -> None:
    # Many at once, so that they queue up and share commits; every third one fails after
    # writing.
    results = await asyncio.gather(*(db.run(insert(k, fail=k % 3 == 0)) for k in range(1, 61)),
                                   return_exceptions=True)
    kept = [k for k in range(1, 61) if k % 3]
    for k, result in zip(range(1, 61), results, strict=True):
        if k % 3 == 0:
            assert isinstance(result, Refused)
            assert str(result) == f"call {k} refused after its insert"
        else:
            # Each saw the writes of the calls before it and of no failed one: the count
            # it read is its rank among the calls that were kept.
            assert result == kept.index(k) + 1
    assert await rows(db) == kept


async def test_a_call_sees_the_committed_work_of_earlier_ones(db: Database) -> None:
    first = asyncio.ensure_future(db.run(insert(1)))
    second = asyncio.ensure_future(db.run(insert(1)))  # same key: must conflict with the first
    assert await first == 1
    with pytest.raises(sqlite3.IntegrityError):
        await second
    assert await rows(db) == [1]


async def test_work_is_durable_once_run_returns(db: Database, tmp_path: Path) -> None:
    await asyncio.gather(*(db.run(insert(k)) for k in range(1, 11)))
    # Another connection (another process would be the same) sees all of it.
    other = sqlite3.connect(tmp_path / "sluice.db")
    try:
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 10
    finally:
        other.close()


async def test_a_commit_is_synced_to_disk_before_the_caller_hears_back(tmp_path: Path) -> None:
    # An accepted job must survive a power cut, not just a crash of the process.
    db = await open_db(tmp_path)
    try:
        journal, synchronous = await db.run(lambda conn: (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        ))
        assert journal == "wal"
        assert synchronous == 2  # FULL
    finally:
        await db.close()
