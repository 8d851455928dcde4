"""What every response carries and what every request must show.

Job output is hostile: the pages build the DOM with textContent only, and the CSP forbids
inline script, so a `<script>` a job printed is text and never runs. No framing (clickjacking),
no MIME sniffing, no referrer. State-changing requests are POSTs that must carry the
session's CSRF token in a header (a form on another site cannot set one) and come from this
origin; the session cookie is SameSite=Strict besides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from console.sessions import COOKIE, CSRF_HEADER, Session, Sessions

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
       " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends "Origin: null" on its own forms.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)
SESSION = "session"  # request key of the signed-in Session
# Reachable without a session: the sign-in page and what it needs.
PUBLIC = ("/signin", "/static/", "/healthz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        # Browsers send Origin on every cross-site POST; its absence means same-site (or
        # not a browser, which has no victim's cookie to ride on).
        return True
    return origin == f"{request.scheme}://{request.host}"


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.update(HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if session is None:
        if request.path.startswith("/api/"):
            raise web.HTTPUnauthorized(text='{"error": "not signed in"}',
                                       content_type="application/json")
        raise web.HTTPSeeOther("/signin")
    if request.method == "POST" and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
        raise web.HTTPForbidden(text='{"error": "missing or wrong CSRF token"}',
                                content_type="application/json")
    request[SESSION] = session
    return await handler(request)


def session_of(request: web.Request) -> Session:
    return request[SESSION]
