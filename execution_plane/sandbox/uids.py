"""Host uids for the slots, unique on the host for as long as a worker holds them.

Each slot runs as a uid of its own: RLIMIT_NPROC then counts that slot's tasks only, and a
job could not signal or read another slot's processes or files even outside its
namespaces. That holds only if no two slots on the host, in any worker, share a uid. A
uid is held by an exclusive flock on `<run dir>/uids/<uid>.lock`, taken without waiting
and kept for the pool's lifetime: a worker that dies, however it dies, lets go of its
uids with its open files, and nothing has to be cleaned up first. Lock files stay (an
unlinked lock file could be locked by two workers at once) and are empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from execution_plane.sandbox.run_dir import private_subdir


class NoFreeUid(Exception):
    """Every uid of the configured range is held by a live slot."""


class UidLease:
    """Uids held by one pool; released all at once by close()."""

    def __init__(self, run_dir: str, base: int, count: int) -> None:
        if base < 1 or count < 1 or base + count > 2**32 - 2:
            raise ValueError(f"bad sandbox uid range: base {base}, count {count}")
        self.dir = private_subdir(run_dir, "uids")
        self.base = base
        self.count = count
        self.held: dict[int, int] = {}  # uid -> the fd holding its lock

    def take(self) -> int:
        """A uid no other slot on this host holds; held until close()."""
        for uid in range(self.base, self.base + self.count):
            if uid in self.held:
                continue
            fd = os.open(
                os.path.join(self.dir, f"{uid}.lock"),
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self.held[uid] = fd
            return uid
        raise NoFreeUid(
            f"all {self.count} sandbox uids from {self.base} are held by live slots on this "
            "host (SLUICE_SANDBOX_UID_BASE / SLUICE_SANDBOX_UID_COUNT)"
        )

    def close(self) -> None:
        for fd in self.held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.held.clear()
