"""One sandboxed step (a compile or a run) on a slot: start it, stream it, limit it, judge it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import resource
import signal
import time
from typing import BinaryIO

from execution_plane.sandbox.contract import (
    JobOutcome,
    OutputSink,
    OutputStream,
    ResourceLimits,
    ResourceUsage,
    StdinSource,
    Verdict,
)
from execution_plane.sandbox.output import OutputCap
from execution_plane.sandbox.slot import Slot, SlotBroken

READ_CHUNK = 64 * 1024
SANDBOX_TASKS = 3  # the runner, bwrap's monitor and bwrap's pid 1 share the slot's pids limit
CPU_POLL_SECONDS = 0.05
DRAIN_SECONDS = 2.0
STATUS_BYTES = 64 * 1024  # bwrap writes two short JSON lines
STACK_BYTES = 64 * 1024 * 1024


def _rlimits(limits: ResourceLimits, tasks: int) -> list[tuple[int, int, int]]:
    cpu_seconds = math.ceil(limits.cpu_time_ms / 1000) + 1
    stack = min(STACK_BYTES, limits.memory_bytes)
    return [
        # Per process only (forked spinners evade it): the cgroup poll is the real limit,
        # this is the backstop should the service be starved.
        (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
        (resource.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes),
        (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
        (resource.RLIMIT_NPROC, tasks, tasks),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_STACK, stack, stack),
        (resource.RLIMIT_MSGQUEUE, 0, 0),
    ]


def _stdin_memfd(data: bytes) -> int:
    """stdin as a sealed memfd: the program can read it at its pace, never block us."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


async def _feed(pipe: BinaryIO, source: StdinSource) -> None:
    """An interactive run's stdin: each chunk goes down the pipe as it comes; the source's
    end closes the pipe once written (EOF). The transport buffers what the program has not
    read yet, so a slow reader never blocks the worker (the job's stdin cap bounds it)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
    try:
        async for chunk in source:
            if transport.is_closing():
                break  # the program closed its stdin or exited: nobody reads the rest
            transport.write(chunk)
    finally:
        transport.close()  # after what is buffered is written, or at once if it cannot be


def _stdin_fds(stdin: bytes | StdinSource) -> tuple[int, int | None]:
    """(the child's stdin, the write end of its pipe when stdin is fed live)."""
    if isinstance(stdin, bytes):
        return _stdin_memfd(stdin), None
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    return read_fd, write_fd


async def _pump(read_fd: int, stream: OutputStream, cap: OutputCap) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_CHUNK * 2)
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while chunk := await reader.read(READ_CHUNK):
            await cap.deliver(stream, chunk)
    finally:
        transport.close()


def _read_status(read_fd: int) -> int | None:
    """The program's exit code as bwrap reported it on its status fd, or None when bwrap
    never started the program (it failed setting the sandbox up, or was killed first).

    bwrap writes the "exit-code" line only if the program was exec'd; the program never
    holds this fd, so nothing it prints can forge or suppress the line. Read once the
    run has exited: by then bwrap has written everything and closed its end.
    """
    data = b""
    while len(data) < STATUS_BYTES:
        try:
            chunk = os.read(read_fd, STATUS_BYTES - len(data))
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    code = None
    for line in data.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and isinstance(document.get("exit-code"), int):
            code = document["exit-code"]
    return code


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


async def run_step(
    slot: Slot,
    argv: list[str],
    limits: ResourceLimits,
    stdin: bytes | StdinSource,
    sink: OutputSink,
    cancelled: asyncio.Event,
    runtime_tasks: int = 0,
) -> JobOutcome:
    """Run one sandboxed process tree to its end and say how it ended. stdin is the whole
    input, or a source fed to the program as it comes (an interactive job)."""
    tasks = limits.max_processes + runtime_tasks
    slot.cgroup.prepare(limits.memory_bytes, tasks + SANDBOX_TASKS)
    oom_before = slot.cgroup.oom_kills()
    cpu_before = slot.cgroup.cpu_ns()
    # The slot's cgroup still holds page cache of earlier steps (a compiler's binaries);
    # the run is charged only for what it adds on top.
    memory_before = slot.cgroup.memory_now()
    cap = OutputCap(limits.max_output_bytes, sink)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(status_r, False)  # read once, after the exit: whatever is there
    stdin_fd, stdin_w = _stdin_fds(stdin)
    pumps = [
        asyncio.create_task(_pump(out_r, OutputStream.STDOUT, cap)),
        asyncio.create_task(_pump(err_r, OutputStream.STDERR, cap)),
    ]
    feeder = None
    if stdin_w is not None:
        assert not isinstance(stdin, bytes)
        # A file object now: should the task never start, collecting it closes the fd.
        feeder = asyncio.create_task(_feed(os.fdopen(stdin_w, "wb", buffering=0), stdin))
    started = time.monotonic()
    try:
        try:
            fds = [stdin_fd, out_w, err_w, status_w]  # 0, 1, 2 and STATUS_FD in the child
            await slot.launch(argv, _rlimits(limits, tasks), fds)
        finally:
            for fd in (stdin_fd, out_w, err_w, status_w):
                os.close(fd)
        killed_for, exit_ = await _supervise(slot, limits, cap, cancelled, cpu_before, started)
        program_code = _read_status(status_r)
    except SlotBroken as exc:
        slot.broken = True
        for pump in pumps:
            pump.cancel()
        if feeder is not None:
            feeder.cancel()
        await slot.cgroup.kill_all(spare=slot.runner_pid)
        return JobOutcome(Verdict.INTERNAL_ERROR, detail=f"sandbox: {exc}")
    except asyncio.CancelledError:
        # The worker gave up on the job: the tree must not outlive it.
        for pump in pumps:
            pump.cancel()
        if feeder is not None:
            feeder.cancel()
        await asyncio.shield(slot.kill_run())
        raise
    finally:
        os.close(status_r)
    if feeder is not None:
        # The program is gone: input it never read has nowhere to go.
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await feeder
    wall_ms = int((time.monotonic() - started) * 1000)
    # bwrap's death takes its pid namespace along; the cgroup sweep is the second line
    # (and what frees the slot's pids charge before the next step).
    await slot.cgroup.kill_all(spare=slot.runner_pid)
    survivors = not await slot.cgroup.wait_empty(slot.runner_pid, within=1.0)
    _, pending = await asyncio.wait(pumps, timeout=DRAIN_SECONDS)
    for pump in pending:
        pump.cancel()
    if killed_for is None and cap.exceeded.is_set():
        killed_for = Verdict.OUTPUT_LIMIT_EXCEEDED  # it wrote too much, then exited first
    oom_killed = slot.cgroup.oom_kills() > oom_before
    peak = slot.cgroup.peak_memory()
    if not oom_killed:
        peak -= memory_before
    # else: the kernel reclaims the earlier steps' page cache before it OOM-kills, so at
    # the peak the cgroup held the run's own memory, and subtracting the cache counted
    # before the run would under-report it.
    usage = ResourceUsage(
        cpu_time_ms=(slot.cgroup.cpu_ns() - cpu_before) // 1_000_000,
        wall_time_ms=wall_ms,
        peak_memory_bytes=max(0, peak),
    )
    outcome = _judge(
        exit_.status if exit_ else None,
        program_code,
        killed_for,
        oom=oom_killed,
        cpu_exceeded=usage.cpu_time_ms >= limits.cpu_time_ms,
        first_stderr=cap.first_stderr,
    )
    outcome.usage = usage
    outcome.stdout_truncated = cap.truncated[OutputStream.STDOUT]
    outcome.stderr_truncated = cap.truncated[OutputStream.STDERR]
    if survivors and outcome.verdict is not Verdict.INTERNAL_ERROR:
        outcome.detail = "sandbox: tasks outlived the run"
    if cap.sink_error and not outcome.detail:
        outcome.detail = cap.sink_error.splitlines()[0]
    return outcome


async def _supervise(
    slot: Slot,
    limits: ResourceLimits,
    cap: OutputCap,
    cancelled: asyncio.Event,
    cpu_before: int,
    started: float,
) -> tuple[Verdict | None, object]:
    """Wait for the exit, killing on a breach. Returns (why we killed it, the exit)."""
    exit_task = asyncio.create_task(slot.wait_exit())
    watchers = {
        asyncio.create_task(cancelled.wait()): Verdict.CANCELLED,
        asyncio.create_task(cap.exceeded.wait()): Verdict.OUTPUT_LIMIT_EXCEEDED,
    }
    killed_for: Verdict | None = None
    cpu_limit_ns = limits.cpu_time_ms * 1_000_000
    try:
        while killed_for is None and not exit_task.done():
            remaining_wall = limits.wall_time_ms / 1000 - (time.monotonic() - started)
            if remaining_wall <= 0:
                killed_for = Verdict.TIME_LIMIT_EXCEEDED
                break
            done, _ = await asyncio.wait(
                [exit_task, *watchers],
                timeout=min(remaining_wall, CPU_POLL_SECONDS),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                if task in watchers:
                    killed_for = watchers[task]
            if killed_for is None and slot.cgroup.cpu_ns() - cpu_before >= cpu_limit_ns:
                killed_for = Verdict.TIME_LIMIT_EXCEEDED
        if killed_for is not None and not exit_task.done():
            await slot.kill_run()
        return killed_for, await exit_task
    finally:
        for task in [exit_task, *watchers]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SlotBroken):
                await task


def _judge(
    status: int | None,
    program_code: int | None,
    killed_for: Verdict | None,
    oom: bool,
    cpu_exceeded: bool,
    first_stderr: bytes,
) -> JobOutcome:
    """`status` is bwrap's wait status; `program_code` what bwrap's status fd said of the
    program (None: bwrap never started it)."""
    code = os.waitstatus_to_exitcode(status) if status is not None else -9
    if program_code is not None:
        code = program_code
    # bwrap exits with the program's code, or 128+N when the program died of signal N;
    # bwrap itself dying of a signal means we (or the OOM killer) killed the tree.
    signum = -code if code < 0 else (code - 128 if 128 < code < 128 + 65 else 0)
    signame = _signal_name(signum) if signum else ""
    if killed_for is Verdict.CANCELLED:
        return JobOutcome(Verdict.CANCELLED, exit_code=code, signal=signame)
    if killed_for is Verdict.OUTPUT_LIMIT_EXCEEDED:
        return JobOutcome(Verdict.OUTPUT_LIMIT_EXCEEDED, signal=signame or "SIGKILL")
    if oom:
        return JobOutcome(Verdict.MEMORY_LIMIT_EXCEEDED, exit_code=code, signal=signame)
    if killed_for is Verdict.TIME_LIMIT_EXCEEDED or cpu_exceeded or signame == "SIGXCPU":
        return JobOutcome(Verdict.TIME_LIMIT_EXCEEDED, signal=signame or "SIGKILL")
    if program_code is None:
        # bwrap failed before the program ran, so what is on stderr is bwrap's own message.
        # Never the other way round: a program's stderr proves nothing about bwrap.
        lines = first_stderr.decode(errors="replace").splitlines()
        why = lines[0] if lines else f"bwrap exited with {code} before starting the program"
        return JobOutcome(Verdict.INTERNAL_ERROR, exit_code=code, detail=f"sandbox: {why}")
    if signum:
        return JobOutcome(Verdict.SIGNALED, exit_code=code, signal=signame)
    if code != 0:
        return JobOutcome(Verdict.RUNTIME_ERROR, exit_code=code)
    return JobOutcome(Verdict.OK)
