"""The control plane's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_SECONDS = Histogram(
    "sluice_rpc_seconds",
    "Time from an RPC's start to its end (a stream's whole life), by method (Service/Method)"
    " and final status code; API and worker gateway",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
)
JOBS_SUBMITTED = Counter("sluice_jobs_submitted_total", "Jobs accepted by SubmitJob")
JOBS_FINISHED = Counter("sluice_jobs_finished_total", "Jobs that reached a terminal state",
                        ["state"])
JOBS_REQUEUED = Counter("sluice_jobs_requeued_total",
                        "Attempts lost by a worker and queued again")
PUBLISH_FAILURES = Counter("sluice_publish_failures_total",
                           "Publishes the broker did not confirm")
WATCHERS = Gauge("sluice_watch_streams", "Open WatchJob streams")
RUNNING_STREAMS = Gauge("sluice_gateway_job_streams", "Open worker RunJob streams")
JOB_WAIT_SECONDS = Histogram(
    "sluice_job_wait_seconds",
    "From a job's submission to the start of an attempt (a retry counts from submission too)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
JOB_RUN_SECONDS = Histogram(
    "sluice_job_run_seconds", "From an attempt's start to its stored result, by final state",
    ["state"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
QUOTA_REFUSALS = Counter("sluice_quota_refusals_total",
                         "Submissions refused over a tenant quota", ["quota"])
# Retention and the archive (control_plane/retention.py).
JOBS_ARCHIVED = Counter("sluice_jobs_archived_total",
                        "Finished jobs written to the archive by the retention sweep")
JOBS_DELETED = Counter("sluice_jobs_deleted_total",
                       "Finished jobs the retention sweep deleted from the store (archived"
                       " first when an archive is configured)")
ARCHIVE_FAILURES = Counter("sluice_archive_failures_total",
                           "Archive requests that failed after botocore's retries: put (a job"
                           " or audit batch left in the store for the next sweep) or get",
                           ["operation"])
AUDIT_RECORDS_DELETED = Counter("sluice_audit_records_deleted_total",
                                "Audit records the retention sweep deleted from the store")
OLDEST_JOB_AGE_SECONDS = Gauge("sluice_store_oldest_job_age_seconds",
                               "Age of the oldest job in the store (any state), as of the"
                               " last retention sweep")
# Interactive jobs (AttachJob).
STDIN_BYTES = Counter("sluice_stdin_bytes_total",
                      "Bytes of interactive jobs' stdin stored through AttachJob")
STDIN_REFUSALS = Counter("sluice_stdin_refusals_total",
                         "Pieces of stdin AttachJob refused, by gRPC status code", ["code"])
