"""The ordinary verdicts and the streaming contract, through the real sandbox."""

from __future__ import annotations

import asyncio

from execution_plane.sandbox import JobSpec, OutputStream, ResourceLimits, SourceFile, Verdict


async def test_exit_code_is_a_runtime_error(run_job) -> None:
    ran = await run_job("python", "import sys; print('bye'); sys.exit(3)")
    assert ran.outcome.verdict is Verdict.RUNTIME_ERROR
    assert ran.outcome.exit_code == 3
    assert ran.stdout == b"bye\n"


async def test_uncaught_signal_is_signaled(run_job) -> None:
    ran = await run_job("c", "#include <signal.h>\nint main(void){ raise(SIGSEGV); return 0; }")
    assert ran.outcome.verdict is Verdict.SIGNALED
    assert ran.outcome.signal == "SIGSEGV"


async def test_compile_error_carries_the_compiler_output(run_job) -> None:
    ran = await run_job("c", "int main(void) { return undefined_name; }\n")
    assert ran.outcome.verdict is Verdict.COMPILE_ERROR
    assert "undefined_name" in ran.outcome.compile_output
    assert ran.stdout == b""


async def test_args_reach_the_program(run_job) -> None:
    ran = await run_job("python", "import sys; print(sys.argv[1:])", args=["a b", "--c"])
    assert ran.stdout == b"['a b', '--c']\n"


async def test_stderr_is_its_own_stream(run_job) -> None:
    ran = await run_job("python", "import sys; print('out'); print('err', file=sys.stderr)")
    assert ran.outcome.verdict is Verdict.OK
    assert (ran.stdout, ran.stderr) == (b"out\n", b"err\n")


async def test_output_streams_while_the_program_runs(pool) -> None:
    source = b"import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.4)\n"
    limits = ResourceLimits(20_000, 10_000, 1 << 28, 16, 1 << 20)
    spec = JobSpec("python", [SourceFile("main.py", source)], b"", [], limits)
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[float, bytes]] = []

    async def sink(stream: OutputStream, data: bytes) -> None:
        arrivals.append((loop.time(), data))

    outcome = await pool.run_job(spec, sink, asyncio.Event())
    assert outcome.verdict is Verdict.OK
    assert b"".join(data for _, data in arrivals) == b"0\n1\n2\n"
    # Delivered as printed (python runs unbuffered), not all at once at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.5


async def test_extra_files_are_importable(run_job) -> None:
    ran = await run_job(
        "python",
        "import helper; print(helper.X)",
        extra_files=[SourceFile("helper.py", b"X = 42\n")],
    )
    assert ran.stdout == b"42\n"


async def test_unknown_language_is_an_internal_error(pool) -> None:
    limits = ResourceLimits(1000, 1000, 1 << 26, 8, 1024)
    spec = JobSpec("cobol", [SourceFile("a.cob", b"")], b"", [], limits)

    async def sink(stream: OutputStream, data: bytes) -> None:
        raise AssertionError("no output expected")

    outcome = await pool.run_job(spec, sink, asyncio.Event())
    assert outcome.verdict is Verdict.INTERNAL_ERROR
    assert "cobol" in outcome.detail


async def test_a_bad_file_name_is_refused(run_job) -> None:
    ran = await run_job("python", "print(1)", file_name="../escape.py")
    assert ran.outcome.verdict is Verdict.INTERNAL_ERROR


async def test_cancel_kills_a_running_job_within_a_second(run_job) -> None:
    cancelled = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, cancelled.set)
    start = loop.time()
    ran = await run_job("python", "import time; time.sleep(60)", cancelled=cancelled)
    assert ran.outcome.verdict is Verdict.CANCELLED
    assert loop.time() - start < 0.5 + 1.5


async def test_already_cancelled_job_never_runs(run_job) -> None:
    cancelled = asyncio.Event()
    cancelled.set()
    ran = await run_job("python", "print('ran')", cancelled=cancelled)
    assert ran.outcome.verdict is Verdict.CANCELLED
    assert ran.stdout == b""


async def test_many_jobs_at_once_share_the_slots(run_job) -> None:
    results = await asyncio.gather(*(run_job("python", f"print({i})") for i in range(8)))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(8)]
    assert all(r.outcome.verdict is Verdict.OK for r in results)


async def test_a_failing_output_sink_does_not_stall_the_program(pool) -> None:
    limits = ResourceLimits(20_000, 10_000, 1 << 28, 16, 10 << 20)
    source = b"import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 1000)\n"
    spec = JobSpec("python", [SourceFile("main.py", source)], b"", [], limits)

    async def broken_sink(stream: OutputStream, data: bytes) -> None:
        raise ConnectionError("gateway went away")

    outcome = await pool.run_job(spec, broken_sink, asyncio.Event())
    assert outcome.verdict is Verdict.OK
    assert "output sink failed" in outcome.detail
