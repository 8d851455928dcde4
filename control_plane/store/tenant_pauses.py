"""Paused tenants: an operator's brake on one tenant, without touching anyone else.

While a tenant is paused its jobs are still accepted; each that a worker claims is held
QUEUED at the claim with the reason in its state_reason (the path the CPU quota takes,
control_plane/store/holds.py), and jobs running already finish. Resuming lets the hold
releaser publish the held jobs again, within the tenant's running quota.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from control_plane.store import audit
from control_plane.store.backend import Backend, Tx


@dataclass(frozen=True)
class Pause:
    tenant_id: str
    paused_at: float
    paused_by: str


def pause_of(conn: Tx, tenant_id: str) -> Pause | None:
    row = conn.execute("SELECT tenant_id, paused_at, paused_by FROM tenant_pauses"
                       " WHERE tenant_id = ?", (tenant_id,)).fetchone()
    return Pause(*row) if row else None


def paused_reason(pause: Pause) -> str:
    return (f"waiting: the tenant was paused by an operator ({pause.paused_by}); its jobs "
            "start once it is resumed")


class TenantPauseStore:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def set_paused(self, tenant_id: str, paused: bool, *, actor: str) -> Pause | None:
        """Pauses or resumes the tenant (audited as tenant_paused / tenant_resumed, once per
        change); returns the pause in force afterwards."""
        now = time.time()

        def tx(conn: Tx) -> Pause | None:
            conn.dialect.lock_tenant(conn, tenant_id)
            current = pause_of(conn, tenant_id)
            if paused and current is None:
                conn.execute("INSERT INTO tenant_pauses (tenant_id, paused_at, paused_by)"
                             " VALUES (?, ?, ?)", (tenant_id, now, actor))
                audit.record(conn, tenant_id=tenant_id, actor=actor, action="tenant_paused",
                             now=now)
                return Pause(tenant_id, now, actor)
            if not paused and current is not None:
                conn.execute("DELETE FROM tenant_pauses WHERE tenant_id = ?", (tenant_id,))
                audit.record(conn, tenant_id=tenant_id, actor=actor, action="tenant_resumed",
                             now=now, paused_for_s=round(now - current.paused_at, 3))
                return None
            return current

        return await self._db.run(tx)

    async def all(self) -> dict[str, Pause]:
        def tx(conn: Tx) -> dict[str, Pause]:
            rows = conn.execute("SELECT tenant_id, paused_at, paused_by FROM tenant_pauses")
            return {row[0]: Pause(*row) for row in rows}

        return await self._db.run(tx)
