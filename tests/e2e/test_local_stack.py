"""`sluice up` keeps this machine's keys apart: the local operator's admin key in
.sluice/admin.key and the local tenant's plain key in .sluice/local.key, each readable by
its owner only, as are the store and the logs; a second run reuses them."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.broker import RunVhost
from tests.support.platform import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class LocalStack:
    def __init__(self, workdir: Path, amqp_url: str) -> None:
        self.workdir = workdir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")},
            "SLUICE_AMQP_URL": amqp_url,
            "SLUICE_QUEUE_PREFIX": f"{workdir.name}-up",
            "SLUICE_API_LISTEN": f"127.0.0.1:{free_port()}",
            "SLUICE_GATEWAY_LISTEN": f"127.0.0.1:{free_port()}",
            "SLUICE_CONSOLE_LISTEN": f"127.0.0.1:{free_port()}",
        }

    def up(self) -> subprocess.Popen[str]:
        """`sluice up`, returned once it says the platform is up."""
        process = subprocess.Popen([sys.executable, "-m", "sluice.cli", "up"], env=self.env,
                                   cwd=self.workdir, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        assert process.stderr is not None
        said = []
        for line in process.stderr:
            said.append(line)
            if "platform up" in line:
                return process
        raise AssertionError(f"sluice up ended: {''.join(said)}")

    def down(self, process: subprocess.Popen[str]) -> None:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=90)

    def sluice(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sluice.cli", *args],
                              env={**self.env, **env}, cwd=self.workdir, capture_output=True,
                              text=True, timeout=120)


def test_sluice_up_keeps_an_admin_key_and_a_plain_key_private(vhost: RunVhost,
                                                              tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, vhost.amqp_url())
    state = tmp_path / ".sluice"
    admin_file, local_file = state / "admin.key", state / "local.key"
    process = stack.up()
    try:
        assert mode(state) == 0o700 and mode(state / "logs") == 0o700
        for path in (admin_file, local_file, state / "sluice.db",
                     *(state / "logs").iterdir()):
            assert mode(path) == 0o600, path
        admin_key, local_key = admin_file.read_text().strip(), local_file.read_text().strip()
        assert admin_key != local_key

        # The operator commands find admin.key here; the admin key is the operators'.
        tenants = stack.sluice("tenant", "list")
        assert tenants.returncode == 0, tenants.stderr
        names = [line.split("\t")[1] for line in tenants.stdout.splitlines()]
        assert sorted(names) == ["local", "operators"]
        keys = stack.sluice("key", "list", "local")
        assert [line.split("\t")[2] for line in keys.stdout.splitlines()] == ["user"]
        # The local key is no admin key...
        refused = stack.sluice("tenant", "list", SLUICE_ADMIN_KEY=local_key)
        assert refused.returncode == 1 and "not an admin key" in refused.stderr
        # ...and `sluice run` submits with it when SLUICE_API_KEY is not set.
        program = tmp_path / "hello.py"
        program.write_text("print('from the local tenant')\n")
        ran = stack.sluice("run", str(program))
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "from the local tenant\n"
        # The web console runs beside them and sends a browser to its sign-in page.
        console = f"http://{stack.env['SLUICE_CONSOLE_LISTEN']}"
        with urllib.request.urlopen(f"{console}/signin", timeout=10) as page:
            assert b'action="/signin"' in page.read()
    finally:
        stack.down(process)

    # A second run reuses both keys (the store still knows them).
    process = stack.up()
    try:
        assert admin_file.read_text().strip() == admin_key
        assert local_file.read_text().strip() == local_key
        assert stack.sluice("tenant", "list").returncode == 0
    finally:
        stack.down(process)
