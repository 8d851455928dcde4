"""The worker claims one job per slot, and one more per slot only while recent runs are short."""

from __future__ import annotations

import asyncio

from execution_plane.claim_admission import ClaimAdmission


async def admitted_within(admission: ClaimAdmission, seconds: float = 0.05) -> bool:
    try:
        await asyncio.wait_for(admission.admit(), seconds)
    except TimeoutError:
        return False
    return True


async def test_one_claim_per_slot_until_runs_are_known() -> None:
    admission = ClaimAdmission(2, recent_runs=4)
    assert await admitted_within(admission)
    assert await admitted_within(admission)
    assert not await admitted_within(admission)  # no history yet: no claim ahead
    admission.run_ended(0.02)
    assert await admitted_within(admission)


async def test_short_runs_allow_a_claim_ahead_per_slot() -> None:
    admission = ClaimAdmission(2, recent_runs=4)
    for _ in range(4):
        await admission.admit()
        admission.run_ended(0.02)
    assert admission.limit == 4
    for _ in range(4):
        assert await admitted_within(admission)
    assert not await admitted_within(admission)


async def test_long_runs_take_the_claim_ahead_away() -> None:
    admission = ClaimAdmission(1, recent_runs=4)
    for run_s in (0.02, 0.02, 0.02, 0.02):
        await admission.admit()
        admission.run_ended(run_s)
    assert admission.limit == 2
    for run_s in (5.0, 5.0, 5.0):
        await admission.admit()
        admission.run_ended(run_s)
    assert admission.limit == 1  # the median of the last four is long


async def test_refused_claims_free_the_place_without_counting_as_runs() -> None:
    admission = ClaimAdmission(1, recent_runs=4)
    await admission.admit()
    admission.run_ended(None)
    assert await admitted_within(admission)
    assert admission.limit == 1
