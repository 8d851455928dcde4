"""The languages live workers have announced, cached: SubmitJob checks against it on every
call. A language stays while an identity that registered it keeps re-registering (every
SLUICE_WORKER_REGISTER_INTERVAL_S); three intervals of silence and it is gone."""

from __future__ import annotations

import time

from control_plane.job_messages import language_message, language_record
from control_plane.store.worker_languages import WorkerLanguageStore
from sluice.v1 import job_pb2 as pb

# Another control-plane process may have heard a new worker; re-read the store this often.
REFRESH_S = 5.0
# Registrations a worker may miss (a slow gateway, a restart) before its languages go.
MISSED_REGISTRATIONS = 3


class LanguageCatalog:
    def __init__(self, store: WorkerLanguageStore, *, register_interval_s: float) -> None:
        self._store = store
        self._window_s = MISSED_REGISTRATIONS * register_interval_s
        self._refresh_s = min(REFRESH_S, self._window_s / 2)
        self._languages: list[pb.Language] = []
        self._ids: set[str] = set()
        self._read_at = 0.0

    async def record(self, worker: str, languages: list[pb.Language]) -> None:
        await self._store.record(worker, [language_record(lang) for lang in languages])
        await self._refresh()

    async def _refresh(self) -> None:
        self._languages = [language_message(lang)
                           for lang in await self._store.live(self._window_s)]
        self._ids = {language.id for language in self._languages}
        self._read_at = time.monotonic()

    async def _fresh(self) -> None:
        if time.monotonic() - self._read_at > self._refresh_s:
            await self._refresh()

    async def ids(self) -> set[str]:
        await self._fresh()
        return self._ids

    async def languages(self) -> list[pb.Language]:
        await self._fresh()
        return list(self._languages)

    def forget_cached(self) -> None:
        """A worker token was revoked here: its languages go at the next read."""
        self._read_at = 0.0
