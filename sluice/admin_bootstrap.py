"""`sluice admin bootstrap`: the first admin key, made in the store itself (before it there
is no key to call AdminService with). With `sluice migrate`, the only command that opens the
store; the plane's store is imported here only, when the command runs."""

from __future__ import annotations

from dataclasses import dataclass

from sluice.settings import Settings

# The tenant operators' admin keys belong to: an admin key is an operator's, never a
# tenant's everyday key.
OPERATOR_TENANT = "operators"


class AdminKeyExists(Exception):
    """A live admin key exists already: bootstrapping again needs saying so."""


@dataclass(frozen=True)
class NewAdminKey:
    tenant_id: str
    tenant_name: str
    key_id: str
    secret: str


async def bootstrap_admin_key(settings: Settings, *, tenant_name: str = OPERATOR_TENANT,
                              another: bool = False) -> NewAdminKey:
    """An admin key for the operators' tenant (made if missing). Raises AdminKeyExists when
    any live admin key exists and `another` is not set."""
    from control_plane.store.backend import open_store
    from control_plane.store.tenants import TenantExists, TenantStore

    db = await open_store(settings)
    try:
        store = TenantStore(db)
        if not another:
            for tenant in await store.list_tenants():
                for key in await store.list_keys(tenant.id):
                    if key.admin and key.revoked_at is None:
                        raise AdminKeyExists(
                            f"an admin key exists already ({key.id} of tenant {tenant.name});"
                            " use it, or give --another to make one more")
        tenant = await store.get_tenant(tenant_name)
        if tenant is None:
            try:
                tenant = await store.create_tenant(tenant_name)
            except TenantExists:  # made meanwhile by another bootstrap
                tenant = await store.get_tenant(tenant_name)
        assert tenant is not None
        key, secret = await store.create_key(tenant.id, admin=True, actor="cli")
    finally:
        await db.close()
    return NewAdminKey(tenant.id, tenant.name, key.id, secret)
