"""The real platform for tests: control plane, workers and recovery as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.postgres import TestDatabase

REPO = Path(__file__).resolve().parents[2]
# The store a Platform uses unless it is given one: "sqlite" (a file in its workdir),
# "postgresql" (a database of its own on the development server, dropped when it stops) or
# a postgresql://... URL (used as it is).
STORE = os.environ.get("SLUICE_TEST_STORE", "sqlite")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Platform:
    """One isolated Sluice: its own store, ports and queue prefix (in the run's vhost)."""

    def __init__(self, workdir: Path, amqp_url: str, *, prefix: str,
                 extra_env: dict[str, str] | None = None, store: str | None = None) -> None:
        self.workdir = workdir
        self.api_port = free_port()
        self.gateway_port = free_port()
        self.store = store or STORE
        self._database: TestDatabase | None = None
        if self.store == "postgresql":
            self._database = TestDatabase().create()
            store_url = self._database.url
        elif self.store == "sqlite":
            store_url = f"sqlite:///{workdir / 'sluice.db'}"
        elif self.store.startswith("postgresql://"):
            store_url = self.store  # someone else's database: used as it is, never dropped
        else:
            raise ValueError(f"store {self.store!r}: sqlite, postgresql or postgresql://...")
        self.env = {
            **os.environ,
            "SLUICE_AMQP_URL": amqp_url,
            "SLUICE_QUEUE_PREFIX": prefix,
            "SLUICE_API_LISTEN": f"127.0.0.1:{self.api_port}",
            "SLUICE_GATEWAY_LISTEN": f"127.0.0.1:{self.gateway_port}",
            "SLUICE_STORE_URL": store_url,
            "SLUICE_LOG_LEVEL": "info",
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._worker_count = 0

    @property
    def api_target(self) -> str:
        return f"127.0.0.1:{self.api_port}"

    def _start(self, name: str, module: str, env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module], env={**self.env, **(env or {})}, cwd=self.workdir,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_control_plane(self, env: dict[str, str] | None = None) -> None:
        self._start("control-plane", "control_plane.main", env)
        self._wait_serving(self.api_port)

    def start_another_control_plane(self) -> str:
        """A second control-plane process on the same store and broker, on ports of its
        own; returns its API address."""
        api_port, gateway_port = free_port(), free_port()
        count = sum(name.startswith("control-plane") for name in self.processes)
        self._start(f"control-plane-{count + 1}", "control_plane.main",
                    {"SLUICE_API_LISTEN": f"127.0.0.1:{api_port}",
                     "SLUICE_GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}"})
        self._wait_serving(api_port)
        return f"127.0.0.1:{api_port}"

    def start_worker(self, env: dict[str, str] | None = None) -> str:
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        self._start(name, "execution_plane.main", {"SLUICE_WORKER_ID": name, **(env or {})})
        return name

    def start_recovery(self, env: dict[str, str] | None = None) -> None:
        self._start("recovery", "recovery.main", env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, sig)
        process.wait(timeout=60)

    def send_signal(self, name: str, sig: int) -> None:
        """Signals the service and returns at once (see wait_exited)."""
        os.killpg(self.processes[name].pid, sig)

    def running(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def wait_exited(self, name: str, timeout_s: float) -> int:
        """The service's exit status, once it has exited; it is no longer the platform's."""
        status = self.processes[name].wait(timeout=timeout_s)
        del self.processes[name]
        return status

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sluice.cli", *args], env=self.env,
                              cwd=self.workdir, capture_output=True, text=True, timeout=60)

    def create_tenant(self, name: str, *, admin: bool = False) -> str:
        result = self.cli("tenant", "create", name, *(["--admin"] if admin else []))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def _wait_serving(self, port: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited: {self.log(name)[-3000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing serving on port {port}")
                time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                print(f"{name} did not stop on SIGTERM", file=sys.stderr)
        self.processes.clear()
        if self._database is not None:
            self._database.drop()
            self._database = None
