"""PostgreSQL tells every control plane of each job event stored by any of them; SQLite
cannot, and says so by returning at once (its watchers poll)."""

from __future__ import annotations

import asyncio

from control_plane.store.backend import Backend
from control_plane.store.records import OutputStream
from tests.store.conftest import OpenBackend
from tests.store.helpers import claim, job_store, new_tenant, submit


async def test_events_stored_through_one_replica_are_heard_by_another(
        open_backend: OpenBackend) -> None:
    listener, writer = await open_backend(), await open_backend()
    heard: asyncio.Queue[tuple[str | None, int]] = asyncio.Queue()
    listening = asyncio.create_task(
        listener.listen_job_events(lambda job_id, seq: heard.put_nowait((job_id, seq))))
    try:
        if listener.dialect.name == "sqlite":
            await asyncio.wait_for(listening, 10)  # nothing to listen to: it returns
            return
        assert await asyncio.wait_for(heard.get(), 30) == (None, 0)  # listening now
        jobs = job_store(writer)
        job = await submit(jobs, await new_tenant(writer))
        await claim(jobs, job.id)
        await jobs.append_output(job.id, 1, "w1", OutputStream.STDOUT, b"hi")
        got = [await asyncio.wait_for(heard.get(), 30) for _ in range(3)]
        assert got == [(job.id, 1), (job.id, 2), (job.id, 3)]
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)


async def test_a_rolled_back_event_is_not_heard(open_backend: OpenBackend) -> None:
    listener: Backend = await open_backend()
    if listener.dialect.name == "sqlite":
        return
    heard: asyncio.Queue[tuple[str | None, int]] = asyncio.Queue()
    listening = asyncio.create_task(
        listener.listen_job_events(lambda job_id, seq: heard.put_nowait((job_id, seq))))
    try:
        await asyncio.wait_for(heard.get(), 30)

        def undone(tx) -> None:  # type: ignore[no-untyped-def]
            tx.execute("INSERT INTO job_events (job_id, seq, event) VALUES (?, ?, ?)",
                       ("ghost", 1, b""))
            raise RuntimeError("rolled back")

        try:
            await listener.run(undone)
        except RuntimeError:
            pass
        jobs = job_store(listener)
        job = await submit(jobs, await new_tenant(listener))
        # Notices come in commit order: the first heard after the rollback is the job's.
        assert await asyncio.wait_for(heard.get(), 30) == (job.id, 1)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
