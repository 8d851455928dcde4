"""Structured logs (one JSON line per event) and the Prometheus endpoint, for every service."""

from __future__ import annotations

import ctypes
import logging
import sys

import structlog
from prometheus_client import start_http_server

_PR_SET_NAME = 15  # prctl(2)


def configure_logging(level: str = "info", fmt: str = "json", service: str = "sluice") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )

    def add_service(_logger: object, _name: str, event: dict[str, object]) -> dict[str, object]:
        # Not a contextvar: records are also written from the store's own thread.
        event.setdefault("service", service)
        return event

    shared: list[structlog.typing.Processor] = [
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Libraries (aio-pika, grpc) log through the standard library: same JSON lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # Logs go to stderr so that a CLI's stdout stays for its answer.
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


def serve_metrics(listen: str) -> None:
    """Starts the /metrics endpoint on a daemon thread; `listen` is host:port, empty = off."""
    if not listen:
        return
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")


def name_os_thread(name: str) -> None:
    """Names the calling thread for the OS as well (`top -H`, /proc/<pid>/task/*/comm,
    bench/platform_cpu.py), where a Python thread otherwise shows as "python". Linux
    keeps 15 bytes; elsewhere this does nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass
