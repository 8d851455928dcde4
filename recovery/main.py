"""The recovery process: on its schedule, replay the dead letters within their budget."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from recovery import metrics
from recovery.dead_letter_replayer import DeadLetterReplayer, SweepReport
from recovery.schedule import Schedule
from sluice.amqp import connect
from sluice.gateway_channel import gateway_channel
from sluice.grpc_channels import TlsConfigError
from sluice.observability import configure_logging, get_logger, serve_metrics
from sluice.service_loop import run_until_signalled
from sluice.settings import Settings, get_settings
from sluice.topology import Topology, declare_topology
from sluice.worker_credentials import TokenWatch, gateway_stub, require_worker_token

log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    schedule = Schedule(interval_s=settings.recovery_interval_s, cron=settings.recovery_cron)
    # First: a TLS file that is wrong stops the start before the broker is reached.
    gateway = gateway_channel(settings)
    connection = await connect(settings.amqp_url, name="sluice-recovery")
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    declared = await declare_topology(
        channel, Topology(settings.queue_prefix, delivery_limit=settings.queue_delivery_limit))
    token = TokenWatch()
    replayer = DeadLetterReplayer(channel, declared,
                                  gateway_stub(gateway, settings.worker_token),
                                  replay_budget=settings.recovery_replay_budget,
                                  base_backoff_s=settings.recovery_backoff_s)
    log.info("recovery_started", schedule=schedule.describe(),
             replay_budget=settings.recovery_replay_budget)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(schedule.seconds_until_next()):
                await stop.wait()
        if stop.is_set():
            break
        try:
            report = await replayer.sweep()
            log.info("recovery_sweep", depth_before=report.depth_before,
                     replayed=report.replayed, parked=report.parked, deferred=report.deferred,
                     dropped=report.dropped)
            _count_sweep(report)
        except grpc.aio.AioRpcError as exc:
            metrics.SWEEPS.labels("deferred").inc()
            if token.check(exc):
                break
            log.warning("recovery_sweep_deferred", reason="worker gateway unreachable",
                        code=exc.code().name, detail=exc.details())
        except Exception:
            metrics.SWEEPS.labels("failed").inc()
            log.exception("recovery_sweep_failed")
    await gateway.close()
    await connection.close()
    if token.error is not None:
        raise SystemExit(f"sluice recovery: {token.error}")


def _count_sweep(report: SweepReport) -> None:
    metrics.SWEEPS.labels("ok").inc()
    metrics.DEAD_LETTER_DEPTH.set(report.depth_before)
    metrics.LAST_SWEEP.set_to_current_time()
    for action, count in (("replayed", report.replayed), ("parked", report.parked),
                          ("deferred", report.deferred), ("dropped", report.dropped)):
        if count:
            metrics.DEAD_LETTERS.labels(action).inc(count)


def main() -> None:
    settings = get_settings()
    require_worker_token(settings, "recovery")
    configure_logging(settings.log_level, settings.log_format, service="recovery")
    serve_metrics(settings.metrics_listen)
    try:
        run_until_signalled(serve, settings)
    except TlsConfigError as exc:
        raise SystemExit(f"sluice recovery: {exc}") from None


if __name__ == "__main__":
    main()
