"""Who is calling: the bearer key in the metadata, resolved to a tenant on every call."""

from __future__ import annotations

import grpc

from control_plane.store.tenants import Principal, TenantStore


class Authenticator:
    def __init__(self, tenants: TenantStore) -> None:
        self._tenants = tenants

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        """Aborts the call with UNAUTHENTICATED unless it carries a live key."""
        header = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
                break
        if not header:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing metadata 'authorization: Bearer <api key>'; "
                "create a key with `sluice tenant create NAME`",
            )
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "metadata 'authorization' must be 'Bearer <api key>'",
            )
        principal = await self._tenants.authenticate(secret.strip())
        if principal is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "API key is unknown or revoked"
            )
        assert principal is not None
        return principal

    async def admin(self, context: grpc.aio.ServicerContext) -> Principal:
        principal = await self.principal(context)
        if not principal.admin:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "AdminService needs an admin key (`sluice key create --admin TENANT`)",
            )
        return principal
