"""Fault drills against a real RabbitMQ node of the test's own: kill workers, restart the
broker, cut the network, poison jobs. Every accepted job must finish once, correctly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.drill_stack import DRILLS, DrillStack, perform
from tests.support.drills import DrillReport
from tests.support.private_broker import PrivateBroker

JOBS = 200


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateBroker]:
    node = PrivateBroker()
    node.start()
    yield node
    node.stop()


@pytest.fixture
async def stacks() -> AsyncIterator[list[DrillStack]]:
    made: list[DrillStack] = []
    yield made
    for stack in made:
        await stack.close()


def assert_nothing_lost(report: DrillReport) -> None:
    print(DrillReport.HEADER)
    print(report.row())
    assert report.accepted > 0
    assert report.lost == 0, report.problems[:10]
    assert report.duplicated == 0, report.problems[:10]
    assert report.wrong_output == 0, report.problems[:10]
    assert report.succeeded == report.accepted
    # After the fault SubmitJob took jobs and workers started them again: consumers and
    # publishers came back by themselves, no service was restarted.
    assert report.seconds_to_api >= 0 and report.seconds_to_run >= 0, report.problems[:10]


async def test_drill_workers_killed(broker: PrivateBroker, tmp_path: Path,
                                    stacks: list[DrillStack]) -> None:
    report, _ = await perform(DRILLS["workers-killed"], broker, tmp_path, jobs=JOBS,
                              stacks=stacks)
    assert_nothing_lost(report)
    assert report.refused == 0  # the API never depended on the workers


async def test_drill_broker_restart(broker: PrivateBroker, tmp_path: Path,
                                    stacks: list[DrillStack]) -> None:
    report, _ = await perform(DRILLS["broker-restart"], broker, tmp_path, jobs=JOBS,
                              stacks=stacks)
    assert_nothing_lost(report)


async def test_drill_network_cut(broker: PrivateBroker, tmp_path: Path,
                                 stacks: list[DrillStack]) -> None:
    report, _ = await perform(DRILLS["network-cut"], broker, tmp_path, jobs=JOBS,
                              stacks=stacks)
    assert_nothing_lost(report)


async def test_drill_poisoned_jobs_dead_letter_and_are_replayed(
        broker: PrivateBroker, tmp_path: Path, stacks: list[DrillStack]) -> None:
    report, stack = await perform(DRILLS["poison-replay"], broker, tmp_path, jobs=JOBS,
                                  stacks=stacks)
    assert_nothing_lost(report)
    assert report.recovered > 0  # some jobs really were dead-lettered and came back
    assert "dead_letter_replayed" in await asyncio.to_thread(stack.platform.log, "recovery")
