"""Who is calling: the bearer key in the metadata, resolved to a tenant on every call."""

from __future__ import annotations

import grpc

from control_plane.store.backend import Tx
from control_plane.store.tenants import Principal, TenantStore, principal_of
from control_plane.store.worker_tokens import TOKEN_PREFIX as WORKER_TOKEN_PREFIX

UNKNOWN_KEY = "API key is unknown or revoked"


class Unauthenticated(Exception):
    """The key is unknown or revoked (found so inside a store transaction)."""


class KeyCheck:
    """Checks a caller's key inside a store transaction, as its first statement; remembers
    whose it is. Raises Unauthenticated, which rolls the transaction back."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self.principal: Principal | None = None

    def __call__(self, conn: Tx) -> Principal:
        principal = principal_of(conn, self._secret)
        if principal is None:
            raise Unauthenticated(UNKNOWN_KEY)
        self.principal = principal
        return principal

    def tenant(self, conn: Tx) -> str:
        """The key's tenant, checked as __call__ does: a JobStore read's `reader`."""
        return self(conn).tenant_id


def bearer(context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """The call's `authorization` metadata and the secret of its `Bearer <secret>` form:
    ("", "") without the header, (header, "") when it is not that form. The API and the
    worker gateway each say what they expected."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            header = value if isinstance(value, str) else value.decode()
            scheme, _, secret = header.partition(" ")
            return header, secret.strip() if scheme.lower() == "bearer" else ""
    return "", ""


class Authenticator:
    def __init__(self, tenants: TenantStore) -> None:
        self._tenants = tenants

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        """Aborts the call with UNAUTHENTICATED unless it carries a live key."""
        principal = await self._tenants.authenticate(await self.secret(context))
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_KEY)
        assert principal is not None
        return principal

    async def secret(self, context: grpc.aio.ServicerContext) -> str:
        """The bearer key of the call, not yet checked; aborts the call with
        UNAUTHENTICATED when there is none."""
        header, secret = bearer(context)
        if not header:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing metadata 'authorization: Bearer <api key>'; "
                "create a key with `sluice tenant create NAME`",
            )
        if not secret:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "metadata 'authorization' must be 'Bearer <api key>'",
            )
        if secret.startswith(WORKER_TOKEN_PREFIX):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "this is a worker token, for the worker gateway only; the API takes an API key"
                " (`sluice tenant create NAME` or `sluice key create TENANT`)",
            )
        return secret

    async def admin(self, context: grpc.aio.ServicerContext) -> Principal:
        principal = await self.principal(context)
        if not principal.admin:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "AdminService needs an admin key (`sluice key create --admin TENANT`)",
            )
        return principal
