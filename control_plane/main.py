"""The control-plane process: public API and worker gateway on separate ports."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control_plane.admin_service import AdminService
from control_plane.archive import JobArchive
from control_plane.archived_jobs import ArchivedJobs
from control_plane.auth import Authenticator
from control_plane.dead_letter_admin import DeadLetterAdmin
from control_plane.execution_service import ExecutionService
from control_plane.hold_releaser import HoldReleaser
from control_plane.job_messages import CODEC
from control_plane.job_publisher import JobPublisher
from control_plane.language_catalog import LanguageCatalog
from control_plane.lease_reaper import LeaseReaper
from control_plane.open_streams import OpenStreams
from control_plane.queue_depths import QueueDepths
from control_plane.retention import RetentionSweeper
from control_plane.rpc_metrics import RpcMetrics
from control_plane.runtime_controls import RuntimeControls
from control_plane.stdin_hub import StdinHub
from control_plane.store.audit import AuditLog
from control_plane.store.backend import open_store, redacted
from control_plane.store.holds import ClaimGate, HoldStore
from control_plane.store.job_stdin import JobStdinStore
from control_plane.store.jobs import JobStore
from control_plane.store.quotas import QuotaStore, TenantQuota
from control_plane.store.retention import RetentionStore
from control_plane.store.tenant_pauses import TenantPauseStore
from control_plane.store.tenants import TenantStore
from control_plane.store.worker_languages import WorkerLanguageStore
from control_plane.store.worker_tokens import WorkerTokenStore
from control_plane.store.workers import WorkerStore
from control_plane.watch_hub import WatchHub
from control_plane.worker_auth import WorkerAuthenticator
from control_plane.worker_gateway import WorkerGateway
from sluice.grpc_channels import TlsConfigError, add_port, server_credentials
from sluice.message_limits import report_max_bytes, request_max_bytes, response_max_bytes
from sluice.observability import configure_logging, get_logger, serve_metrics
from sluice.service_loop import run_until_signalled
from sluice.settings import Settings, get_settings
from sluice.topology import Topology
from sluice.v1 import admin_service_pb2_grpc, execution_service_pb2_grpc, worker_gateway_pb2_grpc

log = get_logger(__name__)
SERVICE_NAMES = ("sluice.v1.ExecutionService", "sluice.v1.AdminService")


def _server(max_receive_bytes: int, max_send_bytes: int) -> grpc.aio.Server:
    return grpc.aio.server(interceptors=[RpcMetrics()], options=[
        # Refused from the length prefix, before the message is read: RESOURCE_EXHAUSTED.
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", max_send_bytes),
        ("grpc.so_reuseport", 0),
        # Calls that arrived but that the event loop has not picked up yet. Past gRPC's
        # default (1,000, hard 3,000) it drops them at random with a bare CANCELLED, which
        # callers do not retry: a batch client that fires 2,000 submits at once lost 7% so.
        # Each waiting call costs a few KB; the quotas, not this queue, bound the work.
        ("grpc.server.max_pending_requests", 20_000),
        ("grpc.server.max_pending_requests_hard_limit", 40_000),
    ])


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # First: a TLS file that is wrong, or a SLUICE_ARCHIVE_URL that is not
    # s3://BUCKET/PREFIX, stops the start before anything is opened.
    api_credentials = server_credentials(settings, gateway=False)
    gateway_credentials = server_credentials(settings, gateway=True)
    archive = (await JobArchive.open(settings.archive_url, settings.s3_endpoint_url)
               if settings.archive_url else None)
    db = await open_store(settings)  # migrated first, under a lock, if it is behind
    quota_defaults = TenantQuota.defaults(settings)
    jobs = JobStore(db, CODEC, claim_gate=ClaimGate(quota_defaults))
    tenants, hub = TenantStore(db), WatchHub()
    topology = Topology(settings.queue_prefix, delivery_limit=settings.queue_delivery_limit)
    publisher = JobPublisher(settings.amqp_url, topology)
    await publisher.start()
    auth = Authenticator(tenants)
    worker_tokens = WorkerTokenStore(db)
    catalog = LanguageCatalog(WorkerLanguageStore(db, CODEC),
                              register_interval_s=settings.worker_register_interval_s)
    workers = WorkerStore(db)
    stdin, stdin_hub = JobStdinStore(db), StdinHub()
    gateway = WorkerGateway(settings, WorkerAuthenticator(worker_tokens), jobs, hub, catalog,
                            publisher, stdin, stdin_hub, workers)
    streams = OpenStreams(settings.max_watches_per_tenant)
    archived = ArchivedJobs(archive)

    api_server = _server(request_max_bytes(settings), response_max_bytes(settings))
    gateway_server = _server(report_max_bytes(), response_max_bytes(settings))
    api_health, gateway_health = health.aio.HealthServicer(), health.aio.HealthServicer()
    execution_service_pb2_grpc.add_ExecutionServiceServicer_to_server(
        ExecutionService(settings, auth, jobs, publisher, hub, gateway, streams, archived,
                         stdin=stdin, stdin_hub=stdin_hub),
        api_server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminService(settings, auth, tenants, DeadLetterAdmin(jobs, publisher),
                     QuotaStore(db, quota_defaults), AuditLog(db), streams, worker_tokens,
                     jobs, hub, gateway,
                     RuntimeControls(TenantPauseStore(db), workers,
                                     QueueDepths(settings.rabbitmq_management_address,
                                                 settings.amqp_vhost, topology)),
                     archived),
        api_server)
    health_pb2_grpc.add_HealthServicer_to_server(api_health, api_server)
    # grpcurl and other generic clients learn the public API from the server itself; the
    # gateway offers no such map of itself.
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), api_server)
    worker_gateway_pb2_grpc.add_WorkerGatewayServicer_to_server(gateway, gateway_server)
    health_pb2_grpc.add_HealthServicer_to_server(gateway_health, gateway_server)
    add_port(api_server, settings.api_listen, api_credentials)
    add_port(gateway_server, settings.gateway_listen, gateway_credentials)
    await api_server.start()
    await gateway_server.start()
    for name in (*SERVICE_NAMES, ""):
        await api_health.set(name, health_pb2.HealthCheckResponse.SERVING)
    await gateway_health.set("sluice.v1.WorkerGateway", health_pb2.HealthCheckResponse.SERVING)
    await gateway_health.set("", health_pb2.HealthCheckResponse.SERVING)

    reaper = asyncio.create_task(
        LeaseReaper(jobs, publisher, hub, max_attempts=settings.max_attempts).run_forever())
    releaser = asyncio.create_task(
        HoldReleaser(HoldStore(db, quota_defaults), publisher).run_forever())
    watch_poll = asyncio.create_task(hub.poll_forever(jobs.last_seqs))
    retention = asyncio.create_task(RetentionSweeper(
        RetentionStore(db, CODEC), archive, retention_s=settings.retention_s,
        audit_retention_s=settings.audit_retention_s,
        interval_s=settings.retention_sweep_s).run_forever())
    key_check = asyncio.create_task(streams.check_revoked_forever(tenants.revoked_among))
    # PostgreSQL tells of every event any control plane stores; SQLite has only the poll.
    watch_listen = asyncio.create_task(
        db.listen_job_events(hub.event_stored, on_stdin=stdin_hub.notify))
    log.info("control_plane_started", api=settings.api_listen, gateway=settings.gateway_listen,
             tls=api_credentials is not None,
             gateway_client_certificates=bool(settings.gateway_client_ca_file),
             store=redacted(settings.store_url), queue_prefix=settings.queue_prefix,
             archive=settings.archive_url or None)
    await stop.wait()

    log.info("control_plane_stopping")
    await api_health.enter_graceful_shutdown()
    await gateway_health.enter_graceful_shutdown()
    for task in (reaper, releaser, watch_poll, key_check, watch_listen, retention):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await api_server.stop(grace=5)
    await gateway_server.stop(grace=5)
    await publisher.close()
    await db.close()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service="control-plane")
    serve_metrics(settings.metrics_listen)
    try:
        run_until_signalled(serve, settings)
    except TlsConfigError as exc:
        raise SystemExit(f"sluice control-plane: {exc}") from None


if __name__ == "__main__":
    main()
