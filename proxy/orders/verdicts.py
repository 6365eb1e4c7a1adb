"""An operator's verdicts on orders: the only changes to an order that the
router does not make itself.

- `resolve`: an `unknown` order exists upstream under a given ID (refused if
  another of our orders owns that ID), or it does not (refunded in full);
- `refund`: raise an order's total refund, for an order whose money the
  router could not settle alone (it clears the attention note);
- `acknowledge`: the operator has dealt with the attention note;
- `close`: end an order the router cannot finish (placed, whatever its
  status, or unknown), with the total refund the operator chooses; it is
  never read again.

Each is one event of the state table, applied by the order book like any
other. `proxy.ops.operators` calls these, audits them and answers the CLI
and the admin API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from proxy.errors import ClaimConflict, NotFound, StateChanged
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.records import Order, stamp
from proxy.orders.states import ACK, CLOSE, REFUND, RESOLVE_FAILED, RESOLVE_PLACED, UNKNOWN, rule

# How much of an operator's reason for closing an order is kept.
REASON_CHARS = 200


def credit(order: Order, event: str, total: Decimal | None = None) -> Decimal:
    """What a verdict (`event` on `order`, with the total refund an operator
    chose) would give back to the order's client: the money it moves, as the
    state table's rule for it says (nothing, everything, or up to `total`).
    The same rule the transition script applies; raises `StateChanged` when
    the table does not let the order take `event`."""
    found = rule(order.state, event)
    if found is None:
        raise StateChanged(order.state)
    if found.refund == "all":
        return order.charge - order.refunded
    if found.refund == "to":
        target = order.refunded if total is None else min(total, order.charge)
        return max(Decimal(0), target - order.refunded)
    return Decimal(0)


class Verdicts:
    def __init__(self, book: OrderBook, claims: Claims, clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.claims = claims
        self.clock = clock

    async def _found(self, order_id: int) -> Order:
        order = await self.book.find(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        return order

    async def resolve(self, order_id: int, *, upstream_order: int | None = None, failed: bool = False) -> Order:
        """An operator's verdict on an `unknown` order: it exists upstream as
        `upstream_order`, or it does not (`failed`: refunded in full).

        Refuses an upstream order that another of our orders already owns
        (`ClaimConflict`), and a verdict that is not exactly one of the two
        (`ValueError`).
        """
        if (upstream_order is None) == (not failed):
            raise ValueError("give the upstream order ID, or declare the order failed")
        order = await self._found(order_id)
        if failed:
            return await self.book.apply(order, RESOLVE_FAILED, memo=f"order {order_id} resolved as failed")
        assert upstream_order is not None
        if upstream_order <= 0:
            raise ValueError("an upstream order ID is a positive number")
        if order.state != UNKNOWN:
            raise StateChanged(order.state)
        owner = await self.claims.claim(order, order.provider, upstream_order)
        if owner is not None:
            raise ClaimConflict(order.provider, upstream_order, owner)
        try:
            return await self.book.apply(
                order,
                RESOLVE_PLACED,
                {"upstream_order": upstream_order, "status_at": 0},
                memo=f"order {order_id} resolved as placed",
            )
        except StateChanged:
            now = await self.book.get(order.client, order.id)  # a late reply may have placed it with this very ID
            if now is None or now.upstream_order != upstream_order:
                await self.claims.release(order, order.provider, upstream_order)
            raise

    async def refund(self, order_id: int, total: Decimal) -> Order:
        """An operator's refund: raise the order's total refund to `total`."""
        order = await self._found(order_id)
        if total > order.charge or total < order.refunded:
            raise ValueError(
                f"the total refund must be between {order.refunded} (already refunded) and {order.charge} (charged)"
            )
        return await self.book.apply(order, REFUND, refund_to=total, memo=f"order {order_id} refunded by an operator")

    async def acknowledge(self, order_id: int) -> Order:
        """An operator has dealt with what the order's attention note said."""
        return await self.book.apply(await self._found(order_id), ACK)

    async def close(self, order_id: int, total: Decimal, reason: str = "") -> Order:
        """An operator ends an order the router cannot finish: the order's total
        refund becomes `total` (from what is refunded already up to the charge),
        and it is final. Raises `StateChanged` for an order the table does not
        let close (in flight, failed, closed already), `ValueError` for a total
        out of range."""
        order = await self._found(order_id)
        if rule(order.state, CLOSE) is None:
            raise StateChanged(order.state)
        if total > order.charge or total < order.refunded:
            raise ValueError(
                f"the total refund must be between {order.refunded} (already refunded) and {order.charge} (charged)"
            )
        fields = {"closed_at": stamp(self.clock()), "closed_reason": " ".join(reason.split())[:REASON_CHARS]}
        return await self.book.apply(
            order, CLOSE, fields, refund_to=total, memo=f"order {order_id} closed by an operator"
        )
