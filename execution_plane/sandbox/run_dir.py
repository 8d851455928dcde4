"""The worker host's own directory (SLUICE_SANDBOX_RUN_DIR, /run/sluice by default).

The slots' work roots and the uid locks live there, and a dead worker's leftovers are
reclaimed only there. The worker acts on what it finds in it as root (unmounts, deletes,
trusts a lock), so nobody else may have been able to put anything in it: it must be a real
directory (not a symlink), owned by root, writable by nobody else, and so must every
directory above it (a sticky one like /tmp aside, where others cannot rename what root
owns). A world-writable path such as /tmp itself never qualifies.
"""

from __future__ import annotations

import os
import stat


class UnsafeRunDir(Exception):
    """The directory could have been prepared by someone other than root."""


def check_run_dir(path: str) -> None:
    """Raises UnsafeRunDir unless `path` and its ancestors are root's alone."""
    if not os.path.isabs(path):
        raise UnsafeRunDir(f"{path!r}: the sandbox run dir must be an absolute path")
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise UnsafeRunDir(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeRunDir(f"{path} is not a directory (a symlink is not accepted either)")
    if info.st_uid != 0:
        raise UnsafeRunDir(f"{path} is owned by uid {info.st_uid}, not root")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeRunDir(
            f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
        )
    parent = os.path.dirname(path)
    while parent != path:
        info = os.lstat(parent)
        if stat.S_ISLNK(info.st_mode):
            raise UnsafeRunDir(f"{parent}, above {path}, is a symlink")
        shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if info.st_uid != 0 or (shared and not info.st_mode & stat.S_ISVTX):
            raise UnsafeRunDir(f"{parent}, above {path}, is not root's alone")
        path, parent = parent, os.path.dirname(parent)


def prepare_run_dir(path: str) -> str:
    """Creates the directory if missing (root, 0711), then checks it; returns it."""
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafeRunDir(f"cannot create {path}: {exc.strerror}") from exc
    check_run_dir(path)
    if not os.lstat(path).st_mode & stat.S_IXOTH:
        # The slots' uids must traverse it to reach their work dirs.
        raise UnsafeRunDir(f"{path} must be searchable by others (mode o+x)")
    return path


def private_subdir(run_dir: str, name: str) -> str:
    """A directory of the run dir only root uses (0700), created if missing, checked."""
    path = os.path.join(run_dir, name)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise UnsafeRunDir(f"{path} is not a directory of root's")
    os.chmod(path, 0o700)
    return path
