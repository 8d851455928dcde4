"""Signed-in browsers: the API key stays here, server-side; the browser holds only an
opaque session id in an HttpOnly, SameSite=Strict cookie, and a CSRF token it must echo on
every POST."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "sluice_console"
CSRF_HEADER = "X-CSRF-Token"


@dataclass
class Session:
    key: str  # the API key the user signed in with; never sent back, never logged
    admin: bool
    # What the page shows as who is signed in: the key's id prefix, not the key.
    label: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_used: float = field(default_factory=time.monotonic)

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._by_id: dict[str, Session] = {}

    def open(self, session: Session) -> str:
        self._expire()
        session_id = secrets.token_urlsafe(32)
        self._by_id[session_id] = session
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_used > self._idle_s:
            del self._by_id[session_id]
            return None
        session.last_used = now
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for session_id in [sid for sid, s in self._by_id.items()
                           if now - s.last_used > self._idle_s]:
            del self._by_id[session_id]
