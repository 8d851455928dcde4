"""sluice_rpc_seconds{method,code} for every RPC of both servers: a server interceptor that
times each call to its end and labels it with the status it ended with (an abort's code, an
unexpected exception's UNKNOWN, a caller gone or out of time's CANCELLED), unary and
streaming alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Histogram

from control_plane import metrics


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


def _method_label(full_method: str) -> str:
    """"/sluice.v1.ExecutionService/SubmitJob" -> "ExecutionService/SubmitJob"."""
    service, _, method = full_method.lstrip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


class RpcMetrics(grpc.aio.ServerInterceptor):
    def __init__(self, histogram: Histogram = metrics.RPC_SECONDS) -> None:
        self._histogram = histogram
        # Children looked up once: labels() hashes its values and takes a lock every call.
        self._children: dict[tuple[str, str], Any] = {}

    def _observe(self, method: str, code: str, started: float) -> None:
        child = self._children.get((method, code))
        if child is None:
            child = self._children[(method, code)] = self._histogram.labels(method, code)
        child.observe(time.perf_counter() - started)

    def _ended(self, method: str, context: grpc.aio.ServicerContext, started: float,
               error: BaseException | None) -> None:
        if error is None or isinstance(error, grpc.aio.AbortError):
            code = _code_name(context)
        elif isinstance(error, asyncio.CancelledError | GeneratorExit):
            code = grpc.StatusCode.CANCELLED.name
        else:
            code = grpc.StatusCode.UNKNOWN.name
        self._observe(method, code, started)

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler | None]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = _method_label(details.method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), handler.request_deserializer,
                handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary), handler.request_deserializer,
                handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream), handler.request_deserializer,
                handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, handler.stream_stream), handler.request_deserializer,
            handler.response_serializer)

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as exc:
                self._ended(method, context, started, exc)
                raise
            self._ended(method, context, started, None)
            return response

        return timed

    def _streaming(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                produced = behavior(request, context)
                if hasattr(produced, "__aiter__"):
                    async for response in produced:
                        yield response
                else:  # a handler that writes with context.write and returns
                    await produced
            except BaseException as exc:
                self._ended(method, context, started, exc)
                raise
            self._ended(method, context, started, None)

        return timed
