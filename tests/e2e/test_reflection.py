"""Server reflection: generic gRPC tools (grpcurl, Postman) discover the public API without
the protos; the worker gateway does not describe itself."""

from __future__ import annotations

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.platform import Platform


async def _services(target: str) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for reply in call:
            return [service.name for service in reply.list_services_response.service]
    return []


async def _describes(target: str, symbol: str) -> bytes:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]))
        async for reply in call:
            return b"".join(reply.file_descriptor_response.file_descriptor_proto)
    return b""


async def test_the_api_describes_itself(platform: Platform) -> None:
    services = await _services(platform.api_target)
    assert "sluice.v1.ExecutionService" in services
    assert "sluice.v1.AdminService" in services
    assert "grpc.health.v1.Health" in services
    # The file that defines SubmitJob comes back, so a tool can build the request.
    assert b"SubmitJobRequest" in await _describes(platform.api_target,
                                                   "sluice.v1.ExecutionService")


async def test_the_gateway_does_not(platform: Platform) -> None:
    try:
        services = await _services(f"127.0.0.1:{platform.gateway_port}")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
    else:
        raise AssertionError(f"the gateway answered reflection: {services}")
