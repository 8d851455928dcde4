"""A slot's sandbox is made ahead of time and serves job after job: nothing of one job
reaches the next in the same slot, and no job can harm the sandbox's init.

Every test runs on a one-slot pool, so consecutive jobs share the one sandbox.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator

import pytest

from execution_plane.sandbox import SandboxPool, Verdict
from sluice.settings import Settings
from tests.sandbox.harness import assert_host_untouched, run

MAX_RUNS = 6


@pytest.fixture
async def solo() -> AsyncIterator[SandboxPool]:
    sandbox = SandboxPool(slots=1, settings=Settings(sandbox_max_runs=MAX_RUNS))
    await sandbox.start()
    await sandbox.wait_released()
    yield sandbox
    await sandbox.close()


def init_pid(pool: SandboxPool) -> int:
    """The host pid of the slot's sandbox's init (pid 1 of its namespace)."""
    for pid in pool.slots[0].cgroup.home_pids():
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:") and line.split()[1:][-1] == "1":
                    if len(line.split()) > 2:
                        return pid
    raise AssertionError("no init in the slot")


async def fresh_sandbox(pool: SandboxPool) -> int:
    """Runs a trivial python job so the slot holds a python sandbox; its init's pid."""
    ran = await run(pool, "python", "pass")
    assert ran.outcome.verdict is Verdict.OK, ran.outcome
    await pool.wait_released()
    return init_pid(pool)


LEAVE_EVERYTHING = r"""
import ctypes, os, subprocess, sys
for d in ('/work', '/tmp'):
    with open(f'{d}/left-behind', 'w') as f:
        f.write('secret of the first job')
    os.makedirs(f'{d}/locked/deeper', exist_ok=True)
    with open(f'{d}/locked/deeper/hidden', 'w') as f:
        f.write('hidden')
    os.chmod(f'{d}/locked/deeper', 0)
    os.chmod(f'{d}/locked', 0)
    os.symlink('/etc/passwd', f'{d}/a-link')
    os.mkfifo(f'{d}/a-fifo')
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
shm = libc.shmget(0x5eed, 4096, IPC_CREAT | 0o600)
msg = libc.msgget(0x5eee, IPC_CREAT | 0o600)
sem = libc.semget(0x5eef, 1, IPC_CREAT | 0o600)
assert min(shm, msg, sem) >= 0, (shm, msg, sem)
# A background process that outlives the program: double fork, new session, and it keeps
# writing where the next job would look.
subprocess.Popen(
    ['/usr/bin/python3', '-c',
     'import os, time\nos.setsid()\nwhile True:\n'
     '    open("/work/daemon-was-here", "w").close()\n    time.sleep(0.01)\n'],
    start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL)
print('left', os.getpid())
"""

LOOK_AROUND = r"""
import json, os
seen = {d: sorted(os.listdir(d)) for d in ('/work', '/tmp')}
seen['sysv'] = {k: open(f'/proc/sysvipc/{k}').read().splitlines()[1:]
                for k in ('shm', 'msg', 'sem')}
seen['processes'] = sorted(p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid()))
seen['cmdlines'] = []
for p in seen['processes']:
    try:
        seen['cmdlines'].append(open(f'/proc/{p}/cmdline').read())
    except OSError:
        pass
print(json.dumps(seen))
"""


async def test_the_next_job_in_the_slot_sees_nothing_of_the_last(solo: SandboxPool) -> None:
    first_init = await fresh_sandbox(solo)
    left = await run(solo, "python", LEAVE_EVERYTHING)
    assert left.outcome.verdict is Verdict.OK, (left.outcome, left.stderr)
    looked = await run(solo, "python", LOOK_AROUND)
    assert looked.outcome.verdict is Verdict.OK, (looked.outcome, looked.stderr)
    seen = json.loads(looked.stdout)
    assert seen["/work"] == ["main.py"]  # its own file, nothing else
    assert seen["/tmp"] == []
    assert seen["sysv"] == {"shm": [], "msg": [], "sem": []}
    # Only init is there besides the program: no daemon, no zombie of the last job.
    assert seen["processes"] == ["1"], seen
    assert init_pid(solo) == first_init  # the same sandbox served both: it was reset
    await assert_host_untouched(solo)


async def test_the_compile_step_and_the_run_share_work_but_not_tmp(solo: SandboxPool) -> None:
    # A compiled job's steps run one after the other in the same sandbox: the run needs
    # the compile step's output in /work; /tmp is a fresh one for every step.
    ran = await run(
        solo,
        "c",
        '#include <stdio.h>\n#include <dirent.h>\nint main(void){DIR*d=opendir("/tmp");'
        "struct dirent*e;int n=0;while((e=readdir(d)))n++;printf(\"%d\\n\",n);return 0;}\n",
    )
    assert ran.outcome.verdict is Verdict.OK, ran.outcome
    assert ran.stdout == b"2\n"  # . and .. only: the compiler's temporaries are gone


async def test_a_job_cannot_kill_stop_or_trace_init(solo: SandboxPool) -> None:
    first_init = await fresh_sandbox(solo)
    attack = r"""
import ctypes, json, os, signal
results = {}
for name in ('SIGKILL', 'SIGSTOP', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGSEGV', 'SIGCHLD'):
    try:
        os.kill(1, getattr(signal, name))
        results[name] = 'sent'
    except OSError as e:
        results[name] = type(e).__name__
libc = ctypes.CDLL(None, use_errno=True)
results['ptrace'] = libc.ptrace(16, 1, None, None)
for path in ('/proc/1/mem', '/proc/1/environ', '/proc/1/fd/4', '/proc/1/root/work'):
    try:
        open(path, 'rb').read(1)
        results[path] = 'OPENED'
    except OSError as e:
        results[path] = type(e).__name__
# prlimit on init, to starve the runs it starts of their limits.
class Rlimit(ctypes.Structure):
    _fields_ = [('cur', ctypes.c_ulong), ('max', ctypes.c_ulong)]
low = Rlimit(1, 1)
results['prlimit'] = libc.prlimit(1, 7, ctypes.byref(low), None)
results['setpriority'] = libc.setpriority(0, 1, 19)
try:
    os.kill(-1, signal.SIGKILL)  # everything it may signal, init excluded by the kernel
except OSError:
    pass
print(json.dumps(results))
"""
    ran = await run(solo, "python", attack)
    # kill(-1) kills the program itself too; what it printed before is what counts.
    results = json.loads(ran.stdout)
    assert results["ptrace"] == -1
    for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/fd/4"):
        assert results[path] != "OPENED", results
    assert results["prlimit"] == -1 and results["setpriority"] == -1, results
    # Signals "sent" from inside the namespace never arrive: init is alive and serves on.
    assert init_pid(solo) == first_init
    with open(f"/proc/{first_init}/status") as status:  # noqa: ASYNC230 - procfs, instant
        state = status.read()
    assert "State:\tS" in state or "State:\tR" in state, state  # not stopped
    again = await run(solo, "python", "import resource\nprint(resource.getrlimit(7))")
    assert again.outcome.verdict is Verdict.OK, again.outcome
    assert again.stdout == b"(256, 256)\n"  # the configured open-files limit, not the job's
    assert init_pid(solo) == first_init
    await assert_host_untouched(solo)


async def test_a_job_that_fills_every_tmpfs_leaves_the_next_its_space(
    solo: SandboxPool,
) -> None:
    await fresh_sandbox(solo)
    fill = r"""
import os
for d in ('/work', '/tmp'):
    n = 0
    try:
        with open(f'{d}/fill', 'wb') as f:
            while True:
                f.write(b'x' * (1 << 20))
                n += 1
    except OSError:
        pass
    try:  # and the inodes
        for i in range(100000):
            open(f'{d}/i{i}', 'w').close()
    except OSError:
        pass
print('filled')
"""
    ran = await run(solo, "python", fill, memory_bytes=512 * 1024 * 1024)
    assert ran.stdout == b"filled\n", (ran.outcome, ran.stderr)
    use = r"""
import os
for d in ('/work', '/tmp'):
    with open(f'{d}/room', 'wb') as f:
        f.write(b'y' * (8 << 20))
print(sorted(os.listdir('/work')), sorted(os.listdir('/tmp')))
"""
    ran = await run(solo, "python", use)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert ran.stdout == b"['main.py', 'room'] ['room']\n"
    await assert_host_untouched(solo)


async def test_rlimits_a_job_lowers_are_whole_again_in_the_next(solo: SandboxPool) -> None:
    show = "print(open('/proc/self/limits').read())\nimport os\nprint(os.getpriority(0, 0))\n"
    before = await run(solo, "python", show)
    assert before.outcome.verdict is Verdict.OK, before.outcome
    lower = r"""
import os, resource
for res in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_STACK,
            resource.RLIMIT_FSIZE, resource.RLIMIT_CPU, resource.RLIMIT_AS,
            resource.RLIMIT_DATA, resource.RLIMIT_MEMLOCK, resource.RLIMIT_SIGPENDING,
            resource.RLIMIT_CORE, resource.RLIMIT_MSGQUEUE, resource.RLIMIT_NICE,
            resource.RLIMIT_RTPRIO, resource.RLIMIT_RTTIME):
    soft, hard = resource.getrlimit(res)
    low = 64 if res == resource.RLIMIT_NOFILE else 1 << 20 if res == resource.RLIMIT_AS else 1
    try:
        resource.setrlimit(res, (min(soft, low), min(hard, low)))
    except (OSError, ValueError):
        pass
os.umask(0o777)
print('lowered')
"""
    ran = await run(solo, "python", lower)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    after = await run(solo, "python", show)
    assert after.outcome.verdict is Verdict.OK, after.outcome
    assert after.stdout == before.stdout


async def test_every_run_gets_its_seccomp_filter_afresh(solo: SandboxPool) -> None:
    show = "print([l for l in open('/proc/self/status') if l.startswith('Seccomp')])"
    first = await run(solo, "python", show)
    second = await run(solo, "python", show)
    assert first.outcome.verdict is Verdict.OK, first.outcome
    assert first.stdout == second.stdout
    # One filter, the run's own, installed by init's zygote for every run alike.
    assert b"'Seccomp:\\t2\\n', 'Seccomp_filters:\\t1\\n'" in first.stdout


async def test_a_sandbox_serves_at_most_max_runs(solo: SandboxPool) -> None:
    inits = []
    for _ in range(MAX_RUNS * 2):
        ran = await run(solo, "python", "pass")
        assert ran.outcome.verdict is Verdict.OK, ran.outcome
        await solo.wait_released()
        inits.append(init_pid(solo))
    # The first job's sandbox may already have served the language probe's step.
    assert 2 <= len(set(inits)) <= 3, inits
    assert max(inits.count(pid) for pid in inits) <= MAX_RUNS


async def test_a_sandbox_whose_init_died_is_replaced(solo: SandboxPool) -> None:
    first_init = await fresh_sandbox(solo)
    os.kill(first_init, signal.SIGKILL)  # from the host: nothing in the sandbox could
    ran = await run(solo, "python", "print('fresh')")
    # The slot learns it only when it asks init for the run: that job is an internal error
    # (it never started) or already the fresh sandbox's.
    if ran.outcome.verdict is Verdict.INTERNAL_ERROR:
        ran = await run(solo, "python", "print('fresh')")
    assert ran.outcome.verdict is Verdict.OK and ran.stdout == b"fresh\n", ran.outcome
    assert init_pid(solo) != first_init
    await assert_host_untouched(solo)
