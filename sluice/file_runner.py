"""`sluice run FILE`: submit a file, stream its output to this terminal, exit as it did."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import grpc

from sluice.case_table import NoCases, print_cases, read_cases
from sluice.client import SluiceClient, local_api_key
from sluice.settings import get_settings
from sluice.terminal_session import run_interactive, stream_to_terminal
from sluice.v1 import execution_service_pb2 as api
from sluice.v1 import job_pb2 as pb


def exit_code_for(result: pb.Result) -> int:
    """The program's own exit code; shell conventions for what killed it."""
    if result.verdict in (pb.VERDICT_OK, pb.VERDICT_RUNTIME_ERROR):
        return result.exit_code
    if result.verdict == pb.VERDICT_SIGNALED and result.signal:
        number = getattr(signal.Signals, result.signal, None)
        return 128 + int(number) if number is not None else 1
    if result.verdict == pb.VERDICT_TIME_LIMIT_EXCEEDED:
        return 124
    return 1


async def run_file(path: Path, *, language: str | None, stdin: bytes, args: list[str],
                   api_key: str | None, target: str | None, interactive: bool = False,
                   cases: Path | None = None) -> int:
    """interactive: this terminal is the program's stdin (sluice/terminal_session.py);
    cases: a directory of test cases (sluice/case_table.py)."""
    api_key = api_key or local_api_key()
    if not api_key:
        print("sluice: no API key: set SLUICE_API_KEY (from `sluice tenant create NAME`), "
              "or start the platform here with `sluice up`", file=sys.stderr)
        return 2
    try:
        content = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"sluice: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    test_cases: list[pb.TestCase] = []
    if cases is not None:
        try:
            test_cases = await asyncio.to_thread(read_cases, cases)
        except (OSError, NoCases) as exc:
            print(f"sluice: --cases {cases}: {exc}", file=sys.stderr)
            return 2
    async with SluiceClient(target or get_settings().api_address, api_key) as client:
        if language is None:
            language = await _language_for(client, path)
            if language is None:
                print(f"sluice: no language runs {path.suffix or 'files without an extension'}"
                      "; give one with --language (see the list with `sluice languages`)",
                      file=sys.stderr)
                return 2
        job = await client.submit(api.SubmitJobRequest(
            language=language, files=[pb.File(name=path.name, content=content)],
            stdin=stdin, args=args, interactive=interactive, test_cases=test_cases,
            comparison=(pb.COMPARISON_IGNORE_TRAILING_WHITESPACE if test_cases
                        else pb.COMPARISON_UNSPECIFIED)))
        print(f"sluice: job {job.id} queued ({language})", file=sys.stderr)
        try:
            if interactive:
                result = await run_interactive(client, job.id)
            elif test_cases:
                result = await print_cases(client, job.id)
            else:
                result = await stream_to_terminal(client.watch(job.id))
        except (KeyboardInterrupt, grpc.aio.AioRpcError):
            await client.cancel(job.id)
            raise
        if result is None:
            job = await client.get(job.id)
            result = job.result
        return report_result(result)




def report_result(result: pb.Result) -> int:
    """Says on stderr how a job that did not succeed ended; the exit code for it."""
    if result.verdict != pb.VERDICT_OK:
        extra = result.signal or result.detail or ""
        print(f"sluice: {pb.Verdict.Name(result.verdict)}"
              f"{' (' + extra + ')' if extra else ''}, exit code {result.exit_code}",
              file=sys.stderr)
        if result.compile_output:
            print(result.compile_output, file=sys.stderr)
    return exit_code_for(result)


async def _language_for(client: SluiceClient, path: Path) -> str | None:
    for language in await client.languages():
        if Path(language.file_name).suffix == path.suffix:
            return language.id
    return None
