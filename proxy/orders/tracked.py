"""The order side of the hot reads: what a `status` shows, from the tracked cache.

A status read shows a few fields of each order (`OrderSummary`), read by one
script a request. `TrackedBook` is the order book with those summaries held
in this process's tracked cache (`proxy.tracking`) while Redis tracks the
order records: every script that changes a record (a transition, a status
read from upstream, archiving) invalidates it, on every instance, before its
writer has its reply, so a summary served from memory is the one Redis holds.
Whether a summary is stale (due for a read upstream) is still decided on each
request, from the summary's own time of reading.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from proxy.keys import Keys
from proxy.orders.book import OrderBook
from proxy.orders.due import DueIndex
from proxy.orders.leases import Leases
from proxy.orders.records import OrderSummary
from proxy.store import Store
from proxy.tracking import TrackedCache


class TrackedBook(OrderBook):
    """An `OrderBook` whose `summaries` come from memory while Redis tracks them."""

    def __init__(
        self,
        redis: Store,
        keys: Keys,
        leases: Leases,
        due: DueIndex,
        clock: Callable[[], float] = time.time,
        *,
        cache: TrackedCache,
    ) -> None:
        super().__init__(redis, keys, leases, due, clock)
        self.cache = cache

    async def summaries(self, client: str, order_ids: Iterable[int]) -> dict[int, OrderSummary]:
        ids = list(order_ids)
        if not ids:
            return {}
        if len(ids) == 1:  # the common read: one order, one key
            [order_id] = ids
            name = self.keys.order(client, order_id)
            read = super().summaries

            async def load_one() -> OrderSummary | None:
                return (await read(client, ids)).get(order_id)

            summary = await self.cache.get(name, load_one)
            return {} if summary is None else {order_id: summary}
        names = [self.keys.order(client, order_id) for order_id in ids]
        by_name = dict(zip(names, ids, strict=True))
        read = super().summaries

        async def load(missing: list[str]) -> list[OrderSummary | None]:
            found = await read(client, [by_name[name] for name in missing])
            return [found.get(by_name[name]) for name in missing]

        values = await self.cache.get_many(names, load)
        return {order_id: value for order_id, value in zip(ids, values, strict=True) if value is not None}
