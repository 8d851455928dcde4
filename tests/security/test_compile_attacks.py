"""Attacks through the compile step: options smuggled in as file names, and compiling as a
way to use more than the job's limits without paying for it."""

from __future__ import annotations

import pytest

from execution_plane.languages import load_registry
from execution_plane.sandbox import SandboxPool, SourceFile, Verdict
from execution_plane.sandbox.budget import compile_limits, total_usage
from execution_plane.sandbox.contract import ResourceLimits, ResourceUsage
from tests.sandbox.harness import assert_host_untouched


async def test_an_entry_named_like_an_option_runs_as_a_file(pool: SandboxPool, run_job) -> None:
    # `python3 -u -c ARG` would run the first job arg as the program, not the file.
    ran = await run_job(
        "python", "print('the file ran')\n", file_name="-c", args=["print('injected')"]
    )
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert ran.stdout == b"the file ran\n"
    await assert_host_untouched(pool)


# gcc, rustc and javac read `@opts` as "the arguments in the file opts": the job's own
# file list then chose what was compiled, and how (gcc's -wrapper or -fplugin run any
# program the job ships, under the compile step's limits).
AT_FILE_ATTACKS = {
    "c": (
        b"-x c ./prog.txt\n",
        SourceFile("prog.txt", b'#include <stdio.h>\nint main(void) { puts("injected"); }\n'),
    ),
    "rust": (b"prog.rs\n", SourceFile("prog.rs", b'fn main() { println!("injected"); }\n')),
    "java": (
        b"Inject.java\n",
        SourceFile(
            "Inject.java",
            b'class Main { public static void main(String[] a) {'
            b' System.out.println("injected"); } }\n',
        ),
    ),
}


@pytest.mark.parametrize("language", sorted(AT_FILE_ATTACKS))
async def test_an_entry_named_at_file_is_not_read_as_compiler_options(
    pool: SandboxPool, run_job, language: str
) -> None:
    if language not in pool.available:
        pytest.skip(f"{language} not on this machine: {pool.unavailable.get(language)}")
    options, program = AT_FILE_ATTACKS[language]
    ran = await run_job(
        language, "", file_name="@opts", extra_files=[SourceFile("opts", options), program]
    )
    assert ran.outcome.verdict is Verdict.COMPILE_ERROR, (ran.outcome, ran.stdout)
    assert b"injected" not in ran.stdout
    await assert_host_untouched(pool)


@pytest.mark.parametrize("entry", ["@opts", "-o", "--help", "-"])
def test_every_language_gets_its_entry_as_a_path(entry: str) -> None:
    registry = load_registry()
    assert registry.languages
    for language in registry.languages:
        for template, argv in (
            (language.compile, language.compile_argv(entry, 1 << 28)),
            (language.run, language.run_argv(entry, [], 1 << 28)),
        ):
            # The bare name only where the command itself has it (gcc's own "-o").
            assert argv.count(entry) == template.count(entry), (language.id, argv)
            assert argv.count("./" + entry) == template.count("{file}"), (language.id, argv)


async def test_a_compiler_made_to_burn_cpu_stops_at_the_jobs_limit_and_is_charged(
    pool: SandboxPool, run_job
) -> None:
    # Constant evaluation that keeps g++ busy for seconds (up to its own operation limit):
    # the compile step used to have 20 s of CPU of its own, whatever the job's limit.
    source = (
        "constexpr long spin() { long s = 0;\n"
        "  for (long i = 0; i < 200000; i++) for (long j = 0; j < 200000; j++) s += j;\n"
        "  return s; }\n"
        "static_assert(spin() != 1);\n"
        "int main() { return 0; }\n"
    )
    ran = await run_job("cpp", source, cpu_time_ms=1000, wall_time_ms=30_000)
    outcome = ran.outcome
    assert outcome.verdict is Verdict.COMPILE_ERROR, outcome
    assert outcome.detail == "compile step: TIME_LIMIT_EXCEEDED", outcome
    assert 1000 <= outcome.usage.cpu_time_ms < 20_000, outcome.usage
    await assert_host_untouched(pool)


def test_the_compile_step_lives_within_the_jobs_limits() -> None:
    caps = load_registry().compile_limits
    job = ResourceLimits(
        wall_time_ms=4000,
        cpu_time_ms=2000,
        memory_bytes=64 << 20,
        max_processes=4,
        max_output_bytes=1024,
        workdir_bytes=8 << 20,
    )
    step = compile_limits(caps, job)
    assert (step.wall_time_ms, step.cpu_time_ms, step.memory_bytes, step.workdir_bytes) == (
        4000,
        2000,
        64 << 20,
        8 << 20,
    )
    spent = ResourceUsage(cpu_time_ms=1500, wall_time_ms=1800, peak_memory_bytes=50 << 20)
    ran = ResourceUsage(cpu_time_ms=400, wall_time_ms=600, peak_memory_bytes=10 << 20)
    assert total_usage(spent, ran) == ResourceUsage(1900, 2400, 50 << 20)


def _cpp_spending(iterations: int) -> str:
    return (
        "constexpr long spin() { long s = 0;\n"
        f"  for (long i = 0; i < {iterations}; i++) for (long j = 0; j < 1000; j++) s += j;\n"
        "  return s; }\n"
        "static_assert(spin() != 1);\n"
        "int main() { return 0; }\n"
    )


async def test_a_compiled_jobs_usage_counts_the_compile_step(pool: SandboxPool, run_job) -> None:
    # Two programs that do the same nothing when they run; one makes the compiler work
    # (about a quarter of a second of g++ here; much more in the emulated cgroup v2 guest,
    # hence the room). The tenant pays for that work too.
    room = {"cpu_time_ms": 30_000, "wall_time_ms": 60_000}
    light = await run_job("cpp", _cpp_spending(1), **room)
    heavy = await run_job("cpp", _cpp_spending(500), **room)
    for ran in (light, heavy):
        assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.outcome.compile_output)
    assert heavy.outcome.usage.cpu_time_ms >= light.outcome.usage.cpu_time_ms + 100, (
        light.outcome.usage,
        heavy.outcome.usage,
    )
    await assert_host_untouched(pool)
