"""The control-plane failover drill of tests/faults at a larger size, printing what
survived.

    .venv/bin/python bench/failover.py [--jobs 200]

Two control planes on one store (the Platform's: SQLite unless it says otherwise), two
workers whose SLUICE_GATEWAY_TARGET lists both gateways, --jobs bash jobs printing six
lines 0.3 s apart, each watched through one API or the other; the first control plane is
SIGKILLed while its watchers are mid-output. Columns: accepted, ok (succeeded with its own
output), wrong output, dup (a terminal state or an attempt twice), lost (not terminal in
time), rerun (needed another attempt), resumed (worker streams that went on over the other
gateway), moved (watchers that went on at the other API), mid-out (of those, mid-output
at the kill), drain s (from the kill until every watch ended). Needs RabbitMQ on
127.0.0.1 (deploy/local/bootstrap.sh). A benchmark, not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.broker import RunVhost  # noqa: E402
from tests.support.failover_drill import FailoverReport, run_failover_drill  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    with RunVhost() as vhost, tempfile.TemporaryDirectory(prefix="sluice-failover-") as work:
        report = await run_failover_drill(Path(work), vhost.amqp_url(), prefix="failover",
                                          jobs=args.jobs, store=args.store)
    print(FailoverReport.HEADER)
    print(report.row())
    for problem in report.problems[:20]:
        print(f"  {problem}")
    return 0 if not report.problems and report.succeeded == report.accepted else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--store", default="sqlite",
                        help="sqlite, postgresql (a fresh database) or a postgresql:// URL")
    sys.exit(asyncio.run(main(parser.parse_args())))
