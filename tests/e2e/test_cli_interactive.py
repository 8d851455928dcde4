"""`sluice run FILE -i` driven through a real terminal (tmux), as a person would: a
guessing game written in C, played by reading the screen and typing; Ctrl-D and Ctrl-C."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.platform import Platform

GUESS_C = """
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(void) {
    srand((unsigned)time(NULL) ^ (unsigned)clock());
    int secret = rand() % 100 + 1, guess, tries = 0;
    printf("I picked a number from 1 to 100. Your guess?\\n");
    fflush(stdout);
    while (scanf("%d", &guess) == 1) {
        tries++;
        if (guess < secret) printf("higher\\n");
        else if (guess > secret) printf("lower\\n");
        else { printf("correct: %d in %d tries\\n", secret, tries); return 0; }
        fflush(stdout);
    }
    printf("gave up\\n");
    return 3;
}
"""

ECHO_C = """
#include <stdio.h>
int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) { printf("echo: %s", line); fflush(stdout); }
    printf("stdin closed\\n");
    return 0;
}
"""


class Terminal:
    """A tmux pane running one command; read like a screen, typed into like a keyboard."""

    def __init__(self, socket: str, command: str) -> None:
        self.socket = socket
        self._tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "50", command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-200")

    def type(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, pattern: str, within_s: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + within_s
        while True:
            found = re.search(pattern, self.screen(), re.M)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never appeared on:\n{self.screen()}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10, check=False)


@pytest.fixture
def terminal(platform: Platform, tenant_key: str, tmp_path: Path
             ) -> Iterator[callable]:  # type: ignore[valid-type]
    opened: list[Terminal] = []

    def run(source: str, name: str) -> Terminal:
        program = tmp_path / name
        program.write_text(source)
        env = {**platform.env, "SLUICE_API_KEY": tenant_key}
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()
                           if k.startswith("SLUICE_"))
        command = (f"cd {shlex.quote(str(tmp_path))} && env {exports} {sys.executable} -m "
                   f"sluice.cli run {name} -i --target {platform.api_target}; "
                   "echo EXIT=$?; sleep 60")
        term = Terminal(f"sluice-{uuid.uuid4().hex[:8]}", command)
        opened.append(term)
        return term

    yield run
    for term in opened:
        term.close()


def test_a_person_plays_a_guessing_game_in_c(terminal: callable) -> None:  # type: ignore[valid-type]
    term = terminal(GUESS_C, "guess.c")
    term.wait_for(r"Your guess\?")
    low, high, answers = 1, 100, 0
    while True:
        guess = (low + high) // 2
        term.type(str(guess), "Enter")
        answers += 1
        # The answer to this guess, on the line after the typed one (echoed by the tty).
        reply = term.wait_for(rf"^{guess}\n(higher|lower|correct: \d+ in {answers} tries)$")
        if reply.group(1) == "higher":
            low = guess + 1
        elif reply.group(1) == "lower":
            high = guess - 1
        else:
            break
        assert answers < 8, term.screen()
    assert f"correct: {guess} in {answers} tries" in term.screen()
    term.wait_for(r"^EXIT=0$")


def test_ctrl_d_closes_stdin_and_ctrl_c_cancels(terminal: callable) -> None:  # type: ignore[valid-type]
    term = terminal(ECHO_C, "echo.c")
    term.wait_for(r"queued")
    term.type("hello there", "Enter")
    term.wait_for(r"^echo: hello there$")
    term.type("C-d")
    term.wait_for(r"^stdin closed$")
    term.wait_for(r"^EXIT=0$")

    cancelled = terminal(ECHO_C, "echo2.c")
    cancelled.type("first", "Enter")
    cancelled.wait_for(r"^echo: first$")
    cancelled.type("C-c")
    cancelled.wait_for(r"cancelling the job")
    cancelled.wait_for(r"VERDICT_CANCELLED")
    exit_code = int(cancelled.wait_for(r"^EXIT=(\d+)$").group(1))
    assert exit_code != 0
