"""Leases, not clocks: how an order being placed is told from one left behind.

The task placing an order holds a lease on it (a key with a token naming
this instance, `Keys.lease`), written by the reserve script and renewed
while the task works (`leased`). A lease expires on the Redis server's
clock: if the task dies, or stalls past its lease, recovery
(`OrderBook.recover`) may take the order over, and only then. No instance's
own clock decides whether an order is alive.
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
from proxy.orders.records import Order
from proxy.store import Keys, Store

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

    @property
    def ms(self) -> int:
        return max(1, int(self.seconds * 1000))

    @contextlib.asynccontextmanager
    async def leased(self, order: Order) -> AsyncIterator[None]:
        """Renew the order's lease while the caller is placing it."""
        task = asyncio.create_task(self._keep(order), name=f"lease-{order.id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep(self, order: Order) -> None:
        key = self.keys.lease(order.client, order.id)
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self._renew(keys=[key], args=[self.token, self.ms])
            except Exception as exc:  # Redis away: the next try may work; the lease may lapse
                log.warning("order %s: lease not renewed: %s", order.id, type(exc).__name__)

    async def lapsed(self, client: str, order_ids: list[int]) -> list[int]:
        """Those of the client's orders whose lease has expired (or was never taken)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids:
                pipe.exists(self.keys.lease(client, order_id))
            leased = await pipe.execute()
        return [order_id for order_id, held in zip(order_ids, leased, strict=True) if not held]
