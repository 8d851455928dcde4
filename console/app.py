"""The console's web application: sign-in, the pages (static files), the JSON API and the
live event streams. aiohttp serves it: async like every Sluice service (the gRPC calls and
the event streams share one loop), with server-sent events by plain streaming."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from aiohttp import web

from console import (
    events,  # noqa: F401  (its routes join views.routes)
    metrics,
)
from console.api_client import SluiceApi
from console.security import SESSIONS, Handler, headers, signed_in
from console.sessions import COOKIE, Session, Sessions
from console.views import API, routes
from sluice.observability import get_logger
from sluice.settings import Settings

log = get_logger(__name__)
STATIC = Path(__file__).parent / "static"
MAX_KEY_CHARS = 512


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.monotonic() - started
        metrics.REQUESTS.labels(request.method, str(status)).inc()
        metrics.REQUEST_SECONDS.observe(elapsed)
        # The path only: no query (filters), no body (the key at sign-in), no cookie.
        log.info("console_request", method=request.method, path=request.path, status=status,
                 ms=round(elapsed * 1000, 1))


async def signin_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "signin.html")


async def signin(request: web.Request) -> web.Response:
    form = await request.post()
    key = str(form.get("key", "")).strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise web.HTTPSeeOther("/signin?error=empty")
    try:
        admin = await request.app[API].kind_of_key(key)
    except grpc.aio.AioRpcError as exc:
        log.warning("console_api_unreachable", code=exc.code().name, detail=exc.details())
        raise web.HTTPSeeOther("/signin?error=unavailable") from None
    metrics.SIGN_INS.labels({None: "refused", True: "operator", False: "tenant"}[admin]).inc()
    if admin is None:
        log.info("console_signin_refused")
        raise web.HTTPSeeOther("/signin?error=refused")
    sessions = request.app[SESSIONS]
    old = request.cookies.get(COOKIE)
    sessions.close(old)
    session_id = sessions.open(Session(key=key, admin=admin, label=f"{key[:7]}…"))
    log.info("console_signed_in", admin=admin)
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/",
                        secure=request.secure)
    raise response


async def signout(request: web.Request) -> web.Response:
    request.app[SESSIONS].close(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(COOKIE, path="/")
    raise response


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[access_log, headers, signed_in],
                          client_max_size=64 * 1024)
    app[SESSIONS] = Sessions(settings.console_session_idle_s)
    app[API] = SluiceApi(settings)
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.add_routes(routes)

    async def close_platform(app: web.Application) -> None:
        await app[API].close()

    app.on_cleanup.append(close_platform)
    return app
