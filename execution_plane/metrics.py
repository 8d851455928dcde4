"""The worker's Prometheus metrics: what its slots run, how the runs end, what it hands back."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Trivial jobs take tens of milliseconds; the default wall-time limit is seconds, the
# largest minutes.
_RUN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

SLOTS = Gauge("sluice_worker_slots", "Sandbox slots of this worker")
RUNNING = Gauge("sluice_worker_running_jobs", "Jobs running in one of this worker's slots now")
RUNS = Counter("sluice_worker_runs_total", "Runs that ended here, by language and verdict",
               ["language", "verdict"])
RUN_SECONDS = Histogram("sluice_worker_run_seconds",
                        "Wall time of a run, as the sandbox measured it", ["language"],
                        buckets=_RUN_BUCKETS)
RUN_CPU_SECONDS = Counter("sluice_worker_run_cpu_seconds_total",
                          "CPU time of runs, read from their cgroup", ["language"])
CLAIM_WAIT_SECONDS = Histogram(
    "sluice_worker_claim_wait_seconds",
    "From a delivery's arrival at this worker to the gateway's answer to its claim",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0),
)
CLAIMS_REFUSED = Counter("sluice_worker_claims_refused_total",
                         "Deliveries the gateway did not let this worker run, by reason",
                         ["reason"])
DELIVERIES_RETURNED = Counter(
    "sluice_worker_deliveries_returned_total",
    "Deliveries handed back to the broker unrun or unreported (gateway lost, shutdown)")
GATEWAY_RESUMES = Counter(
    "sluice_worker_gateway_resumes_total",
    "Running attempts whose gateway stream broke, by how it ended: resumed (went on over a"
    " new stream), accepted (its result was stored already), lost (no gateway took it back:"
    " the run stopped and runs again elsewhere)",
    ["outcome"])
TEST_CASES = Counter("sluice_worker_test_cases_total",
                     "Test cases run here (each a sandboxed run after the job's one compile),"
                     " by language and verdict", ["language", "verdict"])
