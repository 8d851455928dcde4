"""The console's Prometheus metrics: its requests, and the live streams it holds open."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("sluice_console_requests_total",
                   "Console HTTP requests by method and status", ["method", "status"])
REQUEST_SECONDS = Histogram(
    "sluice_console_request_seconds",
    "Console HTTP requests, arrival to answer (an event stream: to its end)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0))
SIGN_INS = Counter("sluice_console_sign_ins_total",
                   "Sign-in attempts by outcome (operator, tenant, refused)", ["outcome"])
OPEN_STREAMS = Gauge("sluice_console_open_streams",
                     "Job event streams (server-sent events) open now")
