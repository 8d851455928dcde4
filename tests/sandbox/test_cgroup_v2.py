"""The cgroup v2 slot against the real kernel, as far as a v1 machine allows.

Hosts with the controllers on v1 (this CI machine) still mount an empty unified hierarchy,
and there a cgroup has the v2 core files without any controller: cgroup.procs,
cgroup.freeze, cgroup.events and cpu.stat. That is the half of SlotCgroupV2 that keeps a
job's tree from outliving it (freeze, kill every task, thaw) and measures its CPU; the
memory and pids limits need the controllers delegated: tests/cgroup_v2_vm runs this file,
with the verdict and attack tests, in a guest that has them.
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


@pytest.fixture
def limited_slot(slot: SlotCgroupV2) -> SlotCgroupV2:
    if not (os.path.exists(f"{slot.dir}/memory.max") and os.path.exists(f"{slot.dir}/pids.max")):
        pytest.skip("memory and pids are not delegated in this host's cgroup v2 hierarchy"
                    " (tests/cgroup_v2_vm runs this file in a guest where they are)")
    return slot


async def _started_in(slot: SlotCgroupV2, source: str) -> asyncio.subprocess.Process:
    """A python program attached to the slot before it does anything (it waits for a line)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.readline()\n" + source,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    slot.attach(process.pid)
    process.stdin.write(b"go\n")
    return process


async def test_a_v2_slot_over_its_memory_limit_is_oom_killed_and_counted(
    limited_slot: SlotCgroupV2,
) -> None:
    limited_slot.prepare(memory_bytes=32 << 20, max_tasks=16)
    assert limited_slot.oom_kills() == 0
    hog = await _started_in(limited_slot, "held = b'x' * (256 << 20)\nprint('survived')")
    stdout, _ = await asyncio.wait_for(hog.communicate(), 60)
    assert hog.returncode == -9 and b"survived" not in stdout
    assert limited_slot.oom_kills() == 1
    assert 16 << 20 <= limited_slot.peak_memory() <= 32 << 20


async def test_a_v2_slot_refuses_tasks_past_its_pids_limit(limited_slot: SlotCgroupV2) -> None:
    limited_slot.prepare(memory_bytes=256 << 20, max_tasks=4)
    forker = await _started_in(limited_slot, """
import os, time
forked = 0
for _ in range(10):
    try:
        pid = os.fork()
    except BlockingIOError:  # EAGAIN: the cgroup's pids.max
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
print(forked, len(os.listdir("/proc/self/task")), flush=True)
time.sleep(60)
""")
    assert forker.stdout is not None
    try:
        forked, threads = map(int, (await asyncio.wait_for(forker.stdout.readline(), 60)).split())
        assert forked + threads == 4  # every task the cgroup may hold, and not one more
        assert len(limited_slot.pids()) == 4
    finally:
        await limited_slot.kill_all(spare=0)
        assert await limited_slot.wait_empty(spare=0, within=5)
        await asyncio.wait_for(forker.wait(), 5)
