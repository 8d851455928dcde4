"""Moves the store's write-ahead log into the database file from a thread of its own.

SQLite's automatic checkpoint runs inside whichever commit crosses the log's size limit, on
the database thread, and ends in an fsync: under a submit burst one commit every ~0.3 s
took 7-15 ms (more on a busy disk), and every call batched behind it waited as long. Here
the database connection does not checkpoint on its own; this thread does, on its own
connection, in PASSIVE mode (it takes no lock the writer needs and never waits), so the
copying and its fsync happen beside the commits instead of inside one.

PASSIVE passes alone are not enough under a steady stream of writes: the writer starts the
log over only if, when its transaction begins, every frame is in the file already, and a
writer that keeps appending never finds it so (in a 2-minute soak at 250 submits/s the log
reached 840 MB). So once the log passes `restart_after_frames`, this thread asks the
database thread to run a TRUNCATE checkpoint between two of its batches: it copies the
little the passes left and empties the log, one short pause every several seconds instead
of a fsync inside a commit every few hundred milliseconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from sluice.observability import get_logger, name_os_thread

log = get_logger(__name__)
CHECKPOINT_EVERY_S = 0.5
RESTART_AFTER_FRAMES = 16_384  # 64 MB of 4-KB pages


def checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """(1 if it could not finish, frames in the log, frames now in the file)."""
    try:
        return conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except sqlite3.Error as exc:
        # A failed checkpoint loses nothing: the frames stay in the log for the next one.
        log.warning("wal_checkpoint_failed", mode=mode, error=str(exc))
        return 1, 0, 0


class WalCheckpointer:
    def __init__(self, path: Path, restart_log: Callable[[], None], *,
                 every_s: float = CHECKPOINT_EVERY_S,
                 restart_after_frames: int = RESTART_AFTER_FRAMES) -> None:
        """restart_log: asks the writer to run a TRUNCATE checkpoint when it can; it calls
        `restarted()` when it has, and until then is not asked again."""
        self._path = path
        self._restart_log = restart_log
        self._every_s = every_s
        self._restart_after_frames = restart_after_frames
        self._stop = threading.Event()
        self._restart_pending = threading.Event()
        self._thread: threading.Thread | None = None

    def restarted(self) -> None:
        self._restart_pending.clear()

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
        name_os_thread("sqlite-checkpoint")  # the OS keeps "sqlite-checkpoi"
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self._every_s):
                _, frames, _ = checkpoint(conn, "PASSIVE")
                if frames >= self._restart_after_frames and not self._restart_pending.is_set():
                    self._restart_pending.set()
                    self._restart_log()
        finally:
            conn.close()
