"""Every language of the registry, through the real sandbox: stdin fed live from an async
source (an interactive job) up to its EOF, and test cases run after one compile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from execution_plane.sandbox import JobSpec, OutputStream, SandboxPool, SourceFile, Verdict
from execution_plane.sandbox.contract import Comparison
from execution_plane.sandbox.contract import TestCaseOutcome as CaseOutcome
from execution_plane.sandbox.contract import TestCaseSpec as CaseSpec
from tests.sandbox.harness import DEFAULT_LIMITS
from tests.sandbox.test_languages import ECHO


def _spec(pool: SandboxPool, language: str, **fields: object) -> JobSpec:
    info = {lang.id: lang for lang in pool.languages()}[language]
    return JobSpec(language=language,
                   files=[SourceFile(info.file_name, ECHO[language].encode())],
                   args=[], limits=DEFAULT_LIMITS, **fields)  # type: ignore[arg-type]


def _available(pool: SandboxPool, language: str) -> None:
    if language not in {lang.id for lang in pool.languages()}:
        pytest.skip(f"{language} not on this machine: {pool.unavailable.get(language)}")


@pytest.mark.parametrize("language", sorted(ECHO))
async def test_live_stdin_reaches_the_program_then_eof(pool: SandboxPool,
                                                       language: str) -> None:
    _available(pool, language)
    pieces = [b"first line\n", b"second ", b"line \xc3\xa9\n"]

    async def typed() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(0.2)  # the program has started and waits for more
            yield piece

    stdout = bytearray()

    async def sink(stream: OutputStream, data: bytes) -> None:
        if stream is OutputStream.STDOUT:
            stdout.extend(data)

    outcome = await pool.run_job(_spec(pool, language, stdin=typed()), sink, asyncio.Event())
    assert outcome.verdict is Verdict.OK, outcome
    assert bytes(stdout) == b"".join(pieces)


@pytest.mark.parametrize("language", sorted(ECHO))
async def test_cases_run_after_one_compile(pool: SandboxPool, language: str) -> None:
    _available(pool, language)
    cases = [
        CaseSpec("same", b"a b\n", [], b"a b\n"),
        CaseSpec("trailing", b"x  \n\n", [], b"x"),
        CaseSpec("wrong", b"yes\n", [], b"no\n"),
        CaseSpec("unchecked", b"anything\n", [], None),
    ]
    seen: list[CaseOutcome] = []

    async def on_case(case: CaseOutcome) -> None:
        seen.append(case)

    async def no_output(stream: OutputStream, data: bytes) -> None:
        raise AssertionError("a case's output goes to its result, not the job's stream")

    outcome = await pool.run_job(
        _spec(pool, language, stdin=b"", test_cases=cases,
              comparison=Comparison.IGNORE_TRAILING_WHITESPACE),
        no_output, asyncio.Event(), on_case=on_case)
    assert [(c.name, c.outcome.verdict) for c in seen] == [
        ("same", Verdict.OK), ("trailing", Verdict.OK), ("wrong", Verdict.WRONG_ANSWER),
        ("unchecked", Verdict.OK)]
    assert seen[2].stdout == b"yes\n"
    assert outcome.verdict is Verdict.WRONG_ANSWER
    assert outcome.usage.cpu_time_ms >= sum(c.outcome.usage.cpu_time_ms for c in seen)


async def test_each_case_starts_from_the_work_dir_the_compile_left(pool: SandboxPool) -> None:
    source = ("import os\nprint(sorted(os.listdir('.')))\n"
              "open('left-behind', 'w').write('x')\nos.remove('main.py')\n")
    cases = [CaseSpec(f"case-{i}", b"", [], b"['main.py']\n") for i in range(3)]
    seen: list[CaseOutcome] = []

    async def on_case(case: CaseOutcome) -> None:
        seen.append(case)

    async def no_output(stream: OutputStream, data: bytes) -> None:
        raise AssertionError("a case's output goes to its result")

    spec = JobSpec(language="python", files=[SourceFile("main.py", source.encode())],
                   stdin=b"", args=[], limits=DEFAULT_LIMITS, test_cases=cases)
    outcome = await pool.run_job(spec, no_output, asyncio.Event(), on_case=on_case)
    assert [c.outcome.verdict for c in seen] == [Verdict.OK] * 3, [c.stdout for c in seen]
    assert outcome.verdict is Verdict.OK
