"""An operator's verdicts on orders: the only changes to an order that the
router does not make itself.

- `resolve`: an `unknown` order exists upstream under a given ID (refused if
  another of our orders owns that ID), or it does not (refunded in full);
- `refund`: raise an order's total refund, for an order whose money the
  router could not settle alone (it clears the attention note);
- `acknowledge`: the operator has dealt with the attention note.

Each is one event of the state table, applied by the order book like any
other. `proxy.ops.operators` calls these, audits them and answers the CLI
and the admin API.
"""

from __future__ import annotations

from decimal import Decimal

from proxy.errors import ClaimConflict, NotFound, StateChanged
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.records import Order
from proxy.orders.states import ACK, REFUND, RESOLVE_FAILED, RESOLVE_PLACED, UNKNOWN


class Verdicts:
    def __init__(self, book: OrderBook, claims: Claims) -> None:
        self.book = book
        self.claims = claims

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
