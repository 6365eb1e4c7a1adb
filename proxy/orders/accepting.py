"""Recording an order a provider accepted, in one round trip where Redis allows it.

An upstream order ID proves the order exists upstream. Recording it takes
four things: the claim on the upstream order (`proxy.orders.claims`), the
ACCEPT transition with the due index (`OrderBook.apply`), the provider's
success (`proxy.providers.health`) and the order's cost off what we know
of its funds (`proxy.providers.funds`). On one server `scripts/accept.lua`
does all four in one step. On Redis Cluster their keys live in different
slots, and when another order holds the claim the claim needs the judgement
of `Claims.claim`: then `accept` answers None and the caller makes the
calls one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from proxy import scripts
from proxy.money import to_minor
from proxy.orders.book import OrderBook
from proxy.orders.records import RECENT_CALLS, Order, flatten
from proxy.orders.states import ACCEPT, lua_values
from proxy.providers.health import ORDERS, Health
from proxy.scripts import lua


class Acceptance:
    def __init__(self, book: OrderBook, health: Health) -> None:
        self.book = book
        self.health = health
        self.keys = book.keys
        self._accept = scripts.register(
            book.redis, "proxy.orders", "accept", {**lua_values(), "RECENT_CALLS": lua(RECENT_CALLS)}
        )

    async def accept(
        self, order: Order, provider: str, upstream_order: int, fields: Mapping[str, object], call: str, cost: Decimal
    ) -> Order | None:
        """Record `order` as accepted by `provider` as `upstream_order` (with
        `fields`), at `cost` in the provider's currency, with the provider's
        success and spend (the order after); None when this cannot
        be one step (a cluster, or another order holds the claim: the caller
        goes the long way). `call` names the call, so a retry after a lost
        reply never applies it twice. Raises `StateChanged` when the table
        refuses ACCEPT now."""
        if not self.book.single:  # on a cluster the claim and the order live in other slots
            return None
        funds = self.health.funds
        due = self.book.due.change(order, ACCEPT, {"provider": provider, **fields})
        keys = [
            *self.book.transition_keys(order),
            self.keys.claims(provider, upstream_order),
            due.key if due else self.keys.due(provider),
            self.keys.health(provider, ORDERS),
            self.keys.provider_state(provider),
        ]
        args: list[str | int] = [
            *self.book.transition_args(order, ACCEPT, call=call),
            upstream_order,
            order.id,
            due.op if due else "",
            due.member if due else "",
            repr(due.score) if due and due.score is not None else "",
            repr(self.book.clock()),
            to_minor(cost),
            to_minor(funds.thresholds.get(provider, Decimal(0))),
            *flatten(fields),
        ]
        reply: list[Any] = await self._accept(keys=keys, args=args)
        if reply[0] == "claimed":
            return None
        after = self.book.applied(order, ACCEPT, reply)
        if len(reply) < 7:  # a repeat of a call that applied: counted then
            return after
        if reply[3] == "back":
            await self.health.accepted_anyway(provider)
        await funds.announce(provider, str(reply[5]), str(reply[6]))
        return after
