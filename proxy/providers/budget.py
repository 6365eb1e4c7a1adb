"""Request budgets: how often we may call a provider, counted in Redis.

Some panels allow 60-120 requests a minute per key and block keys that send
more. A budget counts calls per minute in Redis, so every instance of the
router draws on the same allowance. Orders come first: reads (status,
refill, cancel, lists, balance) may use only `read_share_percent` of a
minute, orders all of it, so no client's reads can push another client's
order to a worse route. A call that finds its share spent waits for the next
minute if it may (`wait`), else it is not sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from proxy import scripts
from proxy.keys import Keys
from proxy.store import Store

WINDOW_SECONDS = 60


class RequestBudget:
    def __init__(
        self,
        redis: Store,
        keys: Keys,
        provider: str,
        per_minute: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[str], None] | None = None,
        read_share_percent: int = 100,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.provider = provider
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self.on_wait = on_wait
        self.reads = per_minute * read_share_percent // 100
        self._script = scripts.register(redis, "proxy.providers", "budget")

    async def take(self, wait: float = 0.0, *, order: bool = False) -> bool:
        """Spend one request (an order's, or a read's within its share); False
        if none is left within `wait` seconds."""
        deadline = self.clock() + wait
        limit = self.per_minute if order else self.reads
        while True:
            now = self.clock()
            window = int(now // WINDOW_SECONDS)
            key = self.keys.budget(self.provider, window)
            if await self._script(keys=[key], args=[limit, WINDOW_SECONDS * 2]):
                return True
            next_window = (window + 1) * WINDOW_SECONDS
            if next_window > deadline:
                return False
            if self.on_wait is not None:
                self.on_wait(self.provider)
            await self.sleep(next_window - now)
