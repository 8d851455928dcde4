"""A program cannot pass its own failure off as the sandbox's: whether the sandbox failed
(bwrap could not make it, or its init could not start the program) comes from bwrap's
stderr before init answers and from init's control socket, which the program never holds,
not from anything the program prints."""

from __future__ import annotations

import asyncio
import json

import pytest

from execution_plane.languages import Language
from execution_plane.sandbox import SandboxPool, Verdict
from execution_plane.sandbox.output import CollectingSink
from execution_plane.sandbox.slot import Slot
from tests.sandbox.harness import DEFAULT_LIMITS, assert_host_untouched

BWRAP_LINES = [
    "bwrap: Can't mount proc on /newroot/proc: Operation not permitted",
    "bwrap: execvp ./main: No such file or directory",
]


@pytest.mark.parametrize("line", BWRAP_LINES)
async def test_a_program_printing_bwrap_errors_is_a_runtime_error(
    pool: SandboxPool, run_job, line: str
) -> None:
    source = f"import sys\nsys.stderr.write({line + chr(10)!r})\nsys.exit(1)\n"
    ran = await run_job("python", source)
    assert ran.outcome.verdict is Verdict.RUNTIME_ERROR, ran.outcome
    assert (ran.outcome.exit_code, ran.outcome.detail) == (1, "")
    assert ran.stderr.decode().startswith("bwrap: ")
    await assert_host_untouched(pool)


async def test_the_same_from_a_shell_and_a_compiled_program(pool: SandboxPool, run_job) -> None:
    shell = await run_job("bash", f'echo "{BWRAP_LINES[0]}" >&2\nexit 1\n')
    c = await run_job(
        "c",
        f'#include <stdio.h>\nint main(void) {{ fputs("{BWRAP_LINES[1]}\\n", stderr);'
        " return 1; }\n",
    )
    for ran in (shell, c):
        assert ran.outcome.verdict is Verdict.RUNTIME_ERROR, ran.outcome
        assert ran.outcome.exit_code == 1
    await assert_host_untouched(pool)


async def test_the_program_does_not_hold_bwraps_status_fd(pool: SandboxPool, run_job) -> None:
    source = (
        "import json, os\n"
        "fds = {}\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        fds[fd] = os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError:\n"
        "        pass\n"
        "print(json.dumps(sorted(int(fd) for fd in fds)))\n"
        "try:\n"
        "    os.write(4, b'{\"exit-code\": 0}\\n')\n"
        "    print('wrote')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
        "raise SystemExit(3)\n"
    )
    ran = await run_job("python", source)
    assert ran.outcome.verdict is Verdict.RUNTIME_ERROR, (ran.outcome, ran.stderr)
    assert ran.outcome.exit_code == 3
    fds, wrote = ran.stdout.decode().splitlines()
    assert 4 not in json.loads(fds) and wrote == "OSError"
    await assert_host_untouched(pool)


async def test_a_real_bwrap_failure_is_still_an_internal_error(
    pool: SandboxPool, run_job, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = pool._sandbox_argv

    def with_a_missing_bind(slot: Slot, language: Language) -> list[str]:
        argv = made(slot, language)
        # A bind whose source is missing: bwrap gives up while setting the sandbox up.
        at = argv.index("--proc")
        argv[at:at] = ["--ro-bind", "/nonexistent-sluice-source", "/nowhere"]
        return argv

    await pool.wait_released()
    for slot in pool.slots:
        await slot.stop_sandbox()  # the next job's sandbox is made anew, with the bad bind
    monkeypatch.setattr(pool, "_sandbox_argv", with_a_missing_bind)
    ran = await run_job("python", "print('never')")
    assert ran.outcome.verdict is Verdict.INTERNAL_ERROR, ran.outcome
    assert ran.outcome.detail.startswith("sandbox: bwrap: "), ran.outcome.detail
    assert "nonexistent-sluice-source" in ran.outcome.detail
    assert b"never" not in ran.stdout
    monkeypatch.undo()
    await assert_host_untouched(pool)


async def test_a_program_that_cannot_be_started_is_an_internal_error(
    pool: SandboxPool, run_job
) -> None:
    # exec fails inside the sandbox, before any program code ran
    ran = await run_job("c", "int main(void) { return 0; }\n")
    assert ran.outcome.verdict is Verdict.OK, ran.outcome  # the control: a step does run
    language = pool.available["c"]
    slot = await pool.free.get()
    try:
        outcome = await pool._step(
            slot,
            language,
            ["/nonexistent-program"],
            DEFAULT_LIMITS,
            b"",
            CollectingSink(),
            asyncio.Event(),
        )
    finally:
        pool.free.put_nowait(slot)
    assert outcome.verdict is Verdict.INTERNAL_ERROR, outcome
    assert outcome.detail.startswith("sandbox: init: cannot start"), outcome.detail
    await assert_host_untouched(pool)
