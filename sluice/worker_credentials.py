"""The worker token on the worker side: the worker and the recovery service send
SLUICE_WORKER_TOKEN on every gateway call, and stop, saying why, when it is missing or refused.

The token goes onto each call of the stub rather than through a grpc.aio client interceptor:
an intercepted stream-stream call proxies every write through a queue and two tasks (per
output chunk and heartbeat of every job) and reports a broken stream on write differently.
"""

from __future__ import annotations

import asyncio
import functools

import grpc

from sluice.observability import get_logger
from sluice.settings import Settings
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc

log = get_logger(__name__)
MINT_HINT = "mint one with `sluice worker-token create NAME` and set SLUICE_WORKER_TOKEN to it"


class WorkerTokenRefused(RuntimeError):
    """The gateway said UNAUTHENTICATED: the token is unknown, revoked, or not a worker
    token. Retrying cannot help; the service stops."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the worker gateway refused SLUICE_WORKER_TOKEN: {detail}")


def require_worker_token(settings: Settings, service: str) -> str:
    """The token; exits the process with one line naming the setting when there is none."""
    token = settings.worker_token.strip()
    if not token:
        raise SystemExit(f"sluice {service}: SLUICE_WORKER_TOKEN is not set; {MINT_HINT}")
    return token


class TokenWatch:
    """Notices the gateway refusing the token on any call; the service stops on `refused`
    and exits with `error` rather than retry for ever."""

    def __init__(self) -> None:
        self.refused = asyncio.Event()
        self.error: WorkerTokenRefused | None = None

    def check(self, exc: grpc.aio.AioRpcError) -> bool:
        """True when the error is the token's refusal (then the service is stopping)."""
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            return False
        if self.error is None:
            self.error = WorkerTokenRefused(exc.details() or "UNAUTHENTICATED")
            log.error("worker_token_refused", detail=exc.details(), hint=MINT_HINT)
        self.refused.set()
        return True


def gateway_stub(channel: grpc.aio.Channel, token: str) -> gw_grpc.WorkerGatewayStub:
    """A WorkerGateway stub whose every method (those to come included) carries the token."""
    stub = gw_grpc.WorkerGatewayStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    for name, method in list(vars(stub).items()):
        setattr(stub, name, functools.partial(method, metadata=metadata))
    return stub
