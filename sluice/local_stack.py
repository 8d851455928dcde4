"""`sluice up`: the whole platform on this machine, each service its own process.

The same processes a deployment runs one per container (`sluice control-plane`,
`sluice worker`, `sluice recovery`), started side by side on the embedded defaults.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sluice.amqp import BrokerUnreachable, connect
from sluice.client import LOCAL_KEY_FILE, SluiceClient, local_api_key
from sluice.settings import Settings, get_settings

SAMPLE_PROGRAM = """\
import sys, time

name = sys.argv[1] if len(sys.argv) > 1 else "world"
for i in range(1, 6):
    print(f"hello, {name}: line {i} of 5, streamed as it is printed", flush=True)
    time.sleep(0.3)
print("done; this ran in the Sluice sandbox", file=sys.stderr)
"""
LOG_DIR = Path(".sluice") / "logs"


def _say(message: str) -> None:
    print(f"sluice: {message}", file=sys.stderr, flush=True)


async def _check_broker(settings: Settings) -> None:
    connection = await connect(settings.amqp_url, name="sluice-up-check", connect_timeout_s=3)
    await connection.close()


async def _ensure_local_key(settings: Settings) -> str:
    """The `local` tenant's key, kept in .sluice/local.key for `sluice run` on this machine."""
    from control_plane.store.backend import open_store
    from control_plane.store.tenants import TenantStore

    db = await open_store(settings)
    try:
        store = TenantStore(db)
        existing = local_api_key()
        if existing and await store.authenticate(existing):
            return existing
        tenant = await store.get_tenant("local") or await store.create_tenant("local")
        _, secret = await store.create_key(tenant.id, admin=True)
    finally:
        await db.close()
    LOCAL_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    LOCAL_KEY_FILE.touch(mode=0o600)
    LOCAL_KEY_FILE.write_text(secret + "\n")
    return secret


async def _wait_until_ready(settings: Settings, api_key: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(settings.api_listen) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the control plane did not answer on {settings.api_listen}")
            await asyncio.sleep(0.3)
    async with SluiceClient(settings.api_listen, api_key) as client:
        while not await client.languages():
            if time.monotonic() > deadline:
                raise TimeoutError("no worker registered with the gateway")
            await asyncio.sleep(0.3)


def _start(name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_local_stack(*, workers: int, sample: bool) -> int:
    # The services run in sessions of their own (a Ctrl-C reaches only us): whatever stops
    # `sluice up` (Ctrl-C, `kill`, a closed terminal, a supervisor) stops them through here.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    settings = get_settings()
    try:
        asyncio.run(_check_broker(settings))
    except BrokerUnreachable as exc:
        _say(str(exc))
        return 1
    api_key = asyncio.run(_ensure_local_key(settings))
    base_env = {**os.environ, "SLUICE_STORE_URL": settings.store_url}
    processes: dict[str, subprocess.Popen[bytes]] = {
        "control-plane": _start("control-plane", "control_plane.main", base_env),
    }
    for index in range(workers):
        processes[f"worker-{index + 1}"] = _start(
            f"worker-{index + 1}", "execution_plane.main",
            {**base_env, "SLUICE_WORKER_ID": f"{os.uname().nodename}-worker-{index + 1}"})
    processes["recovery"] = _start("recovery", "recovery.main", base_env)
    try:
        asyncio.run(_wait_until_ready(settings, api_key))
        _say(f"platform up: API {settings.api_listen}, worker gateway "
             f"{settings.gateway_listen}, {workers} worker(s); logs in {LOG_DIR}/")
        _say(f"local tenant key in {LOCAL_KEY_FILE} (`sluice run FILE` uses it)")
        if sample:
            _run_sample()
        _say("running; Ctrl-C stops every service")
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    _say(f"{name} exited with {process.returncode}; see {LOG_DIR}/{name}.log")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except TimeoutError as exc:
        _say(f"{exc}; see the logs in {LOG_DIR}/")
        return 1
    finally:
        _stop_all(processes)


def _run_sample() -> None:
    from sluice.file_runner import run_file

    sample = Path(".sluice") / "hello.py"
    sample.write_text(SAMPLE_PROGRAM)
    _say(f"submitting a sample job: sluice run {sample} -- Sluice")
    code = asyncio.run(run_file(sample, language="python", stdin=b"", args=["Sluice"],
                                api_key=None, target=None))
    _say(f"sample job finished with exit code {code}")


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
