"""The real platform for tests: control plane, workers and recovery as real processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sluice.grpc_channels import client_tls
from sluice.settings import Settings
from tests.support.postgres import TestDatabase

REPO = Path(__file__).resolve().parents[2]
# What a client of the platform needs of its environment to reach it (see client_settings).
_CLIENT_TLS_SETTINGS = ("tls_ca_file", "tls_client_cert_file", "tls_client_key_file",
                        "tls_server_name")
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
        self.worker_tokens: dict[str, str] = {}  # identity -> its worker token
        self._admin_key: str | None = None
        self._admin_key_lock = threading.Lock()

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
        _ = self.admin_key

    @property
    def admin_key(self) -> str:
        """The operators' admin key, made once by `sluice admin bootstrap` (the one command
        besides `sluice migrate` that opens the store); the other operator commands go to
        the API with it."""
        with self._admin_key_lock:
            if self._admin_key is None:
                result = self.cli("admin", "bootstrap", admin=False)
                assert result.returncode == 0, result.stderr
                self._admin_key = result.stdout.strip().splitlines()[-1]
            return self._admin_key

    def start_another_control_plane(self, *, api_port: int | None = None,
                                    gateway_port: int | None = None) -> str:
        """A second control-plane process on the same store and broker, on ports of its
        own (these, when given); returns its API address."""
        api_port, gateway_port = api_port or free_port(), gateway_port or free_port()
        count = sum(name.startswith("control-plane") for name in self.processes)
        self._start(f"control-plane-{count + 1}", "control_plane.main",
                    {"SLUICE_API_LISTEN": f"127.0.0.1:{api_port}",
                     "SLUICE_GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}"})
        self._wait_serving(api_port)
        return f"127.0.0.1:{api_port}"

    def worker_token(self, identity: str) -> str:
        """The identity's worker token, minted with the CLI the first time it is asked for."""
        if identity not in self.worker_tokens:
            result = self.cli("worker-token", "create", identity)
            assert result.returncode == 0, result.stderr
            self.worker_tokens[identity] = result.stdout.strip().splitlines()[-1]
        return self.worker_tokens[identity]

    def start_worker(self, env: dict[str, str] | None = None) -> str:
        """A worker whose token's identity is its name (worker-N), as the audit shows it;
        env may set SLUICE_WORKER_TOKEN to start it with another token (or none)."""
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        token = {} if "SLUICE_WORKER_TOKEN" in (env or {}) else {
            "SLUICE_WORKER_TOKEN": self.worker_token(name)}
        self._start(name, "execution_plane.main",
                    {"SLUICE_WORKER_ID": name, **token, **(env or {})})
        return name

    def start_recovery(self, env: dict[str, str] | None = None) -> None:
        self._start("recovery", "recovery.main",
                    {"SLUICE_WORKER_TOKEN": self.worker_token("recovery"), **(env or {})})

    def start_console(self, env: dict[str, str] | None = None) -> str:
        """`sluice console` in front of this platform's API, on a port of its own; its URL,
        once it answers."""
        port = free_port()
        self._start("console", "console.main",
                    {"SLUICE_API_TARGET": self.api_target,
                     "SLUICE_CONSOLE_LISTEN": f"127.0.0.1:{port}", **(env or {})})
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    return url
            except OSError:
                if self.processes["console"].poll() is not None:
                    raise RuntimeError(f"console exited: {self.log('console')[-3000:]}") \
                        from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the console did not answer at {url}") from None
                time.sleep(0.1)

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

    def cli(self, *args: str, admin: bool = True, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`sluice ARGS`, with the platform's admin key in SLUICE_ADMIN_KEY unless `admin` is
        False (then none at all, unless `env` gives one)."""
        full = {**self.env, "SLUICE_API_TARGET": self.api_target}
        full.pop("SLUICE_ADMIN_KEY", None)
        if admin:
            full["SLUICE_ADMIN_KEY"] = self.admin_key
        return subprocess.run([sys.executable, "-m", "sluice.cli", *args],
                              env={**full, **(env or {})}, cwd=cwd or self.workdir,
                              capture_output=True, text=True, timeout=60)

    def create_tenant(self, name: str, *, admin: bool = False) -> str:
        """A tenant made over gRPC by `sluice tenant create`; its key (an admin key for an
        operators' tenant with `admin`)."""
        result = self.cli("tenant", "create", name, *(["--admin"] if admin else []))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    @property
    def client_settings(self) -> Settings:
        """Settings for a client of this platform: its TLS files, if it has them."""
        return Settings(**{name: self.env.get(f"SLUICE_{name.upper()}", "")
                           for name in _CLIENT_TLS_SETTINGS})

    def _health_channel(self, port: int) -> grpc.Channel:
        target = f"127.0.0.1:{port}"
        settings = self.client_settings
        tls = client_tls(settings)
        if tls is None:
            return grpc.insecure_channel(target)
        name = settings.tls_server_name
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(
            tls.root_certificates, tls.private_key, tls.certificate_chain),
            options=[("grpc.ssl_target_name_override", name)] if name else None)

    def _wait_serving(self, port: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        with self._health_channel(port) as channel:
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
        self._delete_broker_topology()

    def _delete_broker_topology(self) -> None:
        """Its queues leave the broker with it (see delete_topology); a failure here is
        said, never raised: the test is over."""
        from tests.support.broker import delete_topology

        # On a thread of its own: stop() is also called from inside a running event loop.
        deletion = delete_topology(self.env["SLUICE_AMQP_URL"], self.env["SLUICE_QUEUE_PREFIX"])
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, deletion).result(timeout=60)
        except Exception as exc:  # a broker that is down for the test (a drill) is fine
            print(f"could not delete the platform's queues: {exc!r}", file=sys.stderr)
        if self._database is not None:
            self._database.drop()
            self._database = None
