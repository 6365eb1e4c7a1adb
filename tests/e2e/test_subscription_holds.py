"""A subscription is held for everything its provider can bill, and an unlimited one is stopped.

Issue 12, case 1: a client with 1.00 ordered `min=100 max=100 posts=1
old_posts=500`: it was held for one post, `old_posts` reached the provider,
which billed 501 posts, and the client paid the hold (margin -99.95 on the
served router). `old_posts` are posts the provider delivers to as well: each
is held like a new post, and more than `settlement.max_old_posts` is refused
before any money moves. An unlimited subscription is asked to stop upstream
once what its provider charged leaves no room in its hold for another post.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from invariants import check_money
from support import router_config

from proxy.money import ceil_to
from proxy.orders.states import PLACED
from proxy.orders.validation import bad_old_posts
from proxy.vocabulary import CANCELED, COMPLETED, Errors

SUBSCRIPTION = 1010  # echomark's Instagram Auto Likes: 0.15 per 1000, 0.195 with our 30 %


def config(**settlement: object) -> dict[str, object]:
    raw = router_config(imports=[{"provider": "echomark", "id_offset": 1000}])
    if settlement:
        raw["settlement"] = settlement
    return raw


async def test_the_issues_case_is_refused_and_moves_no_money(make_router):
    router = await make_router(config())
    key = await router.client(balance="1.00")
    reply = await router.call(
        key, action="add", service=SUBSCRIPTION, username="nasa", min=100, max=100, posts=1, old_posts=500
    )
    assert reply == {"error": bad_old_posts(100)} == {"error": "old_posts must be a whole number from 0 to 100"}
    assert await router.runtime.ledger.balance("alice") == Decimal("1.00")
    assert not router.panels["echomark"].orders


async def test_old_posts_within_the_limit_are_held_like_new_posts(make_router):
    router = await make_router(config(max_old_posts=1000))
    key = await router.client(balance="1.00")
    asked = dict(action="add", service=SUBSCRIPTION, username="nasa", min=100, max=100, posts=1, old_posts=500)
    assert await router.call(key, **asked) == {"error": Errors.NOT_ENOUGH_FUNDS}  # 501 posts: 9.7695
    assert await router.runtime.ledger.balance("alice") == Decimal("1.00") and not router.panels["echomark"].orders
    await router.runtime.accounts.topup("alice", Decimal(9))
    reply = await router.call(key, **asked)
    order = await router.runtime.book.get("alice", reply["order"])
    assert order.quantity == 100 * 501 and order.charge == Decimal("9.7695")


async def test_what_the_provider_bills_for_old_posts_is_what_the_client_pays(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="10")
    reply = await router.call(
        key, action="add", service=SUBSCRIPTION, username="nasa", min=100, max=100, posts=1, old_posts=50
    )
    order = await router.runtime.book.get("alice", reply["order"])
    upstream = router.panels["echomark"].orders[order.upstream_order]
    assert upstream.charge == order.cost == Decimal("0.765")  # 51 posts x 100 at 0.15 per 1000
    router.clock.advance(25)
    assert (await router.call(key, action="status", order=order.id))["status"] == COMPLETED
    order = await router.runtime.book.get("alice", order.id)
    assert order.attention == ""
    assert order.net_charge == ceil_to(order.charge * order.upstream_charge / order.cost) == order.charge
    report = await router.runtime.operators.report(0, "provider")
    assert Decimal(report.total.margin) > 0
    await check_money(router, {"alice": Decimal("10")})


def cancellable(router) -> None:
    panel = router.panels["echomark"]
    panel.catalog[10] = dataclasses.replace(panel.catalog[10], cancel=True)


async def test_an_unlimited_subscription_is_stopped_when_its_hold_is_used(make_router):
    router = await make_router(config(subscription_hold_posts=4), status_ttl=1)
    cancellable(router)
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=SUBSCRIPTION, username="nasa", min=100, max=100)
    order = await router.runtime.book.get("alice", reply["order"])
    assert order.charge == Decimal("0.078") and order.cost == Decimal("0.06")  # held: 4 posts of 100
    upstream = router.panels["echomark"].orders[order.upstream_order]
    seen = []
    for _ in range(12):
        router.clock.advance(10)  # a post every 10 s
        seen.append((await router.call(key, action="status", order=order.id))["status"])
        if upstream.status == CANCELED:
            break
    assert upstream.status == CANCELED, "never stopped upstream"
    assert upstream.charge == Decimal("0.06")  # billed for the 4 posts held, and no more
    router.clock.advance(2)
    assert (await router.call(key, action="status", order=order.id))["status"] == CANCELED
    order = await router.runtime.book.get("alice", order.id)
    assert order.attention == "" and order.net_charge == order.charge  # the client pays its hold, we our cost
    calls = dict(router.panels["echomark"].calls)
    router.clock.advance(120)
    await router.call(key, action="status", order=order.id)
    await router.runtime.sync.poll_due()
    assert router.panels["echomark"].calls["cancel"] == calls["cancel"]  # asked once: it stopped
    await check_money(router, {"alice": Decimal("10")})


async def test_an_unlimited_subscription_the_provider_will_not_stop_goes_to_an_operator(make_router):
    router = await make_router(config(subscription_hold_posts=2), status_ttl=1)
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=SUBSCRIPTION, username="nasa", min=100, max=100)
    order_id = reply["order"]
    for _ in range(6):
        router.clock.advance(10)
        await router.call(key, action="status", order=order_id)
    order = await router.runtime.book.get("alice", order_id)
    assert order.state == PLACED and order.stops >= 1
    assert "and the provider did not stop it: stop it there | the provider said: Cannot cancel" in order.attention
    assert await router.runtime.book.ids_in("attention") == [order_id]
    await router.runtime.verdicts.acknowledge(order_id)  # seen: the operator stops it at the provider
    router.clock.advance(10)
    await router.call(key, action="status", order=order_id)
    assert (await router.runtime.book.get("alice", order_id)).attention == ""  # nothing new: it stays seen


async def test_a_limited_subscription_is_never_asked_to_stop(make_router):
    router = await make_router(config(), status_ttl=1)
    cancellable(router)
    key = await router.client(balance="10")
    reply = await router.call(key, action="add", service=SUBSCRIPTION, username="nasa", min=100, max=100, posts=2)
    for _ in range(4):
        router.clock.advance(10)
        await router.call(key, action="status", order=reply["order"])
    assert router.panels["echomark"].calls["cancel"] == 0
