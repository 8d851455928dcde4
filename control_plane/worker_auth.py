"""Who is calling the worker gateway: the bearer worker token, resolved to its identity.

Every WorkerGateway method starts here. A token found live is trusted for RECHECK_S; after
that the next call or report looks it up again, so a token revoked through another control
plane (or the CLI, straight in the store) stops working here within about a second. One
revoked through this process is forgotten at once (forget).
"""

from __future__ import annotations

import time

import grpc

from control_plane.auth import bearer
from control_plane.store.tenants import hash_key
from control_plane.store.worker_tokens import TOKEN_PREFIX, WorkerIdentity, WorkerTokenStore

RECHECK_S = 1.0
# Cached live tokens at most; past it the cache starts over (tokens are few in practice).
MAX_CACHED = 10_000

MINT_HINT = "mint one with `sluice worker-token create NAME`"
REVOKED = "worker token is unknown or revoked"


class WorkerAuthenticator:
    def __init__(self, tokens: WorkerTokenStore) -> None:
        self._tokens = tokens
        self._live: dict[str, tuple[WorkerIdentity, float]] = {}  # hash -> (who, checked at)

    async def identity(self, context: grpc.aio.ServicerContext) -> WorkerIdentity:
        """Aborts the call with UNAUTHENTICATED unless it carries a live worker token."""
        secret = await _bearer(context)
        token_hash = hash_key(secret)
        worker = await self._check(token_hash)
        if worker is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{REVOKED}; {MINT_HINT}")
        assert worker is not None
        return worker

    async def still_live(self, worker: WorkerIdentity) -> bool:
        """For an open stream: whether the token it opened with is still live."""
        return await self._check(worker.token_hash) is not None

    async def _check(self, token_hash: str) -> WorkerIdentity | None:
        cached = self._live.get(token_hash)
        now = time.monotonic()
        if cached is not None and now - cached[1] < RECHECK_S:
            return cached[0]
        worker = await self._tokens.live_identity(token_hash)
        if worker is None:
            self._live.pop(token_hash, None)
            return None
        if len(self._live) >= MAX_CACHED:
            self._live.clear()
        self._live[token_hash] = (worker, now)
        return worker

    def forget(self, token_id: str) -> None:
        """The token was revoked through this process: refuse it from now on."""
        for token_hash, (known, _) in list(self._live.items()):
            if known.token_id == token_id:
                del self._live[token_hash]


async def _bearer(context: grpc.aio.ServicerContext) -> str:
    header, secret = bearer(context)
    if not header:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"missing metadata 'authorization: Bearer <worker token>'; the worker gateway"
            f" takes a worker token ({TOKEN_PREFIX}...); {MINT_HINT}",
        )
    if not secret:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "metadata 'authorization' must be 'Bearer <worker token>'")
    if not secret.startswith(TOKEN_PREFIX):
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"the worker gateway takes a worker token ({TOKEN_PREFIX}...), not an API key;"
            f" {MINT_HINT}",
        )
    return secret
