"""amqps:// URLs: the services reach RabbitMQ over TLS, checking the broker's certificate
against the CA the URL names (?cafile=). The machine's RabbitMQ has no TLS listener (it is a
shared system service), so TLS is terminated in front of it by a proxy the test runs with a
certificate the test made, as a load balancer would: everything past the proxy is the real
broker, and a whole platform runs a job through it."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from yarl import URL

from sluice.amqp import BrokerUnreachable, connect
from sluice.client import SluiceClient
from sluice.v1 import job_pb2 as pb
from tests.conftest import python_job
from tests.support.broker import RunVhost
from tests.support.certs import Authority, make_authority
from tests.support.platform import Platform
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    directory = tmp_path_factory.mktemp("amqps-pki")
    return make_authority(directory, "broker-ca"), make_authority(directory, "other-ca")


@pytest.fixture
async def tls_broker(authorities: tuple[Authority, Authority]) -> AsyncIterator[int]:
    """A TLS port in front of the real RabbitMQ; yields the port."""
    ca, _ = authorities
    issued = ca.issue(f"broker-{uuid.uuid4().hex[:6]}", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    proxy = TcpProxy("127.0.0.1", 5672, tls=context)
    await proxy.start()
    try:
        yield proxy.port
    finally:
        await proxy.close()


def amqps_url(vhost: RunVhost, port: int, ca_file: Path) -> str:
    return str(URL(vhost.amqp_url(port)).with_scheme("amqps")
               .with_query({"cafile": str(ca_file)}))


async def test_an_amqps_url_carries_messages_over_tls(vhost: RunVhost, tls_broker: int,
                                                     authorities: tuple[Authority, Authority]
                                                     ) -> None:
    ca, _ = authorities
    connection = await connect(amqps_url(vhost, tls_broker, ca.cert), name="amqps-test")
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"amqps-{uuid.uuid4().hex[:8]}", auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"over tls"),
                                               routing_key=queue.name)
        async with asyncio.timeout(30):
            while (message := await queue.get(fail=False)) is None:
                await asyncio.sleep(0.05)
        assert message.body == b"over tls"
        await message.ack()
    finally:
        await connection.close()


async def test_a_broker_certificate_from_another_ca_is_refused(
        vhost: RunVhost, tls_broker: int, authorities: tuple[Authority, Authority]) -> None:
    _, other = authorities
    with pytest.raises(BrokerUnreachable) as caught:
        await connect(amqps_url(vhost, tls_broker, other.cert), name="amqps-test",
                      connect_timeout_s=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) or "certificate" in str(
        caught.value).lower()


async def test_a_platform_on_an_amqps_url_runs_jobs(vhost: RunVhost, tls_broker: int,
                                                   authorities: tuple[Authority, Authority],
                                                   tmp_path: Path) -> None:
    ca, _ = authorities
    stack = Platform(tmp_path, amqps_url(vhost, tls_broker, ca.cert),
                     prefix=f"amqps-{uuid.uuid4().hex[:6]}",
                     extra_env={"SLUICE_WORKER_SLOTS": "1"})
    try:
        # In a thread: the proxy serves on this event loop meanwhile.
        await asyncio.to_thread(stack.start_control_plane)
        stack.start_worker()
        key = await asyncio.to_thread(stack.create_tenant, f"amqps-{uuid.uuid4().hex[:6]}")
        async with SluiceClient(stack.api_target, key) as client:
            async with asyncio.timeout(120):
                while not await client.languages():
                    await asyncio.sleep(0.2)
            job = await client.submit(python_job("print('through amqps')"))
            result = await client.result(job.id, within_s=120)
        assert result.verdict == pb.VERDICT_OK
        assert result.stdout == b"through amqps\n"
    finally:
        await asyncio.to_thread(stack.stop)
