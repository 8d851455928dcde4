"""The WatchJob streams open on this process: capped per tenant, ended when their key goes.

The cap (SLUICE_MAX_WATCHES_PER_TENANT) is counted per control-plane process: each stream
costs the process that serves it (a task, a subscription, its reads), so that is where it
is bounded; N processes behind a balancer let a tenant hold N times as many in all.

A stream's key is checked when it opens. After that, RevokeApiKey on this process ends the
key's streams at once; a key revoked any other way (`sluice key revoke`, another process)
is found by one look at the store every CHECK_S for all the keys with streams open here,
however many streams there are.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from control_plane.store.tenants import Principal
from sluice.observability import get_logger

log = get_logger(__name__)
CHECK_S = 1.0

RevokedAmong = Callable[[list[str]], Awaitable[set[str]]]


class TooManyStreams(Exception):
    """The message names the setting and its value."""


class StreamTicket:
    """One open stream: `revoked` is set when its key is revoked, and `wake` (the stream's
    own wake-up) is called so a stream waiting for events notices at once."""

    def __init__(self, principal: Principal, wake: Callable[[], None]) -> None:
        self.principal = principal
        self.revoked = False
        self._wake = wake

    def revoke(self) -> None:
        self.revoked = True
        self._wake()


class OpenStreams:
    def __init__(self, max_per_tenant: int) -> None:
        self._max_per_tenant = max_per_tenant
        self._by_tenant: defaultdict[str, int] = defaultdict(int)
        self._by_key: defaultdict[str, set[StreamTicket]] = defaultdict(set)

    @contextmanager
    def open(self, principal: Principal, wake: Callable[[], None]) -> Iterator[StreamTicket]:
        """Raises TooManyStreams when the tenant has its cap open here already."""
        tenant_id = principal.tenant_id
        if self._by_tenant[tenant_id] >= self._max_per_tenant:
            raise TooManyStreams(
                f"the tenant has {self._by_tenant[tenant_id]} WatchJob streams open on this "
                f"control plane, the most it may (SLUICE_MAX_WATCHES_PER_TENANT="
                f"{self._max_per_tenant}); end one first")
        ticket = StreamTicket(principal, wake)
        self._by_tenant[tenant_id] += 1
        self._by_key[principal.key_id].add(ticket)
        try:
            yield ticket
        finally:
            self._by_tenant[tenant_id] -= 1
            if not self._by_tenant[tenant_id]:
                del self._by_tenant[tenant_id]
            tickets = self._by_key[principal.key_id]
            tickets.discard(ticket)
            if not tickets:
                del self._by_key[principal.key_id]

    def revoke(self, key_id: str) -> int:
        """Ends the key's streams here; returns how many."""
        tickets = list(self._by_key.get(key_id, ()))
        for ticket in tickets:
            ticket.revoke()
        return len(tickets)

    async def check_revoked(self, revoked_among: RevokedAmong) -> None:
        keys = list(self._by_key)
        if not keys:
            return
        for key_id in await revoked_among(keys):
            ended = self.revoke(key_id)
            if ended:
                log.info("streams_of_revoked_key_ended", key_id=key_id, streams=ended)

    async def check_revoked_forever(self, revoked_among: RevokedAmong,
                                    interval_s: float = CHECK_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check_revoked(revoked_among)
            except Exception:
                log.exception("revoked_key_check_failed")
