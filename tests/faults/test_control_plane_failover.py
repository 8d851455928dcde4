"""A control plane dies (SIGKILL) while its jobs stream: the other replica, on the same
store, takes over the workers' streams and the watchers, and nothing is lost or run twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.broker import RunVhost
from tests.support.failover_drill import FailoverReport, run_failover_drill

JOBS = 100


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_a_killed_control_plane_loses_no_job_and_no_watcher(
        store: str, vhost: RunVhost, tmp_path: Path) -> None:
    report = await run_failover_drill(tmp_path, vhost.amqp_url(),
                                      prefix=f"{tmp_path.name}-failover", jobs=JOBS,
                                      store=store)
    print(FailoverReport.HEADER)
    print(report.row())
    assert report.accepted == JOBS
    assert report.problems == []
    assert report.lost == report.duplicated == report.wrong_output == 0
    assert report.succeeded == JOBS
    # It died with watchers mid-output: they went on at the other replica (the watch
    # checks above say: with no gap or duplicate), and so did the workers' attempts that
    # streamed through its gateway.
    assert report.streaming_at_kill >= 1 and report.watchers_moved >= report.streaming_at_kill
    assert report.resumed_streams >= 1
