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

from sluice.admin_bootstrap import OPERATOR_TENANT
from sluice.amqp import BrokerUnreachable, connect
from sluice.client import ADMIN_KEY_FILE, LOCAL_KEY_FILE, SluiceClient, read_key_file
from sluice.grpc_channels import TlsConfigError, client_tls, open_channel, server_credentials
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
# The tenant `sluice run` submits as on this machine (its everyday key, not an admin key).
LOCAL_TENANT = "local"


def _say(message: str) -> None:
    print(f"sluice: {message}", file=sys.stderr, flush=True)


async def _check_broker(settings: Settings) -> None:
    connection = await connect(settings.amqp_url, name="sluice-up-check", connect_timeout_s=10)
    await connection.close()


def _write_secret(path: Path, secret: str) -> None:
    """The key file, readable by its owner only (also when it existed with other modes)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)


async def _ensure_keys(settings: Settings) -> str:
    """The keys `sluice up` keeps for this machine: the local operator's admin key in
    .sluice/admin.key (for the operator commands) and the `local` tenant's plain key in
    .sluice/local.key (for `sluice run`), each made on the first run and reused while the
    store knows it. Returns the local tenant's key."""
    from control_plane.store.backend import open_store
    from control_plane.store.tenants import TenantStore

    if settings.store_url.startswith("sqlite:///"):
        # The store file is the platform's secrets: the owner's only, as its directory.
        store_path = settings.sqlite_path
        store_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(store_path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(store_path, 0o600)
    db = await open_store(settings)
    try:
        store = TenantStore(db)
        kept: dict[Path, str] = {}
        for path, tenant_name, admin in ((ADMIN_KEY_FILE, OPERATOR_TENANT, True),
                                         (LOCAL_KEY_FILE, LOCAL_TENANT, False)):
            tenant = (await store.get_tenant(tenant_name)
                      or await store.create_tenant(tenant_name))
            existing = read_key_file(path)
            principal = await store.authenticate(existing) if existing else None
            if (existing and principal is not None and principal.admin == admin
                    and principal.tenant_id == tenant.id):
                kept[path] = existing
                continue
            if principal is not None:
                # The file held another kind of key (before 0600 key files, local.key held
                # an admin key of the local tenant): replaced, so no longer honoured.
                await store.revoke_key(principal.key_id)
            _, secret = await store.create_key(tenant.id, admin=admin)
            _write_secret(path, secret)
            kept[path] = secret
    finally:
        await db.close()
    for path in kept:
        os.chmod(path, 0o600)  # a file kept from an older run may have been wider
    return kept[LOCAL_KEY_FILE]


async def _mint_worker_tokens(settings: Settings, names: list[str]) -> dict[str, str]:
    """A fresh worker token for each of this stack's workers and its recovery service, each
    its own identity; the previous `sluice up`'s tokens of the same names are revoked."""
    from control_plane.store.backend import open_store
    from control_plane.store.worker_tokens import WorkerTokenStore

    db = await open_store(settings)
    try:
        store = WorkerTokenStore(db)
        return {name: (await store.rotate(name, actor="sluice-up"))[1] for name in names}
    finally:
        await db.close()


async def _wait_until_ready(settings: Settings, api_key: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with open_channel(settings.api_listen, settings) as channel:
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
    async with SluiceClient(settings.api_listen, api_key, settings=settings) as client:
        while not await client.languages():
            if time.monotonic() > deadline:
                raise TimeoutError("no worker registered with the gateway")
            await asyncio.sleep(0.3)


def _check_tls(settings: Settings) -> None:
    """Every service here reads the same settings: a wrong TLS file is said once, now."""
    serves_tls = server_credentials(settings, gateway=False) is not None
    server_credentials(settings, gateway=True)
    trusts = client_tls(settings) is not None
    if serves_tls != trusts:
        raise TlsConfigError(
            "SLUICE_TLS_CERT_FILE/SLUICE_TLS_KEY_FILE and SLUICE_TLS_CA_FILE go together under "
            "`sluice up`: its own workers and clients must trust the certificate it serves")


def _start(name: str, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Logs name tenants and jobs: the owner's only.
    LOG_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(LOG_DIR, 0o700)
    path = LOG_DIR / f"{name}.log"
    log = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    os.chmod(path, 0o600)
    return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_local_stack(*, workers: int, sample: bool) -> int:
    # The services run in sessions of their own (a Ctrl-C reaches only us): whatever stops
    # `sluice up` (Ctrl-C, `kill`, a closed terminal, a supervisor) stops them through here.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    # Everything the platform writes here (store, its journal, logs, keys) is the owner's
    # only; the services inherit this mask.
    os.umask(0o077)
    settings = get_settings()
    try:
        _check_tls(settings)
    except TlsConfigError as exc:
        _say(str(exc))
        return 1
    try:
        asyncio.run(_check_broker(settings))
    except BrokerUnreachable as exc:
        _say(str(exc))
        return 1
    api_key = asyncio.run(_ensure_keys(settings))
    node = os.uname().nodename
    identities = {f"worker-{index + 1}": f"{node}-worker-{index + 1}" for index in range(workers)}
    identities["recovery"] = f"{node}-recovery"
    tokens = asyncio.run(_mint_worker_tokens(settings, list(identities.values())))
    base_env = {**os.environ, "SLUICE_STORE_URL": settings.store_url}
    processes: dict[str, subprocess.Popen[bytes]] = {
        "control-plane": _start("control-plane", "control_plane.main", base_env),
    }
    for name, identity in identities.items():
        processes[name] = _start(
            name, "recovery.main" if name == "recovery" else "execution_plane.main",
            {**base_env, "SLUICE_WORKER_ID": identity, "SLUICE_WORKER_TOKEN": tokens[identity]})
    # The web console: a client of the API like any other, holding no key of its own.
    processes["console"] = _start("console", "console.main", base_env)
    try:
        asyncio.run(_wait_until_ready(settings, api_key))
        _say(f"platform up: API {settings.api_listen}, worker gateway "
             f"{settings.gateway_listen}, {workers} worker(s); logs in {LOG_DIR}/")
        _say(f"web console: http://{settings.console_listen}/ (sign in with a key below)")
        _say(f"local tenant key in {LOCAL_KEY_FILE} (`sluice run FILE` uses it); operator "
             f"admin key in {ADMIN_KEY_FILE} (`sluice tenant|key|quota|jobs ...` use it)")
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
