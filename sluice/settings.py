"""Every SLUICE_* setting, in one place; each service reads the same Settings."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore")

    # amqps://USER:PASS@HOST[:5671]/VHOST speaks TLS; its query may name the CA that signs
    # the broker's certificate (?cafile=PATH) and a client certificate (&certfile=&keyfile=).
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Every queue and exchange name starts with this, so two deployments (or test runs) can
    # share a broker without seeing each other's messages.
    queue_prefix: str = "sluice"
    # The broker's management HTTP API (http[s]://USER:PASS@HOST:PORT), where the queue
    # depths operators read come from (AMQP knows no unacked counts); empty: the AMQP URL's
    # host and credentials on port 15672.
    rabbitmq_management_url: str = ""
    api_listen: str = "127.0.0.1:50051"
    # Where the operator commands (and `sluice run`) reach the API, as a gRPC target; empty
    # means api_listen.
    api_target: str = ""
    # The operator commands' admin key; empty means the one `sluice up` keeps in
    # .sluice/admin.key (relative to the current directory).
    admin_key: str = ""
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
    # TLS (PEM files; see sluice/grpc_channels.py). With a certificate and its key, both
    # listeners (API and worker gateway) serve TLS only.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The CA that Sluice's own clients (CLI, workers, recovery) trust; set, they speak TLS.
    tls_ca_file: str = ""
    # The name they expect in the server's certificate; empty: the host of the target. For
    # targets that are addresses (`ipv4:10.0.0.5:50052,10.0.0.6:50052`) under one name.
    tls_server_name: str = ""
    # Set, the gateway also demands client certificates signed by this CA (mTLS) ...
    gateway_client_ca_file: str = ""
    # ... which workers and recovery present from these.
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    # Every service's event loop: "uvloop" (libuv; less CPU per RPC than asyncio's own
    # loop) or "asyncio" (the standard library's, to compare or to rule uvloop out).
    event_loop: str = "uvloop"

    # Requests
    max_source_bytes: int = 1 * MIB  # all files together
    max_files: int = 64
    # A job's stdin: the request's, an interactive job's sent through AttachJob in all, or
    # its test cases' stdin and expected_stdout together.
    max_stdin_bytes: int = 1 * MIB
    # Test cases of one job (compiled once, run once each).
    max_test_cases: int = 100
    max_args: int = 64
    max_labels: int = 32
    # WatchJob streams one tenant may hold open at once on one control-plane process.
    max_watches_per_tenant: int = 64

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
    # The worker token the worker and the recovery service send on every gateway call
    # (`sluice worker-token create NAME` mints one). Required by both.
    worker_token: str = ""
    # How often a worker re-registers its languages; the control plane lists a language
    # only while some worker does (it drops those unheard of for three intervals).
    worker_register_interval_s: float = 30.0
    # How often a worker reports its slots and running jobs (a registration, so never less
    # often than the above) and picks up an operator's controls (drain, slots): the most a
    # control takes to act.
    worker_report_interval_s: float = 2.0
    # The worker host's own directory: slots' work dirs and uid locks live there, and only
    # there is a dead worker's leftover reclaimed. Root's alone (owned by root, writable by
    # nobody else, nor any directory above it); created if missing; never /tmp.
    sandbox_run_dir: str = "/run/sluice"
    # Host uids the slots run as (no passwd entry needed; keep the range clear of real
    # users and of /etc/subuid ranges). Each slot holds one, locked in the run dir, for
    # its worker's lifetime: two workers on one host never share a uid.
    sandbox_uid_base: int = 1_600_000_000
    sandbox_uid_count: int = 65_536
    # A slot's sandbox is made ahead of time and serves this many steps (compile, run,
    # each test case) before it is replaced by a fresh one, however clean each reset was.
    sandbox_max_runs: int = Field(default=500, ge=1)

    # Recovery
    recovery_interval_s: float = 30.0
    # A cron expression ("*/5 * * * *") instead of the interval, when set.
    recovery_cron: str = ""
    recovery_replay_budget: int = 3
    # A dead letter waits this long times 2^replays before it is replayed again.
    recovery_backoff_s: float = 10.0

    # Retention and the archive (docs/operations.md). A finished job older than
    # retention_s leaves the store: for one object in the archive when archive_url
    # (s3://BUCKET/PREFIX) is set, deleted otherwise; audit records likewise after
    # audit_retention_s. 0 keeps them for good. Archive credentials: boto3's usual chain.
    archive_url: str = ""
    s3_endpoint_url: str = ""  # any S3-compatible endpoint; empty: AWS's own
    retention_s: float = 604_800.0  # a week
    retention_sweep_s: float = 60.0
    audit_retention_s: float = 2_592_000.0  # 30 days

    # Console
    # `sluice console` (and `sluice up`, which runs it) listens here: host:port.
    console_listen: str = "127.0.0.1:8080"
    # How long a console session lives after its last request.
    console_session_idle_s: float = 3600.0

    @property
    def rabbitmq_management_address(self) -> str:
        if self.rabbitmq_management_url:
            return self.rabbitmq_management_url.rstrip("/")
        amqp = urlsplit(self.amqp_url)
        scheme = "https" if amqp.scheme == "amqps" else "http"
        userinfo = f"{amqp.username or 'guest'}:{amqp.password or 'guest'}@"
        return f"{scheme}://{userinfo}{amqp.hostname or '127.0.0.1'}:15672"

    @property
    def amqp_vhost(self) -> str:
        path = unquote(urlsplit(self.amqp_url).path)
        return path[1:] if len(path) > 1 else "/"

    @property
    def api_address(self) -> str:
        return self.api_target or self.api_listen

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
