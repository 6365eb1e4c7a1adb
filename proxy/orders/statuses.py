"""Keeping order statuses fresh: batched, shared, and refunding exactly once.

Records older than the status TTL are refreshed from upstream with one bulk
call per provider (100 IDs a call, providers in parallel). A request that
needs an order whose refresh is already under way waits for that refresh
instead of asking again, so concurrent readers share one upstream call.
When a status turns Partial or Canceled, the refund is applied by the order
book in the same step as the status, against a reference, so it happens
once however often the status is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from proxy.orders.book import PLACED, Order, OrderBook, StateChanged
from proxy.orders.routing import READS, Health
from proxy.providers.upstream import (
    ItemError,
    ProviderClient,
    UpstreamError,
    UpstreamStatus,
)
from proxy.vocabulary import CANCELED, COMPLETED, PARTIAL, SUBSCRIPTIONS

log = logging.getLogger("proxy.statuses")

_Result = UpstreamStatus | ItemError | None


class StatusRefresher:
    def __init__(
        self,
        book: OrderBook,
        providers: Mapping[str, ProviderClient],
        health: Health,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.providers = providers
        self.health = health
        self.ttl = ttl
        self.clock = clock
        self._inflight: dict[tuple[str, int], asyncio.Future[_Result]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def stale(self, order: Order) -> bool:
        return order.state == PLACED and not order.final and self.clock() - order.status_at >= self.ttl

    async def refresh(self, orders: Iterable[Order]) -> dict[int, Order]:
        """The given orders, the stale ones refreshed from upstream first."""
        orders = list(orders)
        by_provider: dict[str, list[Order]] = defaultdict(list)
        for order in orders:
            if self.stale(order) and order.provider in self.providers:
                by_provider[order.provider].append(order)
        waits: list[asyncio.Future[_Result]] = []
        for provider, group in by_provider.items():
            if await self.health.cooling(provider, READS):
                continue
            mine = [o for o in group if (provider, o.upstream_order) not in self._inflight]
            if mine:
                keys = [(provider, order.upstream_order) for order in mine]
                for key in keys:
                    self._inflight[key] = asyncio.get_running_loop().create_future()
                task = asyncio.create_task(self._fetch(provider, mine))
                self._tasks.add(task)
                task.add_done_callback(lambda done, keys=keys: self._release(done, keys))
            waits += [self._inflight[(provider, o.upstream_order)] for o in group]
        if not waits:
            return {o.id: o for o in orders}
        # Shielded: a caller that goes away does not cancel a shared refresh.
        await asyncio.gather(*(asyncio.shield(w) for w in waits))
        by_client: dict[str, list[int]] = defaultdict(list)
        for order in orders:
            by_client[order.client].append(order.id)
        fresh: dict[int, Order] = {}
        for client, ids in by_client.items():
            fresh.update(await self.book.get_many(client, ids))
        return fresh

    def _release(self, task: asyncio.Task[None], keys: list[tuple[str, int]]) -> None:
        """Wake every waiter of a finished (or cancelled) fetch."""
        self._tasks.discard(task)
        for key in keys:
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def _fetch(self, provider: str, orders: list[Order]) -> None:
        asked_at = self.clock()
        try:
            results: Mapping[int, UpstreamStatus | ItemError] = await self.providers[provider].statuses(
                sorted({o.upstream_order for o in orders})
            )
        except UpstreamError as exc:
            log.warning("statuses from %s not refreshed: %s", provider, exc.reason)
            await self.health.read_failed(provider, exc)
            return
        outcomes = await asyncio.gather(
            *(self.apply(order, results.get(order.upstream_order), asked_at) for order in orders),
            return_exceptions=True,
        )
        for order, outcome in zip(orders, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("order %s: status not applied", order.id, exc_info=outcome)

    async def apply(self, order: Order, result: _Result, asked_at: float | None = None) -> Order:
        """Record what upstream said of `order` (asked at `asked_at`), refunding
        if it calls for it. An answer older than what the record holds is dropped."""
        now = self.clock()
        asked_at = now if asked_at is None else asked_at
        if result is None:  # the provider did not answer: keep the old status
            return order
        fields: dict[str, object] = {"status_at": repr(asked_at)}
        refund_to = None
        needs_operator = False
        if isinstance(result, UpstreamStatus) and result.status is not None:
            status = result.status
            remains = result.remains
            if remains is None:
                if status == PARTIAL:  # a refund needs the remains: ask again later
                    log.warning("order %s: Partial without remains, kept as %s", order.id, order.status)
                    status, remains = order.status, order.remains
                else:
                    remains = 0 if status == COMPLETED else order.remains
            remains = max(0, min(remains, order.quantity))
            fields.update(status=status, remains=remains)
            if result.start_count is not None:
                fields["start_count"] = result.start_count
            if status in (PARTIAL, CANCELED):
                if order.type == SUBSCRIPTIONS or (status == PARTIAL and order.flat):
                    # What was delivered is not known per unit: an operator decides.
                    needs_operator = True
                else:
                    refund_to = order.refund_due(status, remains)
        try:
            updated = await self.book.transition(order, [PLACED], fields, refund_to=refund_to, snapshot=asked_at)
        except StateChanged:
            return order
        if needs_operator and updated.status in (PARTIAL, CANCELED):
            return await self.book.needs_attention(updated, f"{updated.status}: refund to be decided")
        return updated

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
