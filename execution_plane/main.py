"""The worker process: consume jobs, run them in the sandbox, report to the gateway."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from execution_plane import metrics
from execution_plane.claim_admission import ClaimAdmission, RunSlot
from execution_plane.consumer import JobConsumer
from execution_plane.fair_scheduler import FairScheduler
from execution_plane.job_runner import Delivery, JobRunner
from execution_plane.proto_mapping import language_message
from execution_plane.sandbox import SandboxPool
from execution_plane.worker_controls import WorkerControls
from sluice.amqp import connect
from sluice.gateway_channel import gateway_channel
from sluice.grpc_channels import TlsConfigError
from sluice.observability import configure_logging, get_logger, serve_metrics
from sluice.service_loop import run_until_signalled
from sluice.settings import Settings, get_settings
from sluice.topology import Topology, declare_topology
from sluice.v1 import job_pb2 as pb
from sluice.v1 import worker_gateway_pb2_grpc as gw_grpc
from sluice.worker_credentials import TokenWatch, gateway_stub, require_worker_token

log = get_logger(__name__)


async def keep_registered(
    stub: gw_grpc.WorkerGatewayStub,
    languages: list[pb.Language],
    controls: WorkerControls,
    registered: asyncio.Event,
    every_s: float,
    token: TokenWatch,
) -> None:
    """Registers, then reports every every_s; each answer carries the operator's controls."""
    delay = 0.2
    while True:
        try:
            answer = await stub.RegisterWorker(controls.report(languages), timeout=5)
            changed = await controls.apply(answer)
            registered.set()
            delay = 0 if changed else every_s
        except grpc.aio.AioRpcError as exc:
            if token.check(exc):
                return
            log.warning("register_failed", code=exc.code().name, detail=exc.details())
            delay = min(max(delay * 2, 0.5), 5.0)
        await asyncio.sleep(delay)


async def first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def dispatch(
    scheduler: FairScheduler[Delivery],
    runner: JobRunner,
    admission: ClaimAdmission,
    in_flight: set[asyncio.Task[None]],
) -> None:
    # A delivery leaves the scheduler only when it may be claimed: what waits, waits there
    # (in fair order, and handed back at shutdown), never inside a handler.
    while True:
        run_slot = await admission.admit()
        delivery = await scheduler.take()
        task = asyncio.create_task(runner.handle(delivery, run_slot))
        in_flight.add(task)

        def done(finished: asyncio.Task[None], run_slot: RunSlot = run_slot) -> None:
            in_flight.discard(finished)
            run_slot.release()

        task.add_done_callback(done)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # First: a TLS file that is wrong stops the start before the sandbox is set up.
    channel = gateway_channel(settings)
    sandbox = SandboxPool(slots=settings.worker_slots)
    await sandbox.start()
    metrics.SLOTS.set(settings.worker_slots)
    languages = sandbox.languages()
    stub = gateway_stub(channel, settings.worker_token)
    token = TokenWatch()
    registered = asyncio.Event()
    admission = ClaimAdmission(settings.worker_slots)
    controls = WorkerControls(settings.worker_id, settings.worker_slots, admission)
    registration = asyncio.create_task(
        keep_registered(
            stub,
            [language_message(info) for info in languages],
            controls,
            registered,
            min(settings.worker_report_interval_s, settings.worker_register_interval_s),
            token,
        )
    )
    await first_of(registered, token.refused, stop)
    if not registered.is_set():
        registration.cancel()
        await channel.close()
        await sandbox.close()
        if token.error is not None:
            raise SystemExit(f"sluice worker: {token.error}")
        return

    topology = Topology(settings.queue_prefix, delivery_limit=settings.queue_delivery_limit)
    connection = await connect(settings.amqp_url, name=f"sluice-worker-{settings.worker_id}")
    amqp_channel = await connection.channel()
    declared = await declare_topology(amqp_channel, topology)
    scheduler: FairScheduler[Delivery] = FairScheduler(topology.shard_count)
    runner = JobRunner(settings.worker_id, stub, sandbox, token)
    # A slot may have one job running while the one before still reports its result (its
    # message unacked): a prefetch of twice the slots lets the next job be here already.
    consumer = JobConsumer(amqp_channel, declared, scheduler, prefetch=2 * settings.worker_slots)
    in_flight: set[asyncio.Task[None]] = set()
    dispatcher = asyncio.create_task(dispatch(scheduler, runner, admission, in_flight))
    # Drained (or at zero slots) by an operator already: it takes no job until undone.
    await controls.attach(consumer, runner)
    log.info(
        "worker_started",
        worker_id=settings.worker_id,
        slots=settings.worker_slots,
        languages=[info.id for info in languages],
        gateway=settings.gateway_address,
    )

    await first_of(stop, token.refused)
    log.info("worker_stopping", running=len(in_flight), token_refused=token.refused.is_set())
    dispatcher.cancel()
    await controls.detach()
    await consumer.stop()
    if in_flight:
        _, late = await asyncio.wait(in_flight, timeout=settings.worker_shutdown_grace_s)
        if late:
            runner.abandon_all()
            await asyncio.wait(late)
    registration.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dispatcher
    await connection.close()
    await channel.close()
    await sandbox.close()
    log.info("worker_stopped")
    if token.error is not None:
        raise SystemExit(f"sluice worker: {token.error}")


def main() -> None:
    settings = get_settings()
    require_worker_token(settings, "worker")
    configure_logging(settings.log_level, settings.log_format, service="worker")
    serve_metrics(settings.metrics_listen)
    try:
        run_until_signalled(serve, settings)
    except TlsConfigError as exc:
        raise SystemExit(f"sluice worker: {exc}") from None


if __name__ == "__main__":
    main()
