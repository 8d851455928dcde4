"""Commits never checkpoint the write-ahead log; the checkpoint thread does, and empties it
at close."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from control_plane.store.database import Database
from control_plane.store.wal_checkpointer import CHECKPOINT_EVERY_S

ROWS, ROW_BYTES = 300, 16_000  # about 1200 pages: past SQLite's own checkpoint limit


def size(path: Path | str) -> int:
    """Bytes in the file; 0 when it is not there."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


async def test_commits_leave_the_log_to_the_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(path)
    await db.open()
    try:
        autocheckpoint = await db.run(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert autocheckpoint == 0  # no commit checkpoints by itself
        await db.run(lambda conn: conn.execute("CREATE TABLE t (v BLOB)"))
        for _ in range(ROWS):
            await db.run(
                lambda conn: conn.execute("INSERT INTO t VALUES (randomblob(?))", (ROW_BYTES,)))
        # Committed rows sit in the log until a checkpoint copies them into the file: the
        # file grows only when the thread has been round.
        deadline = time.monotonic() + 20 * CHECKPOINT_EVERY_S
        while size(path) < ROWS * ROW_BYTES:
            assert time.monotonic() < deadline, (
                f"nothing checkpointed: the file is {size(path)} bytes")
            await asyncio.sleep(CHECKPOINT_EVERY_S / 4)
    finally:
        await db.close()
    # Folded in at close: the log is empty, or gone with the last connection.
    assert size(f"{path}-wal") == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == ROWS


async def test_a_busy_writer_cannot_grow_the_log_without_bound(tmp_path: Path) -> None:
    """PASSIVE passes never finish a log that keeps growing; past its frame limit the
    database thread empties it between two batches."""
    path = tmp_path / "store.db"
    db = Database(path, checkpoint_every_s=0.02, restart_log_after_frames=256)
    await db.open()
    written, largest = 0, 0
    try:
        await db.run(lambda conn: conn.execute("CREATE TABLE t (v BLOB)"))
        # Enough bytes to tell, however long a loaded machine takes to write them.
        deadline = time.monotonic() + 120.0
        while written < 96 * 1024 * 1024:
            assert time.monotonic() < deadline, f"only {written} bytes written in 120 s"
            await asyncio.gather(*(
                db.run(lambda conn: conn.execute("INSERT INTO t VALUES (randomblob(?))",
                                                 (ROW_BYTES,)))
                for _ in range(8)))
            written += 8 * ROW_BYTES
            largest = max(largest, size(f"{path}-wal"))
    finally:
        await db.close()
    # 256 frames of 4 KB is 1 MB; what is written before the restart's turn comes on top
    # (this writer writes over 100 MB/s). Unbounded, the log holds everything written.
    assert largest < 32 * 1024 * 1024, f"the log reached {largest} bytes of {written} written"
