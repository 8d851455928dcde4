"""Worker processes as they last reported, and the controls operators set for them.

Each worker reports every SLUICE_WORKER_REPORT_INTERVAL_S (its languages, its sandbox
slots, the slots it uses now, its running jobs, whether it drains); the answer carries the
controls set for it since, so a control takes effect within one report interval. A row is
a worker process (worker_id), under the identity of the token it reports with; a process
only ever writes its own row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from control_plane.store import audit
from control_plane.store.backend import Backend, Tx

# Rows of workers unheard of for this long are forgotten at the next report of any worker.
FORGET_AFTER_S = 24 * 3600.0
_COLUMNS = ("worker_id, identity, languages, slots, active_slots, running_jobs, draining,"
            " first_seen, last_seen, want_slots, want_draining")


@dataclass(frozen=True)
class WorkerReport:
    worker_id: str
    identity: str
    languages: list[str]
    slots: int
    active_slots: int
    running_jobs: int
    draining: bool


@dataclass(frozen=True)
class Controls:
    slots: int | None  # None: the slots the worker started with
    draining: bool


@dataclass(frozen=True)
class WorkerRecord:
    worker_id: str
    identity: str
    languages: list[str]
    slots: int
    active_slots: int
    running_jobs: int
    draining: bool
    first_seen: float
    last_seen: float
    controls: Controls

    @property
    def applied(self) -> bool:
        """The worker's last report shows the operator's controls in effect."""
        want = self.controls.slots if self.controls.slots is not None else self.slots
        if self.controls.draining:
            want = 0
        return self.draining == self.controls.draining and self.active_slots == want


class UnknownWorker(LookupError):
    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker_id: no worker {worker_id!r} has reported (see ListWorkers)")


class InvalidSlots(ValueError):
    pass


def _record(row: tuple) -> WorkerRecord:
    return WorkerRecord(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5],
                        bool(row[6]), row[7], row[8],
                        Controls(row[9], bool(row[10])))


class WorkerStore:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def report(self, report: WorkerReport) -> Controls:
        """Records the report; returns the controls the worker is to apply."""
        now = time.time()

        def tx(conn: Tx) -> Controls:
            row = conn.execute(
                "INSERT INTO workers (worker_id, identity, languages, slots, active_slots,"
                " running_jobs, draining, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE SET"
                " languages = excluded.languages, slots = excluded.slots,"
                " active_slots = excluded.active_slots, running_jobs = excluded.running_jobs,"
                " draining = excluded.draining, last_seen = excluded.last_seen"
                " WHERE workers.identity = excluded.identity"
                " RETURNING want_slots, want_draining",
                (report.worker_id, report.identity, json.dumps(report.languages),
                 report.slots, report.active_slots, report.running_jobs,
                 int(report.draining), now, now),
            ).fetchone()
            conn.execute("DELETE FROM workers WHERE last_seen < ?", (now - FORGET_AFTER_S,))
            if row is None:
                # The worker id is another identity's: its controls are not this one's.
                return Controls(None, False)
            return Controls(row[0], bool(row[1]))

        return await self._db.run(tx)

    async def list(self, seen_within_s: float) -> list[WorkerRecord]:
        since = time.time() - seen_within_s

        def tx(conn: Tx) -> list[WorkerRecord]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM workers WHERE last_seen > ?"
                                " ORDER BY identity, worker_id", (since,))
            return [_record(row) for row in rows]

        return await self._db.run(tx)

    async def set_controls(self, worker_id: str, *, actor: str, draining: bool | None = None,
                           slots: int | None = None, reset_slots: bool = False
                           ) -> WorkerRecord:
        """Changes what is given (audited: worker_drained, worker_undrained,
        worker_slots_set); raises UnknownWorker or InvalidSlots."""
        now = time.time()

        def tx(conn: Tx) -> WorkerRecord:
            row = conn.execute(f"SELECT {_COLUMNS} FROM workers WHERE worker_id = ?"
                               f"{conn.dialect.for_update}", (worker_id,)).fetchone()
            if row is None:
                raise UnknownWorker(worker_id)
            worker = _record(row)
            if slots is not None and not 0 <= slots <= worker.slots:
                raise InvalidSlots(
                    f"slots is {slots}; worker {worker_id!r} has {worker.slots} sandbox slots,"
                    f" so it must be 0-{worker.slots} (0 takes no new job, like a drain)")
            common = {"tenant_id": "", "actor": actor, "now": now, "worker_id": worker_id,
                      "identity": worker.identity}
            if draining is not None and draining != worker.controls.draining:
                conn.execute("UPDATE workers SET want_draining = ? WHERE worker_id = ?",
                             (int(draining), worker_id))
                audit.record(conn, action="worker_drained" if draining else "worker_undrained",
                             **common)
            if slots is not None or reset_slots:
                conn.execute("UPDATE workers SET want_slots = ? WHERE worker_id = ?",
                             (slots, worker_id))
                audit.record(conn, action="worker_slots_set", **common,
                             slots=slots if slots is not None else worker.slots,
                             was=(worker.controls.slots if worker.controls.slots is not None
                                  else worker.slots))
            updated = conn.execute(f"SELECT {_COLUMNS} FROM workers WHERE worker_id = ?",
                                   (worker_id,)).fetchone()
            return _record(updated)

        return await self._db.run(tx)
