"""Order IDs in blocks (proxy/orders/ids.py), seen by what reads orders newest
first: two instances on one Redis each hand out IDs from a block of their own,
so a higher ID is not always a newer order. Reports and searches read orders
by ID, newest first, and stop at one created well before the period they
cover: they must still find every order of the period."""

from __future__ import annotations

from decimal import Decimal

from support import router_config

LINK = "https://instagram.com/p/blocks"


async def two_instances(make_router):
    raw = router_config(imports=[{"provider": "echomark", "id_offset": 1000}])
    a = await make_router(raw)
    b = await make_router(raw, panels=a.panels, clock=a.clock)
    key = await a.client("alice", balance="100")
    return a, b, key


async def add(router, key, n):
    reply = await router.call(key, action="add", service=1, link=f"{LINK}/{n}", quantity=1000)
    assert isinstance(reply, dict) and "order" in reply, reply
    return reply["order"]


async def test_a_report_counts_every_order_of_its_period_whichever_instance_numbered_it(make_router):
    a, b, key = await two_instances(make_router)
    await add(a, key, 1)  # each instance takes a block of IDs
    await add(b, key, 2)
    a.clock.advance(3600)
    new = [await add(b, key, 3), await add(a, key, 4)]  # from blocks taken an hour ago, A's below B's
    report = await a.runtime.operators.report(a.clock() - 1800, "client")
    assert report.total.orders == 2
    assert Decimal(report.total.revenue) == sum(
        [(await a.runtime.book.get("alice", order_id)).charge for order_id in new], Decimal(0)
    )


async def test_a_search_since_a_time_finds_every_order_created_since(make_router):
    a, b, key = await two_instances(make_router)
    await add(a, key, 1)
    await add(b, key, 2)
    a.clock.advance(3600)
    new = {await add(b, key, 3), await add(a, key, 4)}
    found = await a.runtime.operators.orders(since=a.clock() - 1800, limit=100)
    assert {order.id for order in found} == new
