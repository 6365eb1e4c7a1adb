"""Request budgets: how often we may call a provider, counted in Redis.

Some panels allow 60-120 requests a minute per key and block keys that send
more. A budget counts calls per minute in Redis, so every instance of the
router draws on the same allowance. A call that finds the minute spent
waits for the next one if it may (`wait`), else it is not sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from proxy.store import Keys, Store

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
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.provider = provider
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self.on_wait = on_wait

    async def take(self, wait: float = 0.0) -> bool:
        """Spend one request; False if none is left within `wait` seconds."""
        deadline = self.clock() + wait
        while True:
            now = self.clock()
            window = int(now // WINDOW_SECONDS)
            key = self.keys.budget(self.provider, window)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS * 2)
                used, _ = await pipe.execute()
            if used <= self.per_minute:
                return True
            next_window = (window + 1) * WINDOW_SECONDS
            if next_window > deadline:
                return False
            if self.on_wait is not None:
                self.on_wait(self.provider)
            await self.sleep(next_window - now)
