"""A job's events as server-sent events, fed by WatchJob.

Each event's SSE id is its seq. A browser whose connection drops reconnects by itself with
Last-Event-ID, and the watch resumes after that seq (WatchJob's after_seq): no event is lost
or sent twice. The stream ends with an `end` event after the job's terminal state, which the
page takes as the sign not to reconnect.
"""

from __future__ import annotations

import json

import grpc
from aiohttp import web

from console import metrics
from console.json_forms import as_json
from console.security import session_of
from console.views import API, routes
from sluice.observability import get_logger

log = get_logger(__name__)


def _after_seq(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after_seq") or "0"
    try:
        return max(0, int(raw))
    except ValueError:
        raise web.HTTPBadRequest(text="after_seq (or Last-Event-ID) must be a seq number") \
            from None


@routes.get("/api/jobs/{job_id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    job_id = request.match_info["job_id"]
    after_seq = _after_seq(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    # The browser's wait before it reconnects on its own after a drop.
    await response.write(b"retry: 1000\n\n")
    sent = 0
    metrics.OPEN_STREAMS.inc()
    try:
        async for event in request.app[API].watch(job_id, after_seq, session.key,
                                                       admin=session.admin):
            kind = event.WhichOneof("event") or "event"
            payload = json.dumps(as_json(event), separators=(",", ":"))
            await response.write(f"id: {event.seq}\nevent: {kind}\ndata: {payload}\n\n"
                                 .encode())
            sent += 1
        await response.write(b"event: end\ndata: {}\n\n")
    except grpc.aio.AioRpcError as exc:
        message = json.dumps({"error": f"{exc.code().name}: {exc.details()}"})
        await response.write(f"event: failure\ndata: {message}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away; it resumes with Last-Event-ID if it comes back
    finally:
        metrics.OPEN_STREAMS.dec()
    log.info("console_watch_ended", job_id=job_id, after_seq=after_seq, events=sent)
    return response
