"""Moves the store's write-ahead log into the database file from a thread of its own.

SQLite's automatic checkpoint runs inside whichever commit crosses the WAL's size limit, on
the database thread, and ends in an fsync: every few hundred milliseconds under a submit
burst one commit took 7-15 ms (more on a busy disk), and every call batched behind it
waited as long. Here the database connection never checkpoints; this thread does, on its
own connection, in PASSIVE mode (it takes no lock the writer needs and never waits), so
the fsync happens beside the commits instead of inside one.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sluice.observability import get_logger

log = get_logger(__name__)
CHECKPOINT_EVERY_S = 0.5


class WalCheckpointer:
    def __init__(self, path: Path, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._path = path
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Blocks until the thread has ended (call it from a thread, not the event loop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._every_s):
                self._checkpoint(conn, "PASSIVE")
            # At close the log is folded in and emptied, so the file alone is the store.
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            # A busy or failed checkpoint loses nothing: the frames stay in the log and
            # the next one takes them.
            log.warning("wal_checkpoint_failed", mode=mode, error=str(exc))
