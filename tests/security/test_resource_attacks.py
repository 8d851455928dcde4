"""Attacks on resources: each is contained, gets its verdict, and leaves the host as it was."""

from __future__ import annotations

import asyncio
import time

from execution_plane.sandbox import SandboxPool, Verdict
from tests.sandbox.harness import assert_host_untouched


async def test_fork_bomb(pool: SandboxPool, run_job) -> None:
    source = "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n"
    # The limits leave gcc, which runs within them too, room even in the emulated guest.
    ran = await run_job("c", source, cpu_time_ms=5000, wall_time_ms=10_000, max_processes=16)
    assert ran.outcome.verdict is Verdict.TIME_LIMIT_EXCEEDED
    await assert_host_untouched(pool)


async def test_thread_bomb(pool: SandboxPool, run_job) -> None:
    source = (
        "import threading, time, os\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "        n += 1\n"
        "except RuntimeError:\n"
        "    print(n, flush=True)\n"
        "    os._exit(0)\n"
    )
    ran = await run_job("python", source, max_processes=16)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert 0 < int(ran.stdout) < 16  # the main thread counts too
    await assert_host_untouched(pool)


async def test_memory_bomb(pool: SandboxPool, run_job) -> None:
    source = "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))\n"
    ran = await run_job("python", source, memory_bytes=64 << 20)
    assert ran.outcome.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    assert ran.outcome.usage.peak_memory_bytes > 32 << 20
    await assert_host_untouched(pool)


async def test_memory_bomb_in_a_child_counts(pool: SandboxPool, run_job) -> None:
    source = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    chunks = []\n"
        "    while True:\n"
        "        chunks.append(bytearray(8 << 20))\n"
        "os.wait()\n"
    )
    ran = await run_job("python", source, memory_bytes=64 << 20)
    assert ran.outcome.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    await assert_host_untouched(pool)


async def test_files_in_the_work_dir_count_as_memory(pool: SandboxPool, run_job) -> None:
    source = "with open('fill', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n"
    ran = await run_job(
        "python", source, memory_bytes=48 << 20, workdir_bytes=256 << 20, max_file_bytes=1 << 30
    )
    assert ran.outcome.verdict is Verdict.MEMORY_LIMIT_EXCEEDED
    await assert_host_untouched(pool)


async def test_a_program_that_fails_on_its_own_is_not_an_oom(pool: SandboxPool, run_job) -> None:
    source = "import sys\nx = bytearray(16 << 20)\nsys.exit(137)\n"
    ran = await run_job("python", source, memory_bytes=64 << 20)
    assert ran.outcome.verdict is not Verdict.MEMORY_LIMIT_EXCEEDED
    assert ran.outcome.exit_code == 137


async def test_cpu_spin(pool: SandboxPool, run_job) -> None:
    ran = await run_job("python", "while True:\n    pass\n", cpu_time_ms=1000, wall_time_ms=20_000)
    assert ran.outcome.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert ran.outcome.usage.cpu_time_ms >= 1000
    assert ran.outcome.usage.wall_time_ms < 15_000  # the CPU limit, not the wall limit
    await assert_host_untouched(pool)


async def test_cpu_spin_in_forked_children(pool: SandboxPool, run_job) -> None:
    # RLIMIT_CPU is per process: four spinners each under it must still hit the job's limit.
    source = "import os\nfor _ in range(3):\n    os.fork()\nwhile True:\n    pass\n"
    ran = await run_job("python", source, cpu_time_ms=2000, wall_time_ms=30_000)
    assert ran.outcome.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert ran.outcome.usage.cpu_time_ms >= 2000
    assert ran.outcome.usage.wall_time_ms < 20_000
    await assert_host_untouched(pool)


async def test_sleep_forever(pool: SandboxPool, run_job) -> None:
    start = time.monotonic()
    ran = await run_job("python", "import time\ntime.sleep(3600)\n", wall_time_ms=1000)
    assert ran.outcome.verdict is Verdict.TIME_LIMIT_EXCEEDED
    assert ran.outcome.signal == "SIGKILL"
    assert time.monotonic() - start < 10
    await assert_host_untouched(pool)


async def test_output_flood(pool: SandboxPool, run_job) -> None:
    source = "import sys\nwhile True:\n    sys.stdout.write('x' * 1000)\n"
    ran = await run_job("python", source, max_output_bytes=64 * 1024, wall_time_ms=20_000)
    assert ran.outcome.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert ran.outcome.stdout_truncated and not ran.outcome.stderr_truncated
    assert ran.stdout == b"x" * (64 * 1024)  # the kept part is delivered, exactly the cap
    assert all(len(data) <= 64 * 1024 for _, data in ran.chunks)
    await assert_host_untouched(pool)


async def test_output_flood_on_both_streams_shares_one_cap(pool: SandboxPool, run_job) -> None:
    source = (
        "import sys\nwhile True:\n"
        "    sys.stdout.write('o' * 999)\n    sys.stderr.write('e' * 999)\n"
    )
    ran = await run_job("python", source, max_output_bytes=100_000, wall_time_ms=20_000)
    assert ran.outcome.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert len(ran.stdout) + len(ran.stderr) == 100_000
    assert ran.outcome.stdout_truncated or ran.outcome.stderr_truncated
    await assert_host_untouched(pool)


async def test_disk_fill(pool: SandboxPool, run_job) -> None:
    source = (
        "import errno\n"
        "for path in ('/work/fill', '/tmp/fill'):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            while True:\n"
        "                f.write(b'x' * (1 << 20))\n"
        "                f.flush()\n"
        "    except OSError as e:\n"
        "        print(path, errno.errorcode[e.errno])\n"
    )
    ran = await run_job(
        "python", source, workdir_bytes=8 << 20, max_file_bytes=1 << 30, memory_bytes=256 << 20
    )
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert ran.stdout == b"/work/fill ENOSPC\n/tmp/fill ENOSPC\n"
    await assert_host_untouched(pool)


async def test_file_size_limit(pool: SandboxPool, run_job) -> None:
    source = (
        "#include <stdio.h>\n#include <string.h>\n"
        "int main(void) { char b[65536]; memset(b, 'x', sizeof b);\n"
        '  FILE *f = fopen("big", "wb");\n'
        "  for (int i = 0; i < 64; i++) { fwrite(b, 1, sizeof b, f); fflush(f); }\n"
        "  return 0; }\n"
    )
    ran = await run_job("c", source, max_file_bytes=1 << 20)
    assert ran.outcome.verdict is Verdict.SIGNALED
    assert ran.outcome.signal == "SIGXFSZ"
    await assert_host_untouched(pool)


async def test_too_many_open_files(pool: SandboxPool, run_job) -> None:
    source = (
        "import os\nfds = []\n"
        "try:\n    while True:\n        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
        "except OSError as e:\n    print(len(fds), e.strerror)\n"
    )
    ran = await run_job("python", source, max_open_files=64)
    assert ran.outcome.verdict is Verdict.OK
    count, _, message = ran.stdout.decode().partition(" ")
    assert int(count) < 64 and "Too many open files" in message
    await assert_host_untouched(pool)


async def test_cancel_a_fork_bomb(pool: SandboxPool, run_job) -> None:
    cancelled = asyncio.Event()
    asyncio.get_running_loop().call_later(1.0, cancelled.set)
    source = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    ran = await run_job(
        "python", source, cancelled=cancelled, cpu_time_ms=60_000, wall_time_ms=60_000
    )
    assert ran.outcome.verdict is Verdict.CANCELLED
    assert time.monotonic() - start < 1.0 + 2.0
    await assert_host_untouched(pool)


async def test_output_over_the_cap_then_a_quick_exit(pool: SandboxPool, run_job) -> None:
    source = "import os\nos.write(1, b'y' * 300_000)\n"
    ran = await run_job("python", source, max_output_bytes=64 * 1024)
    assert ran.outcome.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert ran.outcome.stdout_truncated
    assert ran.stdout == b"y" * (64 * 1024)
    await assert_host_untouched(pool)
