"""The recovery service's Prometheus metrics: its sweeps and what they did with each letter."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SWEEPS = Counter("sluice_recovery_sweeps_total",
                 "Sweeps of the dead-letter queue, by outcome (ok, deferred, failed)",
                 ["outcome"])
DEAD_LETTERS = Counter(
    "sluice_recovery_dead_letters_total",
    "Dead letters handled by sweeps, by action (replayed, parked, deferred, dropped)",
    ["action"])
DEAD_LETTER_DEPTH = Gauge("sluice_recovery_dead_letter_depth",
                          "Messages in the dead-letter queue when the last sweep began")
LAST_SWEEP = Gauge("sluice_recovery_last_sweep_timestamp_seconds",
                   "When the last sweep that ran to its end finished (Unix time)")
