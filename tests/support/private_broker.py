"""A RabbitMQ node of the test's own, on its own port, that a drill may stop and restart
without touching the machine's broker (or anyone else's run on it)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.platform import free_port


class PrivateBroker:
    def __init__(self) -> None:
        self.port = free_port()
        self.node = f"drill-{uuid.uuid4().hex[:8]}@localhost"
        self._dir = Path(tempfile.mkdtemp(prefix="sluice-broker-"))

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self._dir / "rabbitmq"),
            "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self._dir / "log"),
            "RABBITMQ_PID_FILE": str(self._dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "plugins"),
        }

    def _ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(["rabbitmqctl", "-q", "-n", self.node, *args], check=True,
                       capture_output=True, timeout=timeout, env=self._env())

    def start(self) -> None:
        (self._dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        # The Debian wrapper runs the node as the rabbitmq user.
        try:
            user = pwd.getpwnam("rabbitmq")
            for path in [self._dir, *self._dir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        except KeyError:
            pass
        subprocess.run(["rabbitmq-server", "-detached"], check=True, env=self._env(),
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                self._ctl("await_startup", timeout=60)
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop_app(self) -> None:
        self._ctl("stop_app")

    def start_app(self) -> None:
        self._ctl("start_app")
        self._ctl("await_startup")

    def stop(self) -> None:
        try:
            self._ctl("stop", timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self._dir, ignore_errors=True)
