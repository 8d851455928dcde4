"""The hub hands a watcher the events stored in this process only when they follow what it
has sent without a gap; anything else sends it to the store."""

from __future__ import annotations

import asyncio

from control_plane.watch_hub import MAX_HELD_EVENTS, WatchHub
from sluice.v1 import job_pb2 as pb


def events(*seqs: int) -> list[pb.JobEvent]:
    return [pb.JobEvent(job_id="j", seq=seq, output=pb.OutputChunk(data=b"x")) for seq in seqs]


async def test_events_following_the_watcher_are_handed_over_in_order() -> None:
    hub = WatchHub()
    with hub.subscribe("j", seen_seq=3) as subscription:
        hub.notify("j", events(5))  # stored after 4, notified first
        hub.notify("j", events(4))
        assert subscription.woken.is_set()
        assert [e.seq for e in subscription.take_following(3)] == [4, 5]
        assert subscription.take_following(5) == []


async def test_a_gap_sends_the_watcher_to_the_store() -> None:
    hub = WatchHub()
    with hub.subscribe("j", seen_seq=3) as subscription:
        hub.notify("j", events(5, 6))  # 4 was stored by another control plane
        assert subscription.take_following(3) == []
        # The store read brought it up to 6: what was held is behind it now, and dropped.
        assert subscription.take_following(6) == []
        hub.notify("j", events(7))
        assert [e.seq for e in subscription.take_following(6)] == [7]


async def test_a_notify_without_events_only_wakes() -> None:
    hub = WatchHub()
    with hub.subscribe("j") as subscription:
        hub.notify("j")
        assert subscription.woken.is_set()
        assert subscription.take_following(0) == []


async def test_a_watcher_that_falls_far_behind_reads_the_store_instead() -> None:
    hub = WatchHub()
    with hub.subscribe("j", seen_seq=0) as subscription:
        hub.notify("j", events(*range(1, MAX_HELD_EVENTS + 1)))
        hub.notify("j", events(MAX_HELD_EVENTS + 1))  # one too many: nothing is held
        assert subscription.take_following(0) == []


async def test_other_jobs_watchers_hear_nothing() -> None:
    hub = WatchHub()
    with hub.subscribe("j") as mine, hub.subscribe("k") as other:
        hub.notify("j", events(1))
        await asyncio.sleep(0)
        assert mine.woken.is_set() and not other.woken.is_set()
        assert other.take_following(0) == []


def test_a_stored_event_wakes_only_the_watchers_behind_it() -> None:
    hub = WatchHub()
    with hub.subscribe("job", seen_seq=3) as caught_up, hub.subscribe("other") as other:
        hub.event_stored("job", 3)  # read already
        assert not caught_up.woken.is_set()
        caught_up.offer([pb.JobEvent(job_id="job", seq=4)])
        caught_up.woken.clear()
        hub.event_stored("job", 4)  # held: written here, handed over already
        assert not caught_up.woken.is_set()
        hub.event_stored("job", 5)
        assert caught_up.woken.is_set() and not other.woken.is_set()
        hub.event_stored(None, 0)  # the listener reconnected: anything may be missed
        assert other.woken.is_set()
