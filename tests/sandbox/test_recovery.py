"""The pool survives its own parts failing: a dead runner, a cancelled caller, a dead
worker's frozen leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from execution_plane.sandbox import SandboxPool, Verdict
from execution_plane.sandbox.cgroups import locate_bases, thaw_tree_dir
from execution_plane.sandbox.stale import reclaim_stale
from tests.sandbox.harness import (
    assert_host_untouched,
    living_processes_of_uids,
    processes_of_uids,
    run,
)


@pytest.fixture
async def solo() -> AsyncIterator[SandboxPool]:
    sandbox = SandboxPool(slots=1)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


async def test_a_runner_killed_mid_run_is_an_internal_error_and_is_replaced(
    solo: SandboxPool,
) -> None:
    job = asyncio.create_task(run(solo, "python", "import time\ntime.sleep(30)\n"))
    await asyncio.sleep(0.5)
    os.kill(solo.slots[0].runner_pid, signal.SIGKILL)
    ran = await asyncio.wait_for(job, timeout=10)
    assert ran.outcome.verdict is Verdict.INTERNAL_ERROR
    assert ran.outcome.detail.startswith("sandbox: ")
    # The outcome comes back before the slot is swept (its cgroup killed, its runner
    # replaced); once it is, the dead runner's bwrap is at most a zombie of whatever init
    # adopted it, and nothing runs.
    await solo.wait_released()
    assert living_processes_of_uids({solo.slots[0].uid}) == []
    ran = await run(solo, "python", "print('replaced')")
    assert ran.outcome.verdict is Verdict.OK and ran.stdout == b"replaced\n"


async def test_a_cancelled_caller_leaves_nothing_running(solo: SandboxPool) -> None:
    job = asyncio.create_task(run(solo, "python", "import time\ntime.sleep(30)\n"))
    await asyncio.sleep(0.5)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await assert_host_untouched(solo)


async def test_close_kills_running_jobs(solo: SandboxPool) -> None:
    job = asyncio.create_task(run(solo, "python", "import time\ntime.sleep(30)\n"))
    await asyncio.sleep(0.5)
    uid = solo.slots[0].uid
    await solo.close()
    ran = await asyncio.wait_for(job, timeout=10)
    assert ran.outcome.verdict is Verdict.INTERNAL_ERROR
    assert processes_of_uids({uid}) == []  # not even a zombie


def test_a_dead_workers_frozen_slot_is_thawed_killed_and_removed(tmp_path: Path) -> None:
    """A worker killed between freezing a slot and thawing it leaves a frozen task, which
    under cgroup v1 ignores SIGKILL until thawed: the next pool's start must still clear it."""
    version, bases = locate_bases()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid with no process: the dead worker's
    name = f"sluice-{gone.pid}-0"
    victim = subprocess.Popen(["sleep", "300"])
    try:
        for base in bases.values():
            slot = os.path.join(base, name, "slot-0")
            os.makedirs(slot)
            Path(slot, "cgroup.procs").write_text(str(victim.pid))
        if version == 1:
            freezer = Path(bases["freezer"], name, "slot-0", "freezer.state")
            freezer.write_text("FROZEN")
            frozen = lambda: freezer.read_text().strip() == "FROZEN"  # noqa: E731
        else:
            Path(bases[""], name, "slot-0", "cgroup.freeze").write_text("1")
            events = Path(bases[""], name, "slot-0", "cgroup.events")
            frozen = lambda: "frozen 1" in events.read_text()  # noqa: E731
        deadline = time.monotonic() + 2
        while not frozen():
            assert time.monotonic() < deadline, "the test's cgroup did not freeze"
            time.sleep(0.01)

        removed = reclaim_stale(str(tmp_path))

        assert victim.wait(timeout=5) == -signal.SIGKILL
        for base in bases.values():
            assert not os.path.exists(os.path.join(base, name)), base
            assert os.path.join(base, name) in removed
    finally:
        if victim.poll() is None:
            for base in bases.values():
                thaw_tree_dir(os.path.join(base, name))
            victim.kill()
            victim.wait()
