"""What an order's status says about its route, noted after the status is applied.

A small hook the status refresher calls with each order before and after a
status read (`StatusRefresher(on_status=...)`); it never touches the money
and never raises:

- an order that turns final adds its outcome (Completed, Partial, Canceled:
  the share delivered, the time to completion) to its route's rates
  (`proxy.providers.outcomes`), which `strategy: best` reads;
- an order still Pending upstream longer than its service's `stuck_after`
  is flagged stuck, once for every instance: it counts against its route,
  goes to the operator's attention queue, is tallied
  (`smm_proxy_orders_total{outcome="stuck"}`) and told as an event. An order
  whose last reads could not be settled (`Order.misses`) is not stuck: its
  Pending is the status it kept, not one the provider gave, and the
  refresher's own note (`proxy.orders.statuses`) owns its attention; a stuck
  note never replaces another note either;
- an order that newly needs an operator is told as an event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from proxy.logs import Emit, no_events
from proxy.orders.book import OrderBook
from proxy.orders.records import Order
from proxy.orders.states import PLACED, RESTATUS
from proxy.providers import outcomes as kinds
from proxy.providers.outcomes import Outcomes
from proxy.vocabulary import CANCELED, COMPLETED, EXPIRED, PARTIAL, PENDING

log = logging.getLogger(__name__)


class OrderWatch:
    def __init__(
        self,
        outcomes: Outcomes,
        book: OrderBook,
        *,
        stuck_after: float,
        stuck_after_by_service: Mapping[int, float] | None = None,
        tally: Callable[[str], Awaitable[None]] | None = None,
        emit: Emit = no_events,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outcomes = outcomes
        self.book = book
        self.stuck_after = stuck_after
        self.stuck_after_by_service = dict(stuck_after_by_service or {})
        self.tally = tally
        self.emit = emit
        self.clock = clock

    async def __call__(self, before: Order, after: Order) -> None:
        try:
            await self._watch(before, after)
        except Exception as exc:  # statistics and news: never in the way of a status
            log.warning("order %s: outcome not noted: %s", after.id, type(exc).__name__)

    async def _watch(self, before: Order, after: Order) -> None:
        if after.attention and not before.attention:
            await self.emit(
                "order.attention",
                str(after.id),
                f"order {after.id} needs an operator: {after.attention}",
                reason=after.attention,
                provider=after.provider,
            )
        if after.state != PLACED or not after.provider or not after.upstream_service:
            return
        if after.final and not before.final:
            await self._final(after)
        elif (
            after.status == PENDING and not after.misses and self.clock() - after.created >= self._limit(after.service)
        ):
            await self._stuck(after)

    def _limit(self, service: int) -> float:
        return self.stuck_after_by_service.get(service, self.stuck_after)

    async def _final(self, order: Order) -> None:
        if order.status in (COMPLETED, EXPIRED):
            kind, delivered = kinds.COMPLETED, 1.0
        elif order.status == PARTIAL:
            kind = kinds.PARTIAL
            delivered = (order.quantity - order.remains) / order.quantity if order.quantity else 0.0
        elif order.status == CANCELED:
            kind, delivered = kinds.CANCELED, 0.0
        else:
            return
        seconds = self.clock() - order.created if order.status == COMPLETED else None
        await self.outcomes.finished(order.provider, order.upstream_service, order.id, kind, delivered, seconds)

    async def _stuck(self, order: Order) -> None:
        if not await self.outcomes.stuck(order.provider, order.upstream_service, order.id):
            return  # flagged before, here or by another instance
        hours = (self.clock() - order.created) / 3600
        reason = f"stuck: Pending at {order.provider} for {hours:.1f} h"
        log.warning("order %s is %s", order.id, reason)
        if not order.attention:
            try:
                await self.book.apply(order, RESTATUS, {}, attention=reason)
            except Exception as exc:
                log.warning("order %s: not queued for attention: %s", order.id, type(exc).__name__)
        if self.tally is not None:
            await self.tally("orders_stuck")
        await self.emit(
            "order.stuck", str(order.id), f"order {order.id} {reason}", provider=order.provider, hours=round(hours, 1)
        )
