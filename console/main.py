"""`sluice console`: the web console on SLUICE_CONSOLE_LISTEN, over the API at
SLUICE_API_TARGET."""

from __future__ import annotations

import asyncio

from aiohttp import web

from console.app import make_app
from sluice.grpc_channels import TlsConfigError
from sluice.observability import configure_logging, get_logger, serve_metrics
from sluice.service_loop import run_until_signalled
from sluice.settings import Settings, get_settings

log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    host, _, port = settings.console_listen.rpartition(":")
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "127.0.0.1", int(port))
    await site.start()
    log.info("console_started", listen=settings.console_listen, api=settings.api_address)
    await stop.wait()
    log.info("console_stopping")
    await runner.cleanup()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, service="console")
    serve_metrics(settings.metrics_listen)
    try:
        run_until_signalled(serve, settings)
    except TlsConfigError as exc:
        raise SystemExit(f"sluice console: {exc}") from None


if __name__ == "__main__":
    main()
