"""Hands deliveries to free slots, taking the shards in turn.

Each shard queue (tenants are hashed onto shards) has its own consumer, so the worker holds
a few messages of every busy shard. When a slot frees, the next shard in the rotation that
has something waiting goes first: a tenant whose backlog fills one shard waits its turn
like everyone else, instead of everyone waiting behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairScheduler(Generic[T]):
    def __init__(self, lanes: int) -> None:
        self._lanes: list[deque[T]] = [deque() for _ in range(lanes)]
        self._next_lane = 0
        self._available = asyncio.Condition()
        self._closed = False

    async def put(self, lane: int, item: T) -> bool:
        """False once closed: the item was not taken, and its owner must hand it back."""
        async with self._available:
            if self._closed:
                return False
            self._lanes[lane].append(item)
            self._available.notify()
            return True

    async def take(self) -> T:
        async with self._available:
            while True:
                item = self._take_round_robin()
                if item is not None:
                    return item
                await self._available.wait()

    def _take_round_robin(self) -> T | None:
        count = len(self._lanes)
        for offset in range(count):
            lane = (self._next_lane + offset) % count
            if self._lanes[lane]:
                self._next_lane = (lane + 1) % count
                return self._lanes[lane].popleft()
        return None

    def take_waiting(self) -> list[T]:
        """Everything still waiting, taken out (a drain hands it back to the broker)."""
        items = [item for lane in self._lanes for item in lane]
        for lane in self._lanes:
            lane.clear()
        return items

    def close(self) -> list[T]:
        """Takes nothing more and returns everything still waiting (at shutdown, to hand
        back to the broker)."""
        self._closed = True
        items = [item for lane in self._lanes for item in lane]
        for lane in self._lanes:
            lane.clear()
        return items

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes)
