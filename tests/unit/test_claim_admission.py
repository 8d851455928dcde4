"""The worker claims one job per slot, and one more per slot only while recent runs are short."""

from __future__ import annotations

import asyncio

from execution_plane.claim_admission import ClaimAdmission, RunSlot


async def admitted_within(admission: ClaimAdmission, seconds: float = 0.05) -> RunSlot | None:
    try:
        return await asyncio.wait_for(admission.admit(), seconds)
    except TimeoutError:
        return None


async def run_for(admission: ClaimAdmission, *runs_s: float) -> None:
    for run_s in runs_s:
        (await admission.admit()).release(run_s)


async def test_one_claim_per_slot_until_runs_are_known() -> None:
    admission = ClaimAdmission(2, recent_runs=4)
    first = await admitted_within(admission)
    assert first is not None and await admitted_within(admission) is not None
    assert await admitted_within(admission) is None  # no history yet: no claim ahead
    first.release(0.02)
    assert await admitted_within(admission) is not None


async def test_short_runs_allow_a_claim_ahead_per_slot() -> None:
    admission = ClaimAdmission(2, recent_runs=4)
    await run_for(admission, 0.02, 0.02, 0.02, 0.02)
    assert admission.limit == 4
    for _ in range(4):
        assert await admitted_within(admission) is not None
    assert await admitted_within(admission) is None


async def test_long_runs_take_the_claim_ahead_away() -> None:
    admission = ClaimAdmission(1, recent_runs=4)
    await run_for(admission, 0.02, 0.02, 0.02, 0.02)
    assert admission.limit == 2
    await run_for(admission, 5.0, 5.0, 5.0)
    assert admission.limit == 1  # the median of the last four is long


async def test_a_place_is_given_back_once_and_a_refused_claim_is_no_run() -> None:
    admission = ClaimAdmission(1, recent_runs=4)
    place = await admission.admit()
    place.release()  # a refused claim: nothing ran
    place.release(0.02)  # the handler's own safety net, after the fact: no second place
    first = await admitted_within(admission)
    assert first is not None
    assert await admitted_within(admission) is None
    assert admission.limit == 1  # nothing ran, so nothing is known about run times
