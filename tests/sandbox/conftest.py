"""Fixtures for tests that run programs through the real sandbox (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from execution_plane.sandbox import (
    JobOutcome,
    JobSpec,
    OutputStream,
    ResourceLimits,
    SandboxPool,
    SourceFile,
)

DEFAULT_LIMITS = ResourceLimits(
    wall_time_ms=10_000,
    cpu_time_ms=5_000,
    memory_bytes=256 * 1024 * 1024,
    max_processes=32,
    max_output_bytes=1024 * 1024,
)


@dataclass
class Ran:
    outcome: JobOutcome
    stdout: bytes = b""
    stderr: bytes = b""
    chunks: list[tuple[OutputStream, bytes]] = field(default_factory=list)


RunJob = Callable[..., Awaitable[Ran]]


@pytest.fixture(scope="session")
async def pool() -> AsyncIterator[SandboxPool]:
    sandbox = SandboxPool(slots=2)
    await sandbox.start()
    yield sandbox
    await sandbox.close()


@pytest.fixture
def run_job(pool: SandboxPool) -> RunJob:
    async def run(
        language: str,
        source: str | bytes,
        stdin: bytes = b"",
        args: list[str] | None = None,
        file_name: str | None = None,
        cancelled: asyncio.Event | None = None,
        extra_files: list[SourceFile] | None = None,
        **limits: int,
    ) -> Ran:
        info = {lang.id: lang for lang in pool.languages()}.get(language)
        name = file_name or (info.file_name if info else "main")
        content = source.encode() if isinstance(source, str) else source
        spec = JobSpec(
            language=language,
            files=[SourceFile(name, content), *(extra_files or [])],
            stdin=stdin,
            args=args or [],
            limits=ResourceLimits(**{**DEFAULT_LIMITS.__dict__, **limits}),
        )
        ran = Ran(JobOutcome(verdict=None))  # type: ignore[arg-type]

        async def sink(stream: OutputStream, data: bytes) -> None:
            ran.chunks.append((stream, data))
            if stream is OutputStream.STDOUT:
                ran.stdout += data
            else:
                ran.stderr += data

        ran.outcome = await pool.run_job(spec, sink, cancelled or asyncio.Event())
        return ran

    return run
