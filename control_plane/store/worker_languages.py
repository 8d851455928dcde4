"""The languages each worker identity has registered, and when it last did.

A worker re-registers every SLUICE_WORKER_REGISTER_INTERVAL_S; languages whose identities
have all stopped doing so (or whose token was revoked) leave the catalogue. An identity
writes only its own rows, so one worker cannot add or replace languages for another.
"""

from __future__ import annotations

import time

from control_plane.store.backend import Backend, Tx
from control_plane.store.records import LanguageRecord, RecordCodec


class WorkerLanguageStore:
    def __init__(self, db: Backend, codec: RecordCodec) -> None:
        self._db = db
        self._codec = codec

    async def record(self, worker: str, languages: list[LanguageRecord]) -> None:
        now = time.time()

        def tx(conn: Tx) -> None:
            conn.executemany(
                "INSERT INTO worker_languages (worker, language_id, language, last_seen)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (worker, language_id) DO UPDATE"
                " SET language = excluded.language, last_seen = excluded.last_seen",
                [(worker, lang.id, self._codec.encode_language(lang), now) for lang in languages],
            )

        await self._db.run(tx)

    async def live(self, seen_within_s: float) -> list[LanguageRecord]:
        """Each language some live identity registered within the window, by id; where
        several did, the latest registration's description."""
        since = time.time() - seen_within_s

        def tx(conn: Tx) -> list[LanguageRecord]:
            rows = conn.execute(
                "SELECT language_id, language FROM worker_languages w WHERE last_seen > ?"
                " AND EXISTS (SELECT 1 FROM worker_tokens t"
                "             WHERE t.name = w.worker AND t.revoked_at IS NULL)"
                " ORDER BY language_id, last_seen",
                (since,),
            )
            latest = {language_id: blob for language_id, blob in rows}
            return [self._codec.decode_language(blob) for blob in latest.values()]

        return await self._db.run(tx)
