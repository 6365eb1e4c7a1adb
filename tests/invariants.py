"""The money invariants, checked over everything a router holds.

`check_money` is what every fault walk asserts after the dust settles:
balances never below zero and equal to their ledgers, every order's ledger
entries equal to its net charge, refunds within the charge, failed orders
refunded in full, no upstream order bought twice or left without an order of
ours that owns it (placed) or waits for an operator (unknown), and the
working sets and the open-links index in step with the records.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from decimal import Decimal

from proxy.orders.links import link_key
from proxy.orders.records import Order
from proxy.orders.states import CLOSED, FAILED, IN_FLIGHT, PLACED, UNKNOWN, WORKING_SETS
from proxy.vocabulary import CANCELED, FINAL_STATUSES


def fresh_prefix() -> str:
    return f"smm-test:{uuid.uuid4().hex[:12]}:"


async def all_orders(router) -> list[Order]:
    return [order async for order in router.runtime.book.newest()]


def expected_groups(order: Order) -> set[str]:
    groups = set()
    if order.state in IN_FLIGHT:
        groups.add("inflight")
    if order.state == UNKNOWN:
        groups.add("unknown")
    if order.state == PLACED and order.status not in FINAL_STATUSES:
        groups.add("open")
    if order.attention:
        groups.add("attention")
    return groups


async def check_money(router, opening: dict[str, Decimal], *, settled: bool = True) -> list[Order]:
    """Assert the invariants; `settled`: no order may still be in flight."""
    runtime = router.runtime
    orders = await all_orders(router)
    for client, opened in opening.items():
        balance = await runtime.ledger.balance(client)
        entries = await runtime.ledger.entries(client)
        mine = [o for o in orders if o.client == client]
        assert balance >= 0, (client, balance)
        assert sum(e.amount for e in entries) == balance, (client, balance, entries)
        assert opened - sum(o.net_charge for o in mine) == balance, (client, balance, mine)
        per_order: dict[int, Decimal] = defaultdict(Decimal)
        for entry in entries:
            if entry.order is not None:
                per_order[entry.order] += entry.amount
        for order in mine:
            assert per_order[order.id] == -order.net_charge, order
        for group in WORKING_SETS:
            members = set(await runtime.book.ids_in(group, client))
            assert members == {o.id for o in mine if group in expected_groups(o)}, (group, members)
        assert set(await runtime.book.ids_in("all", client)) == {o.id for o in mine}
        open_links = {}
        async for bucket in runtime.redis.scan_iter(match=runtime.keys.open_links_buckets(client)):
            open_links.update(await runtime.redis.hgetall(bucket))
        expected = Counter(link_key(o.link) for o in mine if o.link and not o.final)
        assert {k: int(v) for k, v in open_links.items()} == dict(expected), (client, open_links, expected)
    for order in orders:
        assert 0 <= order.refunded <= order.charge, order
        if order.state == FAILED:
            assert order.refunded == order.charge, order
        if settled:
            assert order.state not in IN_FLIGHT, order
    for name, panel in router.panels.items():
        upstream = set(panel.orders)
        # A closed order keeps the upstream order it was placed as (an operator settled its money).
        placed = [
            o for o in orders if o.provider == name and (o.state == PLACED or (o.state == CLOSED and o.upstream_order))
        ]
        unknown = [o for o in orders if o.provider == name and o.state == UNKNOWN]
        owned = {o.upstream_order for o in placed}
        assert len(owned) == len(placed), "two orders own one upstream order"
        assert owned <= upstream, "a placed order missing upstream"
        # Every upstream order we pay for is ours, or waits for an operator (one
        # canceled upstream costs nothing).
        unowned = {i for i, o in panel.orders.items() if i not in owned and o.status != CANCELED}
        assert len(unowned) <= len(unknown), f"an upstream order at {name} nobody owns: {unowned}"
    return orders


async def check_reply(router, reply: dict, opening: dict[str, Decimal], client: str = "alice") -> None:
    """The choke point: an order ID whose order exists, or an error with no money moved."""
    if "order" in reply:
        order = await router.runtime.book.find(reply["order"])
        assert order is not None and order.client == client, reply
        assert order.state in (PLACED, UNKNOWN, FAILED), order
        return
    assert set(reply) == {"error"}, reply
    assert await router.runtime.ledger.balance(client) == opening[client], reply
    assert all(not panel.orders for panel in router.panels.values()), reply
