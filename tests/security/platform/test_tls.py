"""TLS on the real platform, with certificates made by the test: both listeners serve TLS
only; a client that trusts the CA runs jobs end to end; a plaintext client, or one that
trusts another CA, reaches neither the API nor the gateway. With
SLUICE_GATEWAY_CLIENT_CA_FILE the gateway also wants a client certificate signed by that
CA: a worker without one never registers, a worker with one runs jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sluice.client import SluiceClient
from sluice.grpc_channels import open_channel
from sluice.settings import Settings
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2 as gw
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc
from tests.conftest import python_job
from tests.support.broker import RunVhost
from tests.support.certs import Pki, make_pki
from tests.support.platform import Platform

PROGRAM = "import sys\nprint('over tls', sys.argv[1], flush=True)\n"
# Generous guards against a hang, not timings: the machine may be busy.
WITHIN_S = 120


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _platform(vhost: RunVhost, workdir: Path, prefix: str, env: dict[str, str]
              ) -> Platform:
    return Platform(workdir, vhost.amqp_url(), prefix=f"{prefix}-{uuid.uuid4().hex[:6]}",
                    extra_env={"SLUICE_WORKER_SLOTS": "1", **env})


@pytest.fixture(scope="module")
def tls_platform(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory, pki: Pki
                 ) -> Iterator[Platform]:
    stack = _platform(vhost, tmp_path_factory.mktemp("tls"), "tls", pki.server_env())
    stack.start_control_plane()
    stack.start_worker()
    try:
        yield stack
    finally:
        stack.stop()


def gateway_target(stack: Platform) -> str:
    return f"127.0.0.1:{stack.gateway_port}"


async def register(channel: grpc.aio.Channel) -> None:
    await gw_grpc.WorkerGatewayStub(channel).RegisterWorker(
        gw.RegisterWorkerRequest(worker_id="intruder", slots=1), timeout=10)


async def languages_appear(client: SluiceClient) -> None:
    async with asyncio.timeout(WITHIN_S):
        while not await client.languages():
            await asyncio.sleep(0.2)


async def unreachable(call) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()


async def test_a_client_trusting_the_ca_submits_and_watches_over_tls(tls_platform: Platform
                                                                      ) -> None:
    key = tls_platform.create_tenant(f"tls-{uuid.uuid4().hex[:6]}")
    async with SluiceClient(tls_platform.api_target, key,
                            settings=tls_platform.client_settings) as client:
        await languages_appear(client)  # the worker registered over TLS
        job = await client.submit(python_job(PROGRAM, args=["end-to-end"]))
        events = [event async for event in client.watch(job.id)]
    assert events[-1].state_change.state == pb.JOB_STATE_SUCCEEDED
    output = b"".join(e.output.data for e in events if e.HasField("output"))
    assert output == b"over tls end-to-end\n"


async def test_a_plaintext_client_reaches_neither_listener(tls_platform: Platform) -> None:
    key = tls_platform.create_tenant(f"plain-{uuid.uuid4().hex[:6]}")
    async with SluiceClient(tls_platform.api_target, key, settings=Settings()) as client:
        await unreachable(client.languages())
    async with grpc.aio.insecure_channel(gateway_target(tls_platform)) as channel:
        await unreachable(register(channel))


async def test_a_client_trusting_another_ca_is_refused(tls_platform: Platform, pki: Pki
                                                       ) -> None:
    key = tls_platform.create_tenant(f"rogue-{uuid.uuid4().hex[:6]}")
    wrong = Settings(tls_ca_file=str(pki.rogue_ca.cert))
    async with SluiceClient(tls_platform.api_target, key, settings=wrong) as client:
        await unreachable(client.languages())
    async with open_channel(gateway_target(tls_platform), wrong) as channel:
        await unreachable(register(channel))


@pytest.fixture(scope="module")
def mtls_platform(vhost: RunVhost, tmp_path_factory: pytest.TempPathFactory, pki: Pki
                  ) -> Iterator[Platform]:
    stack = _platform(vhost, tmp_path_factory.mktemp("mtls"), "mtls",
                      {**pki.server_env(),
                       "SLUICE_GATEWAY_CLIENT_CA_FILE": str(pki.worker_ca.cert)})
    stack.start_control_plane()
    try:
        yield stack
    finally:
        stack.stop()


async def test_the_gateway_wants_a_client_certificate_signed_by_its_ca(
        mtls_platform: Platform, pki: Pki) -> None:
    # No client certificate; one signed by a CA the gateway does not trust.
    async with open_channel(gateway_target(mtls_platform), mtls_platform.client_settings
                            ) as channel:
        await unreachable(register(channel))
    rogue = Settings(tls_ca_file=str(pki.ca.cert),
                     tls_client_cert_file=str(pki.rogue_worker.cert),
                     tls_client_key_file=str(pki.rogue_worker.key))
    async with open_channel(gateway_target(mtls_platform), rogue) as channel:
        await unreachable(register(channel))
    # The public API asks for no client certificate.
    key = mtls_platform.create_tenant(f"mtls-{uuid.uuid4().hex[:6]}")
    async with SluiceClient(mtls_platform.api_target, key,
                            settings=mtls_platform.client_settings) as client:
        assert await client.languages() == []


async def test_a_worker_without_a_client_certificate_never_registers_one_with_it_runs_jobs(
        mtls_platform: Platform, pki: Pki) -> None:
    bare = mtls_platform.start_worker()
    async with asyncio.timeout(WITHIN_S):
        while "register_failed" not in mtls_platform.log(bare):
            await asyncio.sleep(0.2)
    assert "UNAVAILABLE" in mtls_platform.log(bare)
    key = mtls_platform.create_tenant(f"mtls-{uuid.uuid4().hex[:6]}")
    async with SluiceClient(mtls_platform.api_target, key,
                            settings=mtls_platform.client_settings) as client:
        assert await client.languages() == []  # it registered nothing

        mtls_platform.start_worker({"SLUICE_TLS_CLIENT_CERT_FILE": str(pki.worker.cert),
                                    "SLUICE_TLS_CLIENT_KEY_FILE": str(pki.worker.key)})
        await languages_appear(client)
        job = await client.submit(python_job(PROGRAM, args=["mtls"]))
        result = await client.result(job.id, within_s=WITHIN_S)
    assert result.verdict == pb.VERDICT_OK
    assert result.stdout == b"over tls mtls\n"
    mtls_platform.kill(bare)


async def test_a_certificate_for_a_name_serves_clients_told_that_name(
        vhost: RunVhost, tmp_path: Path, pki: Pki) -> None:
    """Gateways reached by address lists (ipv4:...) share one certificate for a name."""
    named = pki.ca.issue("named-server", server=True, names="DNS:sluice.internal")
    stack = _platform(vhost, tmp_path, "named", {
        **pki.server_env(),
        "SLUICE_TLS_CERT_FILE": str(named.cert), "SLUICE_TLS_KEY_FILE": str(named.key),
        "SLUICE_TLS_SERVER_NAME": "sluice.internal"})
    try:
        stack.start_control_plane()
        stack.start_worker({"SLUICE_GATEWAY_TARGET": f"ipv4:{gateway_target(stack)}"})
        key = stack.create_tenant(f"named-{uuid.uuid4().hex[:6]}")
        async with SluiceClient(stack.api_target, key, settings=stack.client_settings
                                ) as client:
            await languages_appear(client)
            result = await client.result((await client.submit(
                python_job(PROGRAM, args=["by name"]))).id, within_s=WITHIN_S)
        assert result.stdout == b"over tls by name\n"
        # Without the name, the certificate does not match 127.0.0.1.
        unnamed = Settings(tls_ca_file=str(pki.ca.cert))
        async with SluiceClient(stack.api_target, key, settings=unnamed) as client:
            await unreachable(client.languages())
    finally:
        stack.stop()


def test_a_bad_certificate_file_stops_the_control_plane_at_start(
        vhost: RunVhost, tmp_path: Path, pki: Pki) -> None:
    stack = _platform(vhost, tmp_path, "badtls",
                      {**pki.server_env(), "SLUICE_TLS_KEY_FILE": str(tmp_path / "absent.key")})
    try:
        with pytest.raises(RuntimeError) as caught:
            stack.start_control_plane()
        assert "SLUICE_TLS_KEY_FILE" in str(caught.value)
        assert "absent.key" in str(caught.value)
    finally:
        stack.stop()
