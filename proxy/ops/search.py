"""Finding orders for an operator: by state, client, link, upstream order and time.

`Search` is what `orders list` asks (`proxy.ops.operators.Operators.orders`),
checked before anything is read: a state or status that does not exist, a
limit that is not a whole number from 1 to `MAX_ROWS`, a time window that
ends before it starts are refused with a message. An upstream order is found
through the claims index (one read per provider); a link is compared as
`proxy.orders.links` says; times are when the order was created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from proxy.errors import Invalid
from proxy.orders.book import OrderBook
from proxy.orders.claims import Claims
from proxy.orders.links import normal_link
from proxy.orders.records import Order
from proxy.orders.states import STATES, WORKING_SETS
from proxy.vocabulary import ORDER_STATUSES, SUBSCRIPTION_STATUSES

MAX_ROWS = 1000
# Orders are read newest first by ID: a higher ID may be older by an ID block's age
# (proxy.orders.ids.MAX_AGE, 60 s) plus the instances' clock difference; this covers both.
CLOCK_SLACK_SECONDS = 300.0
STATE_WORDS = tuple(dict.fromkeys([*STATES, *WORKING_SETS, *ORDER_STATUSES, *SUBSCRIPTION_STATUSES]))


def rows(value: object, name: str = "limit") -> int:
    """A count of rows an operator asked for: a whole number from 1 to MAX_ROWS."""
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= MAX_ROWS):
        raise Invalid(f"{name} must be a whole number from 1 to {MAX_ROWS}, not {value!r}")
    return int(text)


@dataclass(frozen=True)
class Search:
    state: str = ""  # a state, a working set or a status ("" any)
    client: str | None = None
    link: str = ""
    upstream_order: int | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.state and self.state.casefold() not in {word.casefold() for word in STATE_WORDS}:
            raise Invalid(f"state {self.state!r}: one of {', '.join(STATE_WORDS)}")
        rows(self.limit)
        if self.upstream_order is not None and self.upstream_order <= 0:
            raise Invalid("an upstream order ID is a positive whole number")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise Invalid("until is before since: nothing can match")

    def matches(self, order: Order) -> bool:
        wanted = self.state.casefold()
        if wanted and wanted not in WORKING_SETS and wanted not in (order.state, order.public_status.casefold()):
            return False
        if self.client and order.client != self.client:
            return False
        if self.link and normal_link(order.link) != normal_link(self.link):
            return False
        if self.upstream_order is not None and order.upstream_order != self.upstream_order:
            return False
        if self.since is not None and order.created < self.since:
            return False
        return self.until is None or order.created <= self.until


async def search(book: OrderBook, claims: Claims, providers: Mapping[str, object], query: Search) -> list[Order]:
    found: list[Order] = []
    async for order in _candidates(book, claims, providers, query):
        if query.since is not None and order.created < query.since - CLOCK_SLACK_SECONDS:
            break
        if query.matches(order):
            found.append(order)
            if len(found) >= query.limit:
                break
    return found


async def _candidates(
    book: OrderBook, claims: Claims, providers: Mapping[str, object], query: Search
) -> AsyncIterator[Order]:
    """Orders that may match, newest first: the few an index points at, else all of them."""
    if query.upstream_order is not None:
        for order_id in sorted(await claims.owners(list(providers), query.upstream_order), reverse=True):
            if (order := await book.find(order_id)) is not None:
                yield order
        return
    wanted = query.state.casefold()
    if wanted in WORKING_SETS:
        for order_id in reversed(await book.ids_in(wanted, query.client)):
            if (order := await book.find(order_id)) is not None:
                yield order
        return
    async for order in book.newest(query.client):
        yield order
