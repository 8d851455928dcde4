"""The languages workers have announced, cached: SubmitJob checks against it on every call."""

from __future__ import annotations

import time

from control_plane.store.jobs import JobStore
from sluice.v1 import job_pb2 as pb

# Another control-plane process may have heard a new worker; re-read the store this often.
REFRESH_S = 5.0


class LanguageCatalog:
    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs
        self._languages: list[pb.Language] = []
        self._ids: set[str] = set()
        self._read_at = 0.0

    async def record(self, languages: list[pb.Language]) -> None:
        await self._jobs.record_languages(languages)
        await self._refresh()

    async def _refresh(self) -> None:
        self._languages = await self._jobs.languages()
        self._ids = {language.id for language in self._languages}
        self._read_at = time.monotonic()

    async def _fresh(self) -> None:
        if time.monotonic() - self._read_at > REFRESH_S:
            await self._refresh()

    async def ids(self) -> set[str]:
        await self._fresh()
        return self._ids

    async def languages(self) -> list[pb.Language]:
        await self._fresh()
        return list(self._languages)
