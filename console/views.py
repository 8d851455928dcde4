"""The console's JSON API, which the pages call: each handler is one gRPC call (or a few)
with the signed-in user's key. A refusal comes back as its gRPC status in words."""

from __future__ import annotations

import json
from typing import Any

import grpc
from aiohttp import web

from console.api_client import SluiceApi
from console.json_forms import as_json, labels_from, state_from, timestamp_from
from console.security import session_of
from sluice.v1 import admin_service_pb2 as adm
from sluice.v1 import execution_service_pb2 as api

API: web.AppKey[SluiceApi] = web.AppKey("api", SluiceApi)
routes = web.RouteTableDef()

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
QUOTA_FIELDS = tuple(field.name for field in adm.Quota.DESCRIPTOR.fields)


def _error(status: int, message: str) -> web.HTTPException:
    error_class = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
                   404: web.HTTPNotFound, 409: web.HTTPConflict,
                   429: web.HTTPTooManyRequests, 503: web.HTTPServiceUnavailable,
                   504: web.HTTPGatewayTimeout}.get(status, web.HTTPBadGateway)
    return error_class(text=json.dumps({"error": message}), content_type="application/json")


async def call(request: web.Request, method_name: str, message: object, *,
               admin: bool = False) -> Any:
    platform = request.app[API]
    session = session_of(request)
    if admin and not session.admin:
        raise _error(403, "this page needs an operator's admin key")
    stub = platform.admin if admin else platform.jobs
    try:
        return await platform.call(getattr(stub, method_name), message, session.key)
    except grpc.aio.AioRpcError as exc:
        raise _error(_HTTP_STATUS.get(exc.code(), 502),
                     f"{exc.code().name}: {exc.details()}") from None


def ok(payload: object) -> web.Response:
    return web.json_response(payload)


async def body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise _error(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise _error(400, "the request body must be a JSON object")
    return data


@routes.get("/api/session")
async def session_info(request: web.Request) -> web.Response:
    session = session_of(request)
    return ok({"admin": session.admin, "who": session.label, "csrf": session.csrf})


# Jobs ----------------------------------------------------------------------------------


@routes.get("/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    query = request.query
    try:
        states = [state_from(value) for value in query.getall("state", []) if value]
        labels = labels_from([value for value in query.getall("label", []) if value])
        page_size = int(query.get("page_size") or 20)
        times = {field: timestamp_from(query[name], name)
                 for name, field in (("after", "created_after"), ("before", "created_before"))
                 if query.get(name)}
    except ValueError as exc:
        raise _error(400, str(exc)) from None
    fields: dict[str, Any] = {"page_size": page_size, "page_token": query.get("page_token", ""),
                              "states": states, "labels": labels, **times}
    session = session_of(request)
    if session.admin:
        tenant = query.get("tenant", "")
        if not tenant:
            raise _error(400, "tenant: an operator picks the tenant whose jobs to list")
        reply = await call(request, "ListJobs",
                           adm.AdminServiceListJobsRequest(tenant_id=tenant, **fields),
                           admin=True)
    else:
        reply = await call(request, "ListJobs", api.ListJobsRequest(**fields))
    return ok(as_json(reply))


@routes.get("/api/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    job = await call(request, "GetJob",
                     api.GetJobRequest(job_id=request.match_info["job_id"], include_files=True),
                     admin=session_of(request).admin)
    return ok(as_json(job))


@routes.post("/api/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    message = api.CancelJobRequest(job_id=request.match_info["job_id"])
    job = await call(request, "CancelJob", message, admin=session_of(request).admin)
    return ok(as_json(job))


# Dead letters ---------------------------------------------------------------------------


@routes.get("/api/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    query = request.query
    message = adm.ListDeadLettersRequest(tenant_id=query.get("tenant", ""),
                                         page_token=query.get("page_token", ""), page_size=50)
    if query.get("parked") in ("true", "false"):
        message.parked = query["parked"] == "true"
    return ok(as_json(await call(request, "ListDeadLetters", message, admin=True)))


@routes.post("/api/dead-letters/replay")
async def replay(request: web.Request) -> web.Response:
    data = await body(request)
    job_ids = data.get("job_ids") or []
    if not isinstance(job_ids, list) or not all(isinstance(j, str) for j in job_ids):
        raise _error(400, "job_ids must be a list of job ids")
    message = adm.ReplayDeadLettersRequest(job_ids=job_ids, all=bool(data.get("all")))
    return ok(as_json(await call(request, "ReplayDeadLetters", message, admin=True)))


@routes.post("/api/dead-letters/purge")
async def purge(request: web.Request) -> web.Response:
    return ok(as_json(await call(request, "PurgeParked", adm.PurgeParkedRequest(), admin=True)))


# Tenants, keys, quotas --------------------------------------------------------------------


@routes.get("/api/tenants")
async def tenants(request: web.Request) -> web.Response:
    return ok(as_json(await call(request, "ListTenants", adm.ListTenantsRequest(), admin=True)))


@routes.post("/api/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    data = await body(request)
    message = adm.CreateTenantRequest(name=str(data.get("name", "")),
                                      admin=bool(data.get("admin")))
    return ok(as_json(await call(request, "CreateTenant", message, admin=True)))


@routes.post("/api/tenants/{tenant}/pause")
async def pause_tenant(request: web.Request) -> web.Response:
    message = adm.PauseTenantRequest(tenant_id=request.match_info["tenant"])
    return ok(as_json(await call(request, "PauseTenant", message, admin=True)))


@routes.post("/api/tenants/{tenant}/resume")
async def resume_tenant(request: web.Request) -> web.Response:
    message = adm.ResumeTenantRequest(tenant_id=request.match_info["tenant"])
    return ok(as_json(await call(request, "ResumeTenant", message, admin=True)))


@routes.get("/api/tenants/{tenant}/keys")
async def keys(request: web.Request) -> web.Response:
    message = adm.ListApiKeysRequest(tenant_id=request.match_info["tenant"])
    return ok(as_json(await call(request, "ListApiKeys", message, admin=True)))


@routes.post("/api/tenants/{tenant}/keys")
async def create_key(request: web.Request) -> web.Response:
    data = await body(request)
    message = adm.CreateApiKeyRequest(tenant_id=request.match_info["tenant"],
                                      admin=bool(data.get("admin")))
    return ok(as_json(await call(request, "CreateApiKey", message, admin=True)))


@routes.post("/api/keys/{key_id}/revoke")
async def revoke_key(request: web.Request) -> web.Response:
    message = adm.RevokeApiKeyRequest(key_id=request.match_info["key_id"])
    return ok(as_json(await call(request, "RevokeApiKey", message, admin=True)))


@routes.get("/api/tenants/{tenant}/quota")
async def quota(request: web.Request) -> web.Response:
    message = adm.GetQuotaRequest(tenant_id=request.match_info["tenant"])
    return ok(as_json(await call(request, "GetQuota", message, admin=True)))


@routes.post("/api/tenants/{tenant}/quota")
async def set_quota(request: web.Request) -> web.Response:
    data = await body(request)
    changes = data.get("quota") or {}
    reset = data.get("reset") or []
    if not isinstance(changes, dict) or not isinstance(reset, list):
        raise _error(400, "quota must be an object of fields, reset a list of field names")
    quota = adm.Quota()
    for name, value in changes.items():
        if name not in QUOTA_FIELDS:
            raise _error(400, f"quota: no field {name!r} (one of {', '.join(QUOTA_FIELDS)})")
        try:
            setattr(quota, name, type(getattr(adm.Quota(), name))(value))
        except (TypeError, ValueError):
            raise _error(400, f"quota.{name}: {value!r} is not a number") from None
    message = adm.SetQuotaRequest(tenant_id=request.match_info["tenant"], quota=quota,
                                  reset_fields=[str(name) for name in reset])
    return ok(as_json(await call(request, "SetQuota", message, admin=True)))


# Workers and queues -----------------------------------------------------------------------


@routes.get("/api/workers")
async def workers(request: web.Request) -> web.Response:
    return ok(as_json(await call(request, "ListWorkers", adm.ListWorkersRequest(), admin=True)))


@routes.post("/api/workers/{worker_id}/drain")
async def drain(request: web.Request) -> web.Response:
    message = adm.DrainWorkerRequest(worker_id=request.match_info["worker_id"])
    return ok(as_json(await call(request, "DrainWorker", message, admin=True)))


@routes.post("/api/workers/{worker_id}/undrain")
async def undrain(request: web.Request) -> web.Response:
    message = adm.ResumeWorkerRequest(worker_id=request.match_info["worker_id"])
    return ok(as_json(await call(request, "ResumeWorker", message, admin=True)))


@routes.post("/api/workers/{worker_id}/slots")
async def slots(request: web.Request) -> web.Response:
    data = await body(request)
    message = adm.SetWorkerSlotsRequest(worker_id=request.match_info["worker_id"])
    if data.get("slots") is not None:
        try:
            message.slots = int(data["slots"])
        except (TypeError, ValueError):
            raise _error(400, f"slots: {data['slots']!r} is not a whole number") from None
    return ok(as_json(await call(request, "SetWorkerSlots", message, admin=True)))


@routes.get("/api/queues")
async def queues(request: web.Request) -> web.Response:
    return ok(as_json(await call(request, "GetQueueDepths", adm.GetQueueDepthsRequest(),
                                 admin=True)))


# The audit trail ---------------------------------------------------------------------------


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    query = request.query
    message = adm.ListAuditEventsRequest(
        tenant_id=query.get("tenant", ""), job_id=query.get("job", ""),
        action=query.get("action", ""), page_token=query.get("page_token", ""), page_size=50)
    return ok(as_json(await call(request, "ListAuditEvents", message, admin=True)))
