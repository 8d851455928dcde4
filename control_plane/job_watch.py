"""A job's events as a stream, for WatchJob: the tenant's own (ExecutionService) and any
tenant's for operators (AdminService). Reconnecting with after_seq resumes without loss."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from control_plane import metrics
from control_plane.auth import UNKNOWN_KEY, KeyCheck, Unauthenticated
from control_plane.job_messages import event_message
from control_plane.open_streams import OpenStreams, StreamTicket, TooManyStreams
from control_plane.store.jobs import TERMINAL_STATES, JobStore, Reader
from control_plane.watch_hub import WatchHub
from sluice.v1 import archive_pb2 as arc
from sluice.v1 import job_pb2 as pb

WATCH_BATCH = 500  # events per read of the store while watching
REVOKED = f"{UNKNOWN_KEY}: it was revoked while this stream was open"


def _is_terminal_event(event: pb.JobEvent) -> bool:
    return event.HasField("state_change") and event.state_change.state in TERMINAL_STATES


# (job id, tenant id, context) -> the archived job, or None; aborts when it cannot tell.
ArchiveLookup = Callable[[str, str, grpc.aio.ServicerContext],
                         Awaitable["arc.ArchivedJob | None"]]


class JobWatch:
    def __init__(self, jobs: JobStore, hub: WatchHub, streams: OpenStreams, *,
                 archived: ArchiveLookup | None = None) -> None:
        self._jobs = jobs
        self._hub = hub
        self._streams = streams
        # A tenant's job the store no longer has, from the archive (retention).
        self._archived = archived

    async def stream(self, job_id: str, after_seq: int, reader: Reader,
                     context: grpc.aio.ServicerContext, *, key: KeyCheck | None = None
                     ) -> AsyncIterator[pb.JobEvent]:
        """The events of the reader's job after after_seq until its terminal one. With
        `key`, the reader is that key's check: once it has passed (in the first read), the
        rest of the stream reads as its tenant, counts against its tenant's cap of open
        streams and ends when the key is revoked."""
        after = after_seq
        metrics.WATCHERS.inc()
        try:
            # Subscribed before the first read; woken is cleared before each read, so an
            # event stored after a read always wakes the wait that follows it.
            with contextlib.ExitStack() as stream, \
                    self._hub.subscribe(job_id, after) as subscription:
                first = True  # the first read is from the store: it checks key and tenant
                ticket: StreamTicket | None = None  # counted against the tenant's cap
                while True:
                    if ticket is not None and ticket.revoked:
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED)
                    subscription.woken.clear()
                    # What this process just stored, if it follows `after` without a gap;
                    # otherwise (or first) the store.
                    events = [] if first else subscription.take_following(after)
                    ended = more = False
                    if not events:
                        try:
                            read = await self._jobs.watch_read(job_id, reader, max(after, 0),
                                                               WATCH_BATCH)
                        except Unauthenticated as exc:
                            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
                        if key is not None and key.principal is not None:
                            reader = key.principal.tenant_id  # checked once, for the stream
                        if (read is None and self._archived is not None
                                and isinstance(reader, str)):
                            # Gone from the store (before this stream, or during its
                            # replay): the archive has it all, if it has it. The reader is
                            # a tenant by now (a key's, once checked, or an operator's).
                            archive = await self._archived(job_id, reader, context)
                            if archive is not None:
                                if after < 0:
                                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                                        "after_seq must be >= 0")
                                for event in archive.events:
                                    if event.seq <= after:
                                        continue
                                    yield event
                                    if _is_terminal_event(event):
                                        return
                                return
                        if read is None:
                            if after == after_seq:
                                # Another tenant's job reads the same as no job: ids leak
                                # nothing.
                                await context.abort(grpc.StatusCode.NOT_FOUND,
                                                    f"job {job_id!r} not found")
                            return
                        if after < 0:
                            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                                "after_seq must be >= 0")
                        if ticket is None and key is not None:
                            assert key.principal is not None
                            try:
                                ticket = stream.enter_context(self._streams.open(
                                    key.principal, subscription.woken.set))
                            except TooManyStreams as exc:
                                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                    str(exc))
                        stored, ended = read
                        events = [event_message(e) for e in stored]
                        more = len(events) == WATCH_BATCH
                    first = False
                    for event in events:
                        if ticket is not None and ticket.revoked:
                            await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED)
                        yield event
                        after = event.seq
                        if _is_terminal_event(event):
                            return
                    if more:
                        continue  # more stored than one read returns: read on at once
                    # Events and state come from one transaction: an ended job with nothing
                    # more after `after` has nothing more to send.
                    if ended:
                        return
                    # Writers here notify the hub with the events they stored; its poll
                    # brings the events another control-plane process writes. Woken may
                    # already be set: look again.
                    subscription.seen_seq = after
                    await subscription.woken.wait()
        finally:
            metrics.WATCHERS.dec()
