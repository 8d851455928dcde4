"""Worker tokens: the credentials of workers and the recovery service on the worker gateway.

A worker token is not an API key: its own prefix, its own table, and a name instead of a
tenant. The name is the worker identity the token proves; leases, the audit trail and the
languages a worker registers belong to it. Stored as SHA-256 only, like API keys (256
random bits leave nothing to brute-force, and every gateway call looks one up).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass, field

from control_plane.store import audit
from control_plane.store.backend import Backend, Tx
from control_plane.store.records import JobState
from control_plane.store.tenants import hash_key

TOKEN_PREFIX = "swt_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_COLUMNS = "id, name, prefix, created_at, revoked_at"


class WorkerTokenExists(ValueError):
    pass


class InvalidWorkerTokenName(ValueError):
    pass


@dataclass(frozen=True)
class WorkerToken:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class WorkerIdentity:
    """Who is calling the gateway: resolved from the bearer token."""

    token_id: str
    name: str
    # hash_key of the secret, to check the token again while a stream stays open
    token_hash: str = field(default="", repr=False)


def _new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidWorkerTokenName(f"name {name!r} is not a worker identity: {NAME_RULE}")


def _insert(conn: Tx, name: str, secret: str, now: float, actor: str
            ) -> WorkerToken:
    token = WorkerToken(id=f"wt_{uuid.uuid4().hex[:16]}", name=name, prefix=secret[:10],
                        created_at=now, revoked_at=None)
    # The unique index on live names refuses a second live token of the same name, also
    # when two control planes mint one at once.
    inserted = conn.execute(
        "INSERT INTO worker_tokens (id, name, token_hash, prefix, created_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        (token.id, name, hash_key(secret), token.prefix, now),
    ).fetchone()
    if inserted is None:
        raise WorkerTokenExists(f"a live worker token named {name!r} exists already"
                                " (revoke it first, or choose another name)")
    audit.record(conn, tenant_id="", actor=actor, action="worker_token_created", now=now,
                 token_id=token.id, name=name)
    return token


def _revoke(conn: Tx, token_id: str, now: float, actor: str) -> bool:
    """Revokes a live token and gives up its identity's leases in the same transaction, so
    the jobs run again at once on whichever control plane notices first."""
    row = conn.execute(
        "UPDATE worker_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
        " RETURNING name",
        (now, token_id),
    ).fetchone()
    if row is None:
        return False
    name = row[0]
    released = conn.execute(
        "UPDATE jobs SET lease_expires_at = ? WHERE state = ? AND lease_owner = ?"
        " AND lease_expires_at > ? RETURNING id",
        (now, JobState.RUNNING, name, now),
    ).fetchall()
    audit.record(conn, tenant_id="", actor=actor, action="worker_token_revoked", now=now,
                 token_id=token_id, name=name, leases_released=len(released))
    return True


def _find(conn: Tx, id_or_name: str) -> WorkerToken | None:
    """By id; else the live token of that name; else the newest revoked one of it."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM worker_tokens WHERE id = ?",
                       (id_or_name,)).fetchone()
    if row is None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM worker_tokens WHERE name = ?"
            " ORDER BY revoked_at IS NULL DESC, created_at DESC LIMIT 1",
            (id_or_name,),
        ).fetchone()
    return WorkerToken(*row) if row else None


class WorkerTokenStore:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def create(self, name: str, *, actor: str = "cli") -> tuple[WorkerToken, str]:
        """Returns the record and the secret; the secret is not kept."""
        check_name(name)
        secret = _new_secret()
        now = time.time()
        return await self._db.run(lambda conn: _insert(conn, name, secret, now, actor)), secret

    async def rotate(self, name: str, *, actor: str) -> tuple[WorkerToken, str]:
        """A fresh token for the identity, revoking its live one (`sluice up`, which mints
        its workers' tokens anew at every start)."""
        check_name(name)
        secret = _new_secret()
        now = time.time()

        def tx(conn: Tx) -> WorkerToken:
            live = conn.execute(
                "SELECT id FROM worker_tokens WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchone()
            if live is not None:
                _revoke(conn, live[0], now, actor)
            return _insert(conn, name, secret, now, actor)

        return await self._db.run(tx), secret

    async def list(self, *, include_revoked: bool = False) -> list[WorkerToken]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"

        def tx(conn: Tx) -> list[WorkerToken]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM worker_tokens{where} ORDER BY name, created_at")
            return [WorkerToken(*row) for row in rows]

        return await self._db.run(tx)

    async def revoke(self, id_or_name: str, *, actor: str = "cli") -> WorkerToken | None:
        """The token (revoked, also when it was already); None when there is no such token."""
        now = time.time()

        def tx(conn: Tx) -> WorkerToken | None:
            token = _find(conn, id_or_name)
            if token is None:
                return None
            if token.revoked_at is None:
                _revoke(conn, token.id, now, actor)
            return _find(conn, token.id)

        return await self._db.run(tx)

    async def live_identity(self, token_hash: str) -> WorkerIdentity | None:
        """The identity of the live token with this hash (hash_key of the secret); None for
        an unknown or revoked token."""

        def tx(conn: Tx) -> WorkerIdentity | None:
            row = conn.execute(
                "SELECT id, name FROM worker_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                (token_hash,),
            ).fetchone()
            return WorkerIdentity(row[0], row[1], token_hash) if row else None

        return await self._db.run(tx)
