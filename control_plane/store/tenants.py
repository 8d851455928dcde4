"""Tenants and their API keys. A key is shown once and stored only as its SHA-256.

SHA-256 rather than a slow password hash: keys are 256 random bits, so there is nothing to
brute-force, and a lookup by hash on every call must stay cheap.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from control_plane.store import audit
from control_plane.store.backend import Backend, Tx

KEY_PREFIX = "sk_"


class TenantExists(ValueError):
    pass


class UnknownTenant(LookupError):
    pass


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    tenant_id: str
    prefix: str
    admin: bool
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from the bearer key on every request."""

    tenant_id: str
    key_id: str
    admin: bool


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _key_from_row(row: tuple) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row[0], tenant_id=row[1], prefix=row[2], admin=bool(row[3]),
        created_at=row[4], revoked_at=row[5],
    )


class TenantStore:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def create_tenant(self, name: str) -> Tenant:
        def tx(conn: Tx) -> Tenant:
            tenant = Tenant(id=f"t_{uuid.uuid4().hex[:16]}", name=name, created_at=time.time())
            # The name's uniqueness decides, not a read before: two creating it at once
            # cannot both succeed.
            inserted = conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                (tenant.id, tenant.name, tenant.created_at),
            ).fetchone()
            if inserted is None:
                raise TenantExists(f"a tenant named {name!r} exists already")
            return tenant

        return await self._db.run(tx)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        def tx(conn: Tx) -> Tenant | None:
            row = conn.execute(
                "SELECT id, name, created_at FROM tenants WHERE id = ? OR name = ?",
                (tenant_id, tenant_id),
            ).fetchone()
            return Tenant(*row) if row else None

        return await self._db.run(tx)

    async def list_tenants(self) -> list[Tenant]:
        def tx(conn: Tx) -> list[Tenant]:
            rows = conn.execute("SELECT id, name, created_at FROM tenants ORDER BY name")
            return [Tenant(*row) for row in rows]

        return await self._db.run(tx)

    async def create_key(self, tenant_id: str, *, admin: bool = False, actor: str = "cli"
                         ) -> tuple[ApiKeyRecord, str]:
        """Returns the record and the secret; the secret is not kept."""
        secret = _new_secret()

        def tx(conn: Tx) -> ApiKeyRecord:
            if not conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone():
                raise UnknownTenant(f"no tenant with id {tenant_id!r}")
            record = ApiKeyRecord(
                id=f"k_{uuid.uuid4().hex[:16]}", tenant_id=tenant_id, prefix=secret[:10],
                admin=admin, created_at=time.time(), revoked_at=None,
            )
            conn.execute(
                "INSERT INTO api_keys (id, tenant_id, key_hash, prefix, admin, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, tenant_id, hash_key(secret), record.prefix, int(admin),
                 record.created_at),
            )
            audit.record(conn, tenant_id=tenant_id, actor=actor, action="key_created",
                         key_id=record.id, admin=admin)
            return record

        return await self._db.run(tx), secret

    async def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        def tx(conn: Tx) -> list[ApiKeyRecord]:
            rows = conn.execute(
                "SELECT id, tenant_id, prefix, admin, created_at, revoked_at FROM api_keys"
                " WHERE tenant_id = ? ORDER BY created_at",
                (tenant_id,),
            )
            return [_key_from_row(row) for row in rows]

        return await self._db.run(tx)

    async def revoke_key(self, key_id: str, *, actor: str = "cli") -> ApiKeyRecord | None:
        def tx(conn: Tx) -> ApiKeyRecord | None:
            revoked = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
                " RETURNING tenant_id",
                (time.time(), key_id),
            ).fetchone()
            if revoked:
                audit.record(conn, tenant_id=revoked[0], actor=actor, action="key_revoked",
                             key_id=key_id)
            row = conn.execute(
                "SELECT id, tenant_id, prefix, admin, created_at, revoked_at FROM api_keys"
                " WHERE id = ?",
                (key_id,),
            ).fetchone()
            return _key_from_row(row) if row else None

        return await self._db.run(tx)

    async def revoked_among(self, key_ids: list[str]) -> set[str]:
        """Which of these keys are revoked (or gone): their open streams end."""

        def tx(conn: Tx) -> set[str]:
            live: set[str] = set()
            for start in range(0, len(key_ids), 500):  # within any store's parameter limit
                chunk = key_ids[start:start + 500]
                live.update(row[0] for row in conn.execute(
                    f"SELECT id FROM api_keys WHERE revoked_at IS NULL"
                    f" AND id IN ({', '.join('?' * len(chunk))})", chunk))
            return set(key_ids) - live

        return await self._db.run(tx)

    async def authenticate(self, secret: str) -> Principal | None:
        return await self._db.run(lambda conn: principal_of(conn, secret))


def principal_of(conn: Tx, secret: str) -> Principal | None:
    """The live key's owner, inside a transaction (SubmitJob checks the key in the same
    transaction that stores the job: one trip to the store)."""
    row = conn.execute(
        "SELECT tenant_id, id, admin FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        (hash_key(secret),),
    ).fetchone()
    return Principal(tenant_id=row[0], key_id=row[1], admin=bool(row[2])) if row else None
