"""Backend.run on either database: each call atomic, committed before it returns, alone in
its failure however many run at once. (SQLite's group commit: tests/unit/test_database.py.)"""

from __future__ import annotations

import asyncio

import pytest

from control_plane.store.backend import Backend, Tx
from tests.store.conftest import OpenBackend


class Refused(Exception):
    pass


async def table(db: Backend) -> None:
    await db.run(lambda tx: tx.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))


def insert(k: int, *, fail: bool = False):  # type: ignore[no-untyped-def]
    def tx(tx: Tx) -> int:
        tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, f"v{k}"))
        if fail:
            raise Refused(f"call {k} refused after its insert")
        return k

    return tx


async def keys(db: Backend) -> list[int]:
    return await db.run(lambda tx: [r[0] for r in tx.execute("SELECT k FROM t ORDER BY k")])


async def test_a_failing_call_is_undone_alone_among_concurrent_calls(
        open_backend: OpenBackend) -> None:
    db = await open_backend()
    await table(db)
    results = await asyncio.gather(*(db.run(insert(k, fail=k % 3 == 0)) for k in range(1, 61)),
                                   return_exceptions=True)
    for k, result in zip(range(1, 61), results, strict=True):
        if k % 3 == 0:
            assert isinstance(result, Refused)
            assert str(result) == f"call {k} refused after its insert"
        else:
            assert result == k
    assert await keys(db) == [k for k in range(1, 61) if k % 3]


async def test_work_is_seen_by_another_replica_once_run_returns(
        open_backend: OpenBackend) -> None:
    one, other = await open_backend(), await open_backend()
    await table(one)
    for k in range(1, 11):
        await one.run(insert(k))
        assert (await keys(other))[-1] == k


async def test_a_duplicate_key_fails_the_second_call(open_backend: OpenBackend) -> None:
    db = await open_backend()
    await table(db)
    await db.run(insert(1))
    with pytest.raises(Exception, match=r"(?i)unique"):
        await db.run(insert(1))
    assert await keys(db) == [1]


async def test_calls_after_close_fail_clearly(open_backend: OpenBackend) -> None:
    db = await open_backend()
    await db.close()
    with pytest.raises(RuntimeError, match="open"):
        await db.run(lambda tx: tx.execute("SELECT 1"))
