"""Every SLUICE_* setting, in one place; each service reads the same Settings."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Every queue and exchange name starts with this, so two deployments (or test runs) can
    # share a broker without seeing each other's messages.
    queue_prefix: str = "sluice"
    api_listen: str = "127.0.0.1:50051"
    gateway_listen: str = "127.0.0.1:50052"
    # Where workers reach the gateway; empty means gateway_listen.
    gateway_target: str = ""
    # sqlite:///PATH (one machine) or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (several
    # control planes on one database).
    store_url: str = Field(
        default_factory=lambda: f"sqlite:///{Path.cwd() / '.sluice' / 'sluice.db'}"
    )
    # PostgreSQL: connections each control-plane process keeps to the store.
    store_pool_size: int = 8
    # host:port for the Prometheus endpoint of this process; empty turns it off.
    metrics_listen: str = ""
    log_level: str = "info"
    # "json" (one line per event) or "console" for people at a terminal.
    log_format: str = "json"
    # Every service's event loop: "uvloop" (libuv; less CPU per RPC than asyncio's own
    # loop) or "asyncio" (the standard library's, to compare or to rule uvloop out).
    event_loop: str = "uvloop"

    # Requests
    max_source_bytes: int = 1 * MIB  # all files together
    max_files: int = 64
    max_stdin_bytes: int = 1 * MIB
    max_args: int = 64
    max_labels: int = 32

    # Per-job limits: the default when the request says 0, and the most a request may ask.
    default_wall_time_ms: int = 10_000
    max_wall_time_ms: int = 60_000
    default_cpu_time_ms: int = 5_000
    max_cpu_time_ms: int = 30_000
    default_memory_bytes: int = 256 * MIB
    max_memory_bytes: int = 1024 * MIB
    default_max_processes: int = 64
    max_max_processes: int = 256
    default_max_output_bytes: int = 1 * MIB
    max_max_output_bytes: int = 16 * MIB

    # Tenant quotas: what a tenant gets unless `sluice quota set` (or SetQuota) says
    # otherwise. The per-job ceilings default to the caps above, which no tenant may exceed.
    quota_submit_rate_per_s: float = 1000.0  # SubmitJob token bucket refill
    quota_submit_burst: int = 2000  # ... and its size
    quota_max_queued_jobs: int = 10_000
    quota_max_running_jobs: int = 1_000
    quota_cpu_seconds_per_day: int = 1_000_000  # rolling 24 hours

    # Delivery
    max_attempts: int = 3  # runs of one job the platform may start after failures of its own
    heartbeat_interval_ms: int = 1_000
    lease_timeout_ms: int = 10_000  # no heartbeat for this long: the attempt is lost
    queue_delivery_limit: int = 10  # broker redeliveries before a message is dead-lettered

    # Worker
    worker_slots: int = 2
    # On SIGTERM a worker takes no new job and lets its running ones finish for this long;
    # past it, it stops them and hands them back to the queue to run elsewhere.
    worker_shutdown_grace_s: float = 30.0
    worker_id: str = Field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")

    # Recovery
    recovery_interval_s: float = 30.0
    # A cron expression ("*/5 * * * *") instead of the interval, when set.
    recovery_cron: str = ""
    recovery_replay_budget: int = 3
    # A dead letter waits this long times 2^replays before it is replayed again.
    recovery_backoff_s: float = 10.0

    @property
    def gateway_address(self) -> str:
        return self.gateway_target or self.gateway_listen

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file, for what only SQLite has; the store itself is opened with
        control_plane.store.backend.open_store, whichever the database."""
        prefix = "sqlite:///"
        if not self.store_url.startswith(prefix):
            raise ValueError(f"SLUICE_STORE_URL={self.store_url!r} is not a SQLite store")
        return Path(self.store_url[len(prefix):])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
