"""Claims: which of our orders owns each upstream order.

An upstream order ID proves an order exists upstream, and it is believed for
one order of ours only: the order that claims it first (`Keys.claims`, a
compare-and-set script). A second order answered with the same upstream ID
is not placed with it; it waits for an operator. This is what keeps two of
our orders from being merged into one upstream order, or one upstream order
from being refunded twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy import scripts
from proxy.orders.book import OrderBook
from proxy.orders.records import Order
from proxy.orders.states import IN_FLIGHT

# Tries at a claim that keeps changing under us before giving up.
CLAIM_TRIES = 5


class Claims:
    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.keys = book.keys
        self._claim = scripts.register(book.redis, "proxy.orders", "claim")

    async def claim(self, order: Order, provider: str, upstream_order: int) -> int | None:
        """Make `order` the owner of `upstream_order` at `provider`.

        None when it is ours now; the ID of the other order that owns it
        otherwise. An order still in flight owns its claim (it records the
        upstream ID one step after claiming it), and so does an archived one.
        A claim left by an order that did not record it and is no longer in
        flight (a crash between claim and transition, a failed resolve) is
        taken over.
        """
        key = self.keys.claims(provider, upstream_order)
        expected = ""
        for _ in range(CLAIM_TRIES):
            current = await self._claim(keys=[key], args=[upstream_order, order.id, expected])
            if current in ("ok", str(order.id)):
                return None
            if current == "":  # released since we looked: claim it afresh
                expected = ""
                continue
            if await self.book.is_archived(int(current)):  # it kept its upstream order when it was archived
                return int(current)
            other = await self.book.find(int(current))
            if other is not None and (
                other.state in IN_FLIGHT or (other.provider == provider and other.upstream_order == upstream_order)
            ):
                return other.id
            expected = current
        raise RuntimeError(f"claim on {provider} {upstream_order} kept changing")

    async def release(self, order: Order, provider: str, upstream_order: int) -> None:
        """Give up `order`'s claim on `upstream_order` (only if it still holds it)."""
        await self._claim(keys=[self.keys.claims(provider, upstream_order)], args=[upstream_order, "", order.id])

    async def owners(self, providers: Iterable[str], upstream_order: int) -> list[int]:
        """Our orders that own `upstream_order` at any of `providers` (an operator's search)."""
        names = list(providers)
        if not names:
            return []
        async with self.book.redis.pipeline(transaction=False) as pipe:
            for provider in names:
                pipe.hget(self.keys.claims(provider, upstream_order), str(upstream_order))
            replies = await pipe.execute()
        return sorted({int(owner) for owner in replies if owner})
