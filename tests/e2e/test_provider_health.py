"""Providers that fail, refuse or run dry, against the simulated panels.

A failing provider is ejected after the configured count of failures in a
row, for longer with each ejection, and comes back when a balance probe
answers; never more than `max_ejected_percent` of a service's routes are left
out. What a refusal means decides the next step (try elsewhere, refuse the
client, hold for an operator) and whether it counts against the provider. A
provider whose balance runs low gets no new orders before it would refuse
one.
"""

from decimal import Decimal

from invariants import check_money
from support import fault, metric, router_config

from proxy.orders.states import FAILED, PLACED, UNKNOWN
from proxy.providers.health import ORDERS

LINK = "https://instagram.com/p/abc"
OVERLOADED = "Panel overloaded, come back later"  # words no rule knows: provider trouble


def config(**health: object) -> dict:
    raw = router_config()
    raw["health"] = {"consecutive_failures": 2, "base_ejection_seconds": 30, "max_ejection_seconds": 100, **health}
    return raw


async def add(router, key, link=LINK, service=1, quantity=1000):
    return await router.call(key, action="add", service=service, link=link, quantity=quantity)


async def providers_of(router, replies):
    return [(await router.runtime.book.find(r["order"])).provider for r in replies]


async def events(router, kind=None):
    return [e.kind for e in reversed(await router.runtime.operators.events(limit=100, kind=kind))]


async def test_a_failing_provider_is_ejected_after_the_count_and_returns_by_probe(make_router):
    router = await make_router(config())
    key = await router.client(balance="50")
    echomark = router.panels["echomark"]
    fault(echomark, "error", OVERLOADED)
    first = [await add(router, key, f"{LINK}{i}") for i in range(2)]
    assert await providers_of(router, first) == ["korean", "korean"]
    ejection = await router.runtime.health.ejection("echomark", ORDERS)
    assert ejection.ejected and ejection.until == router.clock() + 30 and ejection.ejections == 1
    assert await events(router) == ["provider.ejected"]
    echomark.faults.mode = None  # it recovers, but nobody knows yet
    third = await add(router, key, f"{LINK}3")
    assert await providers_of(router, [third]) == ["korean"] and echomark.calls["add"] == 2
    router.clock.advance(29)
    assert await router.runtime.sync.probe_providers() == 0  # its time is not up
    router.clock.advance(1)
    balance_calls = echomark.calls["balance"]
    assert await router.runtime.sync.probe_providers() == 1
    assert echomark.calls["balance"] == balance_calls + 1  # one cheap probe
    assert await events(router) == ["provider.ejected", "provider.back"]
    assert await providers_of(router, [await add(router, key, f"{LINK}4")]) == ["echomark"]
    # Failing again soon after: the next ejection is twice as long, and a failed probe doubles it again.
    fault(echomark, "error", OVERLOADED)
    [await add(router, key, f"{LINK}{i}") for i in range(5, 7)]
    ejection = await router.runtime.health.ejection("echomark", ORDERS)
    assert (ejection.ejections, ejection.until - router.clock()) == (2, 60)
    router.clock.advance(60)
    echomark.faults.actions = frozenset({"add", "balance"})
    assert await router.runtime.sync.probe_providers() == 0
    ejection = await router.runtime.health.ejection("echomark", ORDERS)
    assert (ejection.ejections, ejection.until - router.clock()) == (3, 100)  # capped at max_ejection_seconds
    await check_money(router, {"alice": Decimal("50")})


async def test_a_success_resets_the_count(make_router):
    router = await make_router(config())
    key = await router.client(balance="50")
    echomark = router.panels["echomark"]
    for i in range(4):  # fail, succeed, fail, succeed: never two in a row
        if i % 2 == 0:
            fault(echomark, "error", OVERLOADED)
        else:
            echomark.faults.mode = None
        await add(router, key, f"{LINK}{i}")
    assert not (await router.runtime.health.ejection("echomark")).ejected
    assert await events(router) == []


async def test_never_more_than_the_allowed_share_of_a_service_s_routes_is_left_out(make_router):
    router = await make_router(config(max_ejected_percent=50))
    key = await router.client(balance="50")
    for panel in router.panels.values():
        fault(panel, "error", OVERLOADED)
    for i in range(2):
        assert await add(router, key, f"{LINK}{i}") == {
            "error": "Service temporarily unavailable, please try again later"
        }
    assert (await router.runtime.health.ejection("echomark")).ejected
    assert (await router.runtime.health.ejection("korean")).ejected
    for panel in router.panels.values():
        panel.faults.mode = None
    # Both ejected, but only one of the two routes may be left out: the other is tried, and takes it.
    reply = await add(router, key, f"{LINK}x")
    order = await router.runtime.book.find(reply["order"])
    assert order.state == PLACED
    assert await events(router, "provider.back") == ["provider.back"]  # an accepted order brings it back


async def test_two_instances_eject_once_between_them(make_router, key_prefix):
    one = await make_router(config(consecutive_failures=4))
    two = await make_router(config(consecutive_failures=4), prefix=key_prefix, clock=one.clock, panels=one.panels)
    key = await one.client(balance="50")
    fault(one.panels["echomark"], "error", OVERLOADED)
    for i in range(4):
        await add(one if i % 2 else two, key, f"{LINK}{i}")
    assert await events(one) == ["provider.ejected"]
    assert one.panels["echomark"].calls["add"] == 4


# -- what refusals mean -------------------------------------------------------------------------


async def test_an_unlimited_subscription_refused_upstream_is_refused_for_good(make_router):
    raw = router_config()
    raw["services"].append(
        {"id": 10, "routes": [{"provider": "echomark", "service": 10}, {"provider": "echomark", "service": 10}]}
    )
    router = await make_router(raw)
    key = await router.client(balance="50")
    fault(router.panels["echomark"], "error", "Incorrect request")
    reply = await router.call(key, action="add", service=10, username="someone", min=50, max=100)
    assert reply == {"error": "Incorrect request"}  # not "try again later": a retry could never succeed
    assert router.panels["echomark"].calls["add"] == 1
    assert await router.runtime.ledger.balance("alice") == Decimal("50")
    assert not (await router.runtime.health.ejection("echomark")).failures  # the order's fault, not the provider's


async def test_order_refusals_try_the_next_route_without_counting_against_the_provider(make_router):
    router = await make_router(config(consecutive_failures=1))
    key = await router.client(balance="50")
    refusals = (
        "You have active order with this link. Please wait until order being completed.",
        "Quantity less than minimal 5000",
        "Service is disabled",
    )
    for i, words in enumerate(refusals):
        fault(router.panels["echomark"], "error", words)
        reply = await add(router, key, f"{LINK}{i}")
        assert "order" in reply, (words, reply)
        assert await providers_of(router, [reply]) == ["korean"]
    assert not (await router.runtime.health.ejection("echomark")).ejected


async def test_configured_refusal_rules_come_first(make_router):
    raw = config()
    raw["providers"]["echomark"]["refusals"] = [
        {"contains": "manual review", "action": "hold"},
        {"pattern": "^link .* private$", "action": "refuse", "message": "Incorrect link"},
    ]
    router = await make_router(raw)
    key = await router.client(balance="50")
    fault(router.panels["echomark"], "error", "Order is under MANUAL REVIEW")
    held = await add(router, key)
    order = await router.runtime.book.find(held["order"])
    assert order.state == UNKNOWN and order.attention.startswith("held: echomark refused it")
    assert not router.panels["korean"].orders  # held, not sent elsewhere
    assert (await router.call(key, action="status", order=order.id))["status"] == "Pending"
    assert await events(router) == ["order.attention"]
    fault(router.panels["echomark"], "error", "Link instagram.com/x is private")
    assert await add(router, key, f"{LINK}2") == {"error": "Incorrect link"}
    await router.runtime.verdicts.resolve(order.id, failed=True)
    await check_money(router, {"alice": Decimal("50")})


# -- funds --------------------------------------------------------------------------------------


async def test_a_provider_running_dry_is_skipped_before_it_refuses(make_router):
    raw = config()
    raw["providers"]["echomark"]["low_balance"] = "1"
    router = await make_router(raw)
    echomark = router.panels["echomark"]
    echomark.open_account("sim-key", Decimal("3"))  # 0.90 an order: three orders' worth
    await router.runtime.sync.check_providers()
    key = await router.client(balance="50")
    replies = [await add(router, key, f"{LINK}{i}") for i in range(5)]
    assert await providers_of(router, replies) == ["echomark", "echomark", "echomark", "korean", "korean"]
    orders = [await router.runtime.book.find(r["order"]) for r in replies]
    assert all(a.outcome != "refused" for o in orders for a in o.attempts)  # echomark never had to refuse
    assert echomark.calls["add"] == 3 and echomark.accounts["sim-key"] == Decimal("0.3")
    assert await events(router) == ["provider.low_balance"]
    state = await router.runtime.health.state("echomark")
    assert state.low and state.funds == Decimal("0.3")
    assert await metric(router, "smm_proxy_provider_low_balance", provider="echomark") == 1
    # A top-up, seen at the next scheduled read: one recovery, and orders go there again.
    echomark.open_account("sim-key", Decimal("100"))
    router.clock.advance(300)
    await router.runtime.sync.check_providers()
    await router.runtime.sync.check_providers()
    assert await events(router) == ["provider.low_balance", "provider.balance_recovered"]
    assert await providers_of(router, [await add(router, key, f"{LINK}x")]) == ["echomark"]
    assert await metric(router, "smm_proxy_provider_balance_age_seconds", provider="echomark") == 0
    await check_money(router, {"alice": Decimal("50")})


async def test_a_funds_refusal_teaches_what_the_balance_does_not_cover(make_router):
    router = await make_router(config())
    echomark = router.panels["echomark"]
    echomark.open_account("sim-key", Decimal("0.5"))  # never read: we learn it from its refusal
    key = await router.client(balance="50")
    first = await add(router, key)
    assert await providers_of(router, [first]) == ["korean"]
    assert echomark.calls["add"] == 1
    second = await add(router, key, f"{LINK}2")
    assert await providers_of(router, [second]) == ["korean"] and echomark.calls["add"] == 1  # not asked again
    small = await add(router, key, f"{LINK}3", quantity=100)  # 0.09: what it said it lacks was more
    assert await providers_of(router, [small]) == ["echomark"]
    assert (await router.runtime.book.find(first["order"])).state == PLACED
    assert (await router.runtime.book.find(1)).state != FAILED
