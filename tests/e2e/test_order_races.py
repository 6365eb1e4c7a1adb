"""Races, crashes and stale answers around orders: each of these once lost or stranded money."""

import asyncio
from decimal import Decimal

from support import expire_leases, fault, metric, new_order, on_every_store, router_config

from proxy.orders.states import ACCEPT, FAILED, PLACED, UNKNOWN
from proxy.providers.replies import UpstreamStatus
from proxy.vocabulary import CANCELED, IN_PROGRESS, PARTIAL

LINK = "https://instagram.com/p/abc"

# Each scenario runs on one Redis server and on a Redis Cluster.
pytestmark = on_every_store


async def test_a_charged_order_is_found_by_recovery_even_if_never_routed(make_router):
    router = await make_router(router_config())
    await router.client(balance="10")
    book = router.runtime.book
    order_id = (await book.reserve(new_order())).order_id  # charged, then "the process died"
    assert await router.runtime.ledger.balance("alice") == Decimal("8.83")
    assert [o.id async for o in book.newest()] == [order_id]  # listed from the start
    await expire_leases(router)
    assert await router.runtime.sync.recover() == 1
    assert (await book.get("alice", order_id)).state == FAILED
    assert await router.runtime.ledger.balance("alice") == Decimal("10")


async def test_a_late_reply_places_an_order_recovery_took_for_lost(make_router):
    router = await make_router(router_config())
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "html")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.get("alice", 1)
    assert order.state == UNKNOWN
    placed = await router.runtime.book.apply(order, ACCEPT, {"upstream_order": 777})
    assert placed.state == PLACED and placed.upstream_order == 777


async def test_a_retry_after_a_failed_order_buys_again(make_router):
    router = await make_router(router_config(), upstream_cooldown=0)  # the garbled reply benches nobody
    key = await router.client(balance="10")
    fault(router.panels["echomark"], "html", None)
    headers = {"Idempotency-Key": "order-42"}
    data = {"action": "add", "service": "1", "link": LINK, "quantity": "1000"}
    first = await router.call(key, headers=headers, **data)
    assert await router.call(key, headers=headers, **data) == first
    await router.runtime.verdicts.resolve(first["order"], failed=True)
    router.panels["echomark"].faults.mode = None
    router.clock.advance(120)
    again = await router.call(key, headers=headers, **data)
    assert again != first and "order" in again
    assert (await router.runtime.book.get("alice", again["order"])).state == PLACED


async def test_an_older_status_answer_never_overwrites_a_newer_one(make_router):
    router = await make_router(router_config())
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    refresher, book = router.runtime.refresher, router.runtime.book
    order = await book.get("alice", 1)
    asked_early = router.clock() + 1
    router.clock.advance(10)
    partial = UpstreamStatus(PARTIAL, None, 5, 400, "USD", "Partial")
    order = await refresher.apply(order, partial, asked_at=router.clock())
    assert order.status == PARTIAL and order.refunded == Decimal("0.468")
    stale = UpstreamStatus(IN_PROGRESS, None, 5, 900, "USD", "In progress")
    order = await refresher.apply(order, stale, asked_at=asked_early)
    assert order.status == PARTIAL and order.remains == 400
    assert await router.runtime.ledger.balance("alice") == Decimal("8.83") + Decimal("0.468")


async def test_concurrent_refunds_of_one_order_credit_once(make_router):
    router = await make_router(router_config())
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.get("alice", 1)
    canceled = UpstreamStatus(CANCELED, None, 0, 1000, "USD", "Canceled")
    await asyncio.gather(*(router.runtime.refresher.apply(order, canceled) for _ in range(50)))
    assert await router.runtime.ledger.balance("alice") == Decimal("10")
    refunds = [e for e in await router.runtime.ledger.entries("alice") if e.kind == "refund"]
    assert len(refunds) == 1


async def test_canceled_subscription_waits_for_an_operator(make_router):
    raw = router_config(imports=[{"provider": "echomark", "id_offset": 1000}])
    router = await make_router(raw)
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=1010, username="someone", min=100, max=200, posts=5)
    order = await router.runtime.book.get("alice", reply["order"])
    charged = order.charge
    canceled = UpstreamStatus(CANCELED, None, 0, 0, "USD", "Canceled")
    order = await router.runtime.refresher.apply(order, canceled)
    assert order.refunded == 0 and order.attention
    assert await router.runtime.book.ids_in("attention") == [order.id]
    assert await metric(router, "smm_proxy_orders_attention") == 1
    order = await router.runtime.verdicts.refund(order.id, charged / 2)
    assert order.refunded == charged / 2 and not order.attention
    assert await router.runtime.book.ids_in("attention") == []
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - charged / 2


async def test_a_cancelled_refresh_does_not_hang_its_waiters(make_router):
    router = await make_router(router_config(), status_ttl=1)
    key = await router.client(balance="10")
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    panel = router.panels["echomark"]
    panel.faults.mode, panel.faults.actions, panel.faults.hang_seconds = "timeout", frozenset({"status"}), 30
    router.clock.advance(2)
    order = await router.runtime.book.get("alice", 1)
    waiting = asyncio.create_task(router.runtime.refresher.refresh([order]))
    await asyncio.sleep(0.05)
    await router.runtime.refresher.aclose()
    result = await asyncio.wait_for(waiting, 2)
    assert result[1].state == PLACED


async def test_an_empty_service_list_keeps_the_last_good_one(make_router):
    router = await make_router(router_config())
    key = await router.client()
    before = await router.call(key, action="services")
    router.panels["echomark"].catalog.clear()
    router.clock.advance(301)
    await router.runtime.listings.refresh("echomark")
    assert await router.call(key, action="services") == before


async def test_odd_ids_and_bodies_get_item_errors_not_internal_errors(make_router):
    router = await make_router(router_config())
    key = await router.client()
    huge = "9" * 5000
    assert await router.call(key, action="cancel", orders=f"{huge},1") == [
        {"order": huge, "cancel": {"error": "Incorrect order ID"}},
        {"order": 1, "cancel": {"error": "Incorrect order ID"}},
    ]
    nested = b'{"key": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await router.http.post("/api/v2", content=nested, headers={"content-type": "application/json"})
    assert response.json() == {"error": "Incorrect request"}
