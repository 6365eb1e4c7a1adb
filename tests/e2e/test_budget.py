"""A provider's request budget, seen from the orders: a spent budget fails over."""

from decimal import Decimal

from support import router_config

LINK = "https://instagram.com/p/abc"


async def test_a_spent_budget_fails_over_without_benching_the_provider(make_router):
    raw = router_config()
    raw["providers"]["echomark"]["requests_per_minute"] = 3  # one goes to the service list
    router = await make_router(raw, status_ttl=1)
    key = await router.client(balance="10")
    replies = [await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000) for i in range(3)]
    orders = [await router.runtime.book.get("alice", r["order"]) for r in replies]
    assert [o.provider for o in orders] == ["echomark", "echomark", "korean"]
    assert router.panels["echomark"].calls["add"] == 2
    assert not await router.runtime.health.cooling("echomark")
    # Status reads over budget keep the cached status and bench nothing either.
    router.clock.advance(2)
    status = await router.call(key, action="status", order=1)
    assert status["status"] == "Pending" and router.panels["echomark"].calls["status"] == 0
    assert not await router.runtime.health.cooling("echomark", "reads")
    router.clock.advance(60)  # a new minute
    assert "order" in await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    assert router.panels["echomark"].calls["add"] == 3
    assert await router.runtime.ledger.balance("alice") == Decimal("10") - 4 * Decimal("1.17")
