"""Order IDs in blocks (proxy/orders/ids.py), seen by what reads orders newest
first: two instances on one Redis each hand out IDs from a block of their own,
so a higher ID is not always a newer order. Reports and searches read orders
by ID, newest first, and stop at one created well before the period they
cover: they must still find every order of the period."""

from __future__ import annotations

from decimal import Decimal

from support import metric, on_every_store, router_config

from proxy.vocabulary import COMPLETED

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


# When the sequence falls behind IDs in use (a Redis failover lost the last
# INCRBYs while instances still hold blocks from them, or an operator restored
# the counter from an old dump), an instance may be handed an ID that numbers
# an order already. Two orders are never merged: the add takes another ID,
# the sequence moves past the one in use, and the operator is told.


async def set_counter_back(router, to: int) -> None:
    await router.runtime.redis.set(router.runtime.keys.order_seq, to)


@on_every_store
async def test_an_id_in_use_by_another_order_of_the_client_is_never_its_retry(make_router):
    a, b, key = await two_instances(make_router)
    first = await add(a, key, 1)
    await set_counter_back(a, first - 1)  # b's next block starts at `first`
    second = await add(b, key, 2)
    assert second != first
    assert (await a.runtime.book.get("alice", first)).fields["link"] == f"{LINK}/1"
    assert (await a.runtime.book.get("alice", second)).fields["link"] == f"{LINK}/2"
    charged = (await a.runtime.book.get("alice", first)).charge * 2
    assert await a.runtime.ledger.balance("alice") == Decimal(100) - charged  # both paid, each once
    assert sum(len(panel.orders) for panel in a.panels.values()) == 2
    assert int(await a.runtime.redis.get(a.runtime.keys.order_seq)) > first  # past the ID in use
    assert await metric(a, "smm_proxy_orders_total", outcome="id_in_use") == 1
    [event] = await a.runtime.events.read(kind="order.id_in_use")
    assert event.subject == str(first) and event.detail["skipped"] == [first]


@on_every_store
async def test_an_id_in_use_by_another_client_is_left_to_it(make_router):
    a, b, key = await two_instances(make_router)
    bob = await b.client("bob", balance="100")
    first = await add(a, key, 1)
    await set_counter_back(a, first - 1)
    second = await add(b, bob, 2)
    assert second != first
    assert (await a.runtime.book.find(first)).client == "alice"
    assert (await a.runtime.book.find(second)).client == "bob"


@on_every_store
async def test_an_id_of_an_archived_order_is_never_reused(make_router, tmp_path):
    raw = router_config()
    a = await make_router(raw, status_ttl=1, archive_dir=tmp_path)
    b = await make_router(raw, panels=a.panels, clock=a.clock, status_ttl=1, archive_dir=tmp_path)
    key = await a.client("alice", balance="100")
    first = await add(a, key, 1)
    panel = a.panels["echomark"]
    panel.force((await a.runtime.book.get("alice", first)).upstream_order, status=COMPLETED)
    a.clock.advance(2)
    assert (await a.call(key, action="status", order=first))["status"] == COMPLETED
    assert await a.runtime.archive.archive(a.clock() + 1) == 1
    await set_counter_back(a, first - 1)
    second = await add(b, key, 2)
    assert second != first
    assert (await b.call(key, action="status", order=first))["status"] == COMPLETED
    assert (await b.runtime.book.get("alice", second)).fields["link"] == f"{LINK}/2"
