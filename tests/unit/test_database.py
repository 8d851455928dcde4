"""The store's database thread: calls that queue up are committed together, each atomic."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
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
