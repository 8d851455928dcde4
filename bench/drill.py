"""The fault drills of tests/faults at a larger size, printing what survived.

    .venv/bin/python bench/drill.py [--jobs 1000] [--rate 50] [--workers 2]
                                    [--only workers-killed,broker-restart,network-cut,poison-replay]

Each drill starts a platform of its own (control plane, workers, recovery for the poison
drill) whose services reach a private RabbitMQ node through a TCP proxy, submits --jobs
jobs at --rate per second (a bash job printing two lines around a short sleep) and, one
second in, inflicts its fault:
  workers-killed  SIGKILL every worker mid-job, one after another, each replaced;
  broker-restart  `rabbitmqctl stop_app`, 2 s, `start_app`;
  network-cut     every service's broker connection dropped and refused for 3 s;
  poison-replay   one attempt per job, workers killed: the jobs they ran dead-letter and
                  the recovery service replays them (half the job count: they run longer).
Columns: accepted (SubmitJob answered with a job), refused (UNAVAILABLE: never accepted),
ok (succeeded with its own output), wrong output, dup (more than one terminal state), lost
(accepted, not terminal at the end), recovered (finished after a second attempt or a
replay), api s (from the end of the fault until SubmitJob accepted a job again), runs s
(until a worker started a job again), drain s (until every accepted job was terminal).
Needs root and RabbitMQ's packages (deploy/local/bootstrap.sh). A benchmark, not a test:
it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.drill_stack import DRILLS, DrillStack, perform  # noqa: E402
from tests.support.drills import DrillReport  # noqa: E402
from tests.support.private_broker import PrivateBroker  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    names = args.only.split(",") if args.only else list(DRILLS)
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        print(f"--only: unknown drill {unknown[0]!r}; drills are {', '.join(DRILLS)}")
        return 2
    broker = PrivateBroker()
    print(f"starting a private RabbitMQ node on port {broker.port} ...", flush=True)
    await asyncio.to_thread(broker.start)
    reports: list[DrillReport] = []
    try:
        for name in names:
            with tempfile.TemporaryDirectory(prefix=f"sluice-drill-{name}-") as workdir:
                stacks: list[DrillStack] = []
                started = time.monotonic()
                try:
                    report, _ = await perform(DRILLS[name], broker, Path(workdir),
                                              jobs=args.jobs, rate=args.rate,
                                              workers=args.workers, stacks=stacks)
                finally:
                    for stack in stacks:
                        await stack.close()
                reports.append(report)
                print(f"{name}: done in {time.monotonic() - started:.0f} s", flush=True)
                for problem in report.problems[:5]:
                    print(f"  {problem}")
    finally:
        await asyncio.to_thread(broker.stop)
    print()
    print(DrillReport.HEADER)
    for report in reports:
        print(report.row())
    total_lost = sum(r.lost + r.duplicated + r.wrong_output for r in reports)
    accepted = sum(r.accepted for r in reports)
    print(f"\n{accepted} jobs accepted across {len(reports)} drills; "
          f"lost, duplicated or wrong: {total_lost} -> {'PASS' if total_lost == 0 else 'FAIL'}")
    return 0 if total_lost == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="")
    sys.exit(asyncio.run(main(parser.parse_args())))
