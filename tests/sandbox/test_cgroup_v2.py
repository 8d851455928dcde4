"""The cgroup v2 slot against the real kernel, as far as a v1 machine allows.

Hosts with the controllers on v1 (this CI machine) still mount an empty unified hierarchy,
and there a cgroup has the v2 core files without any controller: cgroup.procs,
cgroup.freeze, cgroup.events and cpu.stat. That is the half of SlotCgroupV2 that keeps a
job's tree from outliving it (freeze, kill every task, thaw) and measures its CPU; the
memory and pids limits need the controllers delegated and run on v2 hosts only.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from execution_plane.sandbox.cgroups import SlotCgroupV2, remove_tree_dir

# Forks a session leader that forks again (a daemon), and both spin, so a tree that
# escaped its parent and its session is what has to die.
DOUBLE_FORKING_SPINNERS = """
import os, sys
sys.stdin.readline()
if os.fork() == 0:
    os.closerange(0, 3)  # the test's pipes close when the parent dies, whatever survives
    os.setsid()
    if os.fork() == 0:
        while True: pass
    while True: pass
print("forked", flush=True)
while True: pass
"""


def unified_mount() -> str | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return left.split()[4]
    return None


@pytest.fixture
def slot() -> Iterator[SlotCgroupV2]:
    mount = unified_mount()
    if mount is None or not os.access(mount, os.W_OK):
        pytest.skip("no writable cgroup v2 hierarchy on this host")
    group = SlotCgroupV2(f"{mount}/sluice-test-{uuid.uuid4().hex[:8]}")
    yield group
    # Whatever the test left (it failed, say): killed, then the directory removed.
    assert remove_tree_dir(group.dir)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_a_double_forked_tree_in_a_v2_slot_is_counted_and_killed_whole(
    slot: SlotCgroupV2,
) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DOUBLE_FORKING_SPINNERS,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert parent.stdin is not None and parent.stdout is not None
    try:
        slot.attach(parent.pid)
        parent.stdin.write(b"go\n")
        assert await asyncio.wait_for(parent.stdout.readline(), 10) == b"forked\n"
        deadline = time.monotonic() + 5
        while len(slot.pids()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        tree = slot.pids()
        assert len(tree) == 3 and parent.pid in tree  # the daemon's children came along
        # The tree's CPU is the cgroup's: it grows while the spinners run (no timing
        # assumed, the machine is shared).
        before = slot.cpu_ns()
        while slot.cpu_ns() - before < 0.2e9 and time.monotonic() < deadline + 10:
            await asyncio.sleep(0.02)
        assert slot.cpu_ns() - before >= 0.2e9

        await slot.kill_all(spare=0)
        assert await slot.wait_empty(spare=0, within=5)
        assert await asyncio.wait_for(parent.wait(), 5) == -9
        assert not any(alive(pid) for pid in tree)
        assert not slot._is_frozen()  # thawed again for the next run
    finally:
        if parent.returncode is None:
            parent.kill()
            await asyncio.wait_for(parent.wait(), 5)
