"""Leftovers of a worker that died without closing its pool (SIGKILL, OOM kill, power loss).

A pool names what it creates after its process: cgroups `sluice-<pid>-<n>` below the
service's cgroup and a work root `sandbox-<pid>-*` in the host's run dir (see run_dir.py).
At start a pool removes those whose process is gone, mounts first (deepest first), then the
directories. A pid that is alive again (reused) is left alone: better a leak than a live
pool's files. Work roots are looked for in the run dir only, and only once it has passed
its check: in a directory others can write to (/tmp), anyone could plant a "leftover" for
root to unmount and delete.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil

from execution_plane.sandbox import workdir
from execution_plane.sandbox.cgroups import (
    CgroupUnavailable,
    locate_bases,
    remove_tree_dir,
    thaw_tree_dir,
)
from execution_plane.sandbox.run_dir import check_run_dir

CGROUP_NAME = re.compile(r"^sluice-(\d+)-\d+$")
WORK_ROOT_NAME = re.compile(r"^sandbox-(\d+)-")


def work_root_prefix() -> str:
    return f"sandbox-{os.getpid()}-"


def cgroup_name(pool_id: int) -> str:
    return f"sluice-{os.getpid()}-{pool_id}"


def _dead(pid: str) -> bool:
    return int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}")


def reclaim_stale(run_dir: str) -> list[str]:
    """Remove dead workers' cgroups and work roots; returns what was removed.

    Raises UnsafeRunDir, before touching anything, if `run_dir` is not root's alone."""
    check_run_dir(run_dir)
    removed: list[str] = []
    with contextlib.suppress(CgroupUnavailable, OSError):
        _, bases = locate_bases()
        stale = [
            entry.path
            for base in bases.values()
            for entry in os.scandir(base)
            if (match := CGROUP_NAME.match(entry.name))
            and entry.is_dir()
            and _dead(match.group(1))
        ]
        # Every controller's dir first (v1 has one per controller): a task frozen by the
        # freezer dir would not die of the kills in the others.
        for path in stale:
            thaw_tree_dir(path)
        for path in stale:
            if remove_tree_dir(path):
                removed.append(path)
    with contextlib.suppress(OSError):
        for entry in os.scandir(run_dir):
            match = WORK_ROOT_NAME.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and _dead(match.group(1)):
                workdir.unmount_all_under(entry.path)
                if not workdir.mounts_under(entry.path):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(entry.path)
    return removed
