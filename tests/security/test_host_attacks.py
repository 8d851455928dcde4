"""The worker host: leftovers are reclaimed only from root's own directory, and no two
slots on the host, in any worker, share a uid."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from execution_plane.sandbox import SandboxPool, SandboxUnavailable, workdir
from execution_plane.sandbox.run_dir import UnsafeRunDir, check_run_dir
from execution_plane.sandbox.stale import reclaim_stale
from execution_plane.sandbox.uids import NoFreeUid, UidLease
from sluice.settings import Settings

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
# Lease tests lock uids in a run dir of their own and run nothing as them; a range far
# from the pools' keeps them apart from the real locks all the same.
TEST_UID_BASE = 4_000_000_000


def _dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def _dir(path: Path, mode: int, owner: int = 0) -> Path:
    path.mkdir()
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


def _run_dir(tmp_path: Path) -> Path:
    return _dir(tmp_path / "run", 0o711)


def test_the_run_dir_check_refuses_what_someone_else_could_have_prepared(
    tmp_path: Path,
) -> None:
    good = _dir(tmp_path / "good", 0o711)
    check_run_dir(str(good))
    user_owned = _dir(tmp_path / "user", 0o755, owner=NOBODY)
    link = tmp_path / "link"
    link.symlink_to(good)
    refused = {
        "world-writable": (_dir(tmp_path / "ww", 0o777), "writable"),
        "group-writable": (_dir(tmp_path / "gw", 0o775), "writable"),
        "sticky world-writable": (_dir(tmp_path / "sticky", 0o1777), "writable"),
        "owned by nobody": (_dir(tmp_path / "nobody", 0o711, owner=NOBODY), "owned by uid"),
        "a symlink to a good one": (link, "not a directory"),
        "below a user's dir": (_dir(user_owned / "run", 0o711), "not root's alone"),
        "the temp dir itself": (Path(tempfile.gettempdir()), "writable"),
        "missing": (tmp_path / "missing", "No such file"),
        "relative": (Path("run"), "absolute"),
    }
    for case, (path, why) in refused.items():
        with pytest.raises(UnsafeRunDir, match=why):
            check_run_dir(str(path))
            pytest.fail(f"{case}: accepted")


def test_leftovers_are_never_reclaimed_from_a_world_writable_dir() -> None:
    """Anyone can plant a "dead worker's work root" in /tmp for root to unmount and delete
    (or swap it for a link while root walks it): the worker no longer looks there."""
    temp = Path(tempfile.gettempdir())
    token = secrets.token_hex(4)
    dead = _dead_pid()
    planted = [temp / f"sluice-sandbox-{dead}-{token}", temp / f"sandbox-{dead}-{token}"]
    try:
        for path in planted:
            path.mkdir()
            os.chown(path, NOBODY, NOBODY)
            (path / "keep").write_text("not root's to delete")
        with pytest.raises(UnsafeRunDir):
            reclaim_stale(str(temp))

        async def start_and_close() -> list[str]:
            sandbox = SandboxPool(slots=1)
            await sandbox.start()
            await sandbox.close()
            return sandbox.reclaimed

        reclaimed = asyncio.run(start_and_close())
        assert not any(str(temp) in path for path in reclaimed), reclaimed
        assert all((path / "keep").exists() for path in planted)
    finally:
        for path in planted:
            (path / "keep").unlink(missing_ok=True)
            if path.exists():
                path.rmdir()


def test_a_dead_workers_work_root_is_reclaimed_from_the_run_dir(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    stale = run_dir / f"sandbox-{_dead_pid()}-abc"
    slot = stale / "slot-0"
    slot.mkdir(parents=True)
    workdir.mount_tmpfs(str(slot), 1 << 20, 0, 0)
    live = run_dir / f"sandbox-{os.getpid()}-def"
    live.mkdir()
    try:
        removed = reclaim_stale(str(run_dir))
        assert str(stale) in removed
        assert not stale.exists() and live.exists()
        assert workdir.mounts_under(str(run_dir)) == []
    finally:
        workdir.unmount_all_under(str(run_dir))


async def test_a_pool_refuses_an_unsafe_run_dir(tmp_path: Path) -> None:
    for mode, owner in ((0o777, 0), (0o711, NOBODY)):
        unsafe = _dir(tmp_path / f"run-{mode:o}-{owner}", mode, owner)
        sandbox = SandboxPool(slots=1, settings=Settings(sandbox_run_dir=str(unsafe)))
        with pytest.raises(SandboxUnavailable, match=str(unsafe)):
            await sandbox.start()
        assert list(unsafe.iterdir()) == []


def test_uid_leases_exclude_each_other_across_pools_and_processes(tmp_path: Path) -> None:
    run_dir = str(_run_dir(tmp_path))
    first = UidLease(run_dir, TEST_UID_BASE, 3)
    second = UidLease(run_dir, TEST_UID_BASE, 3)
    try:
        assert [first.take(), first.take()] == [TEST_UID_BASE, TEST_UID_BASE + 1]
        assert second.take() == TEST_UID_BASE + 2
        with pytest.raises(NoFreeUid):
            second.take()
        first.close()
        assert second.take() == TEST_UID_BASE
    finally:
        first.close()
        second.close()
    # Another process, then that process killed outright: its uid is free at once.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom execution_plane.sandbox.uids import UidLease\n"
            f"lease = UidLease({run_dir!r}, {TEST_UID_BASE}, 3)\n"
            "print(lease.take(), flush=True)\nsys.stdin.read()\n",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    mine = UidLease(run_dir, TEST_UID_BASE, 3)
    try:
        assert holder.stdout is not None
        assert int(holder.stdout.readline()) == TEST_UID_BASE
        assert mine.take() == TEST_UID_BASE + 1
        holder.kill()
        holder.wait()
        assert mine.take() == TEST_UID_BASE
    finally:
        mine.close()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


WORKER = """
import asyncio, json, sys
from execution_plane.sandbox import SandboxPool

async def main() -> None:
    sandbox = SandboxPool(slots=2)
    await sandbox.start()
    print(json.dumps([slot.uid for slot in sandbox.slots]), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await sandbox.close()

asyncio.run(main())
"""


async def test_two_workers_on_one_host_never_share_a_uid(pool: SandboxPool) -> None:
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    third = SandboxPool(slots=2)
    await third.start()
    try:
        assert other.stdout is not None
        line = await asyncio.wait_for(other.stdout.readline(), timeout=120)
        theirs = set(json.loads(line))
        ours = {slot.uid for slot in pool.slots}
        third_uids = {slot.uid for slot in third.slots}
        assert len(theirs) == len(ours) == len(third_uids) == 2
        assert not (theirs & ours) and not (theirs & third_uids) and not (ours & third_uids)
    finally:
        await third.close()
        assert other.stdin is not None
        other.stdin.close()
        await other.wait()
