"""Order IDs, taken from Redis in blocks.

Each instance reserves a block of IDs with one INCRBY on the shared sequence
(`Keys.order_seq`) and hands them out one by one, so an add does not wait
for Redis to number it. IDs stay unique across instances and restarts (a
block is never handed out twice: the sequence only grows); the IDs of a
block an instance did not use before it stopped are never used.

IDs follow time to within a block's age
---------------------------------------
Reports and searches read orders newest first by ID and stop at one created
well before the period they cover (`proxy.ops.reports.CLOCK_SLACK_SECONDS`).
That holds only if a higher ID is never much older than a lower one: so a
block is used for at most `MAX_AGE` seconds, then dropped for a new one.
Blocks are taken in the sequence's order, so an order numbered above
another was numbered after the other's block was taken: it is at most
`MAX_AGE` older than the other (plus the instances' clock difference).

A block dropped unused halves the next one (down to one ID), one used up
within its age doubles it (up to `BLOCK`): a quiet instance takes an ID a
round trip as before blocks, a busy one 100 at a time, and the sequence
does not outrun the orders by more than about half a block a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from proxy.store import Store

# IDs an instance takes at once at most: one INCRBY per this many adds.
BLOCK = 100
# Seconds a block is used for at most (well within the readers' CLOCK_SLACK_SECONDS).
MAX_AGE = 60.0


class OrderIds:
    def __init__(
        self,
        redis: Store,
        key: str,
        block: int = BLOCK,
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if block < 1:
            raise ValueError("an ID block holds at least one ID")
        self.redis = redis
        self.key = key
        self.block = block
        self.max_age = max_age
        self.clock = clock
        self.size = block  # of the next block
        self._next = 0
        self._end = 0  # the last ID of the block in hand; none left when _next > _end
        self._taken = 0.0  # when it was taken (`clock`)
        self._lock = asyncio.Lock()

    def _usable(self, now: float) -> bool:
        return self._end != 0 and self._next <= self._end and 0 <= now - self._taken <= self.max_age

    async def next(self) -> int:
        """A new order ID, never handed out before by any instance."""
        if not self._usable(self.clock()):
            async with self._lock:
                now = self.clock()
                if not self._usable(now):
                    if self._end != 0:  # the last block: dropped unused, or used up in time
                        fresh = 0 <= now - self._taken <= self.max_age
                        self.size = min(self.block, self.size * 2) if fresh else max(1, self.size // 2)
                    size = self.size
                    end = int(await self.redis.incrby(self.key, size))
                    self._next, self._end, self._taken = end - size + 1, end, self.clock()
        taken = self._next
        self._next += 1
        return taken
