"""Leases, not clocks: how an order being placed is told from one left behind.

The task placing an order holds a lease on it (a key with a token naming
this instance, `Keys.lease`), written by the reserve script and renewed
while the task works (`leased`). A lease expires on the Redis server's
clock: if the task dies, or stalls past its lease, recovery
(`OrderBook.recover`) may take the order over, and only then. No instance's
own clock decides whether an order is alive. An instance that shuts down
before its orders are placed gives their leases up (`release`), so recovery
takes them at once.

The renewal never holds up the task it serves: it runs beside it, stops when
told (an event, not a cancel: a cancel that lands inside a redis-py command
can be swallowed, and a task awaited after one may never end), bounds every
renewal by a deadline, and nobody waits for it to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

from proxy import scripts
from proxy.keys import Keys
from proxy.orders.records import Order
from proxy.store import Store

log = logging.getLogger(__name__)


class Leases:
    """The leases this instance holds on the orders it is placing."""

    def __init__(self, redis: Store, keys: Keys, seconds: float = 30.0) -> None:
        self.redis = redis
        self.keys = keys
        self.seconds = seconds
        # Names the instance that holds a lease, for whoever reads the key.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = scripts.register(redis, "proxy.orders", "renew_lease")
        self._release = scripts.register(redis, "proxy.orders", "release_lease")
        # Renewal tasks still running (each ends at its next wake once told to stop).
        self._keepers: set[asyncio.Task[None]] = set()

    @property
    def ms(self) -> int:
        return max(1, int(self.seconds * 1000))

    @property
    def every(self) -> float:
        """Seconds between renewals: three tries before a lease lapses."""
        return self.seconds / 3

    @contextlib.asynccontextmanager
    async def leased(self, order: Order) -> AsyncIterator[None]:
        """Renew the order's lease while the caller is placing it.

        Leaving the block tells the renewal to stop and returns at once: the
        caller never waits for its own housekeeping.
        """
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def start() -> None:
            # The first renewal is due: from here a task renews (most orders are
            # placed long before, and never pay for a task of their own).
            keeper = loop.create_task(self._keep(order, done), name=f"lease-{order.id}")
            self._keepers.add(keeper)
            keeper.add_done_callback(self._keepers.discard)

        due = loop.call_later(self.every, start)
        try:
            yield
        finally:
            due.cancel()
            done.set()

    async def _keep(self, order: Order, done: asyncio.Event) -> None:
        key = self.keys.lease(order.client, order.id)
        while not done.is_set():
            try:
                async with asyncio.timeout(self.every):
                    await self._renew(keys=[key], args=[self.token, self.ms])
            except Exception as exc:  # Redis away or slow: the next try may work; the lease may lapse
                log.warning("order %s: lease not renewed: %s", order.id, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await done.wait()

    async def release(self, order: Order) -> bool:
        """Give up our lease on `order` (if we still hold it): recovery may take it now."""
        return bool(await self._release(keys=[self.keys.lease(order.client, order.id)], args=[self.token]))

    async def lapsed(self, client: str, order_ids: list[int]) -> list[int]:
        """Those of the client's orders whose lease has expired (or was never taken)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids:
                pipe.exists(self.keys.lease(client, order_id))
            leased = await pipe.execute()
        return [order_id for order_id, held in zip(order_ids, leased, strict=True) if not held]
