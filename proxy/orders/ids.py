"""Order IDs, taken from Redis in blocks.

Each instance reserves a block of IDs with one INCRBY on the shared sequence
(`Keys.order_seq`) and hands them out one by one, so an add does not wait
for Redis to number it. IDs stay unique across instances and restarts (a
block is never handed out twice: the sequence only grows); the IDs of a
block an instance did not use before it stopped are never used, and orders
of two instances interleave out of time order. Both are fine: an ID names an
order, it does not count or date them.
"""

from __future__ import annotations

import asyncio

from proxy.store import Store

# IDs an instance takes at once: one INCRBY per this many adds.
BLOCK = 100


class OrderIds:
    def __init__(self, redis: Store, key: str, block: int = BLOCK) -> None:
        if block < 1:
            raise ValueError("an ID block holds at least one ID")
        self.redis = redis
        self.key = key
        self.block = block
        self._next = 0
        self._end = 0  # the last ID of the block in hand; none left when _next > _end
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        """A new order ID, never handed out before by any instance."""
        if self._next > self._end or self._end == 0:
            async with self._lock:
                if self._next > self._end or self._end == 0:
                    end = int(await self.redis.incrby(self.key, self.block))
                    self._next, self._end = end - self.block + 1, end
        taken = self._next
        self._next += 1
        return taken
