"""Selling to other panels: each client on its own terms, over API v2.

Service 1's primary route is echomark 1 at 0.90 USD (support.router_config),
sold at +30 %: 1.17 per 1000.
"""

from decimal import Decimal

from invariants import check_money

from proxy.vocabulary import Errors

LINK = "https://instagram.com/p/abc"
CLI = "cli:test"


async def rate_of(router, key, service=1) -> str:
    return {s["service"]: s for s in await router.call(key, action="services")}[service]["rate"]


async def test_a_client_that_refuses_a_second_order_on_a_link_gets_the_panels_own_message(make_router):
    router = await make_router()
    key = await router.client(balance="10")
    await router.runtime.operators.set_terms(CLI, "alice", same_link="refuse")
    first = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    balance = await router.runtime.ledger.balance("alice")
    for spelling in (LINK, "https://www.instagram.com/p/abc/"):
        refused = await router.call(key, action="add", service=1, link=spelling, quantity=500)
        assert refused == {"error": "You have active order with this link. Please wait until order being completed."}
        assert refused["error"] == Errors.ACTIVE_ORDER
    assert await router.runtime.ledger.balance("alice") == balance  # no money moved
    assert len(router.panels["echomark"].orders) == 1
    other = await router.call(key, action="add", service=1, link=LINK + "2", quantity=1000)
    assert "order" in other
    # Once the first order ends, the link is free again.
    upstream = (await router.runtime.book.find(first["order"])).upstream_order
    router.panels["echomark"].force(upstream, status="Completed", remains=0)
    router.clock.advance(120)
    await router.call(key, action="status", order=first["order"])
    assert "order" in await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    await check_money(router, {"alice": Decimal("10")}, settled=False)


async def test_another_client_or_the_default_takes_a_second_order_on_a_link(make_router):
    router = await make_router()
    alice = await router.client("alice", balance="10")
    bob = await router.client("bob", balance="10")
    await router.runtime.operators.set_terms(CLI, "bob", same_link="refuse")
    assert "order" in await router.call(bob, action="add", service=1, link=LINK, quantity=1000)
    for _ in range(2):  # alice allows it (the default), and bob's link is bob's
        assert "order" in await router.call(alice, action="add", service=1, link=LINK, quantity=1000)


async def test_a_clients_markup_and_custom_rates_price_its_services_and_its_charges(make_router):
    router = await make_router()
    alice = await router.client("alice", balance="10")
    bob = await router.client("bob", balance="10")
    ops = router.runtime.operators
    assert await rate_of(router, alice) == "1.17"
    await ops.set_terms(CLI, "alice", markup="10")
    assert await rate_of(router, alice) == "0.99" and await rate_of(router, bob) == "1.17"
    await ops.set_rate(CLI, "alice", 1, "1.05")
    assert await rate_of(router, alice) == "1.05"
    await router.call(alice, action="add", service=1, link=LINK, quantity=1000)
    await router.call(bob, action="add", service=1, link=LINK, quantity=1000)
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - Decimal("1.05")
    assert await router.runtime.ledger.balance("bob") == Decimal("10") - Decimal("1.17")
    # Her services reply is built once per catalog and terms: the same bytes, its own ETag.
    first = await router.http.post("/api/v2", data={"key": alice, "action": "services"})
    again = await router.http.post("/api/v2", data={"key": alice, "action": "services"})
    bobs = await router.http.post("/api/v2", data={"key": bob, "action": "services"})
    assert first.content == again.content and first.headers["etag"] == again.headers["etag"] != bobs.headers["etag"]


async def test_a_custom_rate_below_cost_is_refused_when_set_and_never_sold_below_cost(make_router):
    router = await make_router()
    key = await router.client("alice", balance="10")
    await router.call(key, action="services")  # the service lists are read (and cached)
    ops = router.runtime.operators
    try:
        await ops.set_rate(CLI, "alice", 1, "0.80")
        raise AssertionError("a rate below cost was taken")
    except Exception as exc:
        assert "below the cost of service 1 now (0.90 per 1000)" in str(exc)
    await ops.set_rate(CLI, "alice", 1, "0.95")
    # The provider raises its price above the custom rate: she pays the cost, never less.
    panel = router.panels["echomark"]
    panel.catalog[1] = panel.catalog[1].__class__(**{**panel.catalog[1].__dict__, "rate": Decimal("1.00")})
    router.clock.advance(301)
    await router.runtime.listings.refresh("echomark")
    assert await rate_of(router, key) == "1.00"
    await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert await router.runtime.ledger.balance("alice") == Decimal("9.00")
