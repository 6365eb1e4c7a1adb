"""Fair use of a provider's budget: one client's reads never push another client's order away."""

from decimal import Decimal

from support import router_config

LINK = "https://instagram.com/p/abc"


def config(**fair_use: str) -> dict:
    raw = router_config()
    raw["providers"]["echomark"].update(requests_per_minute=20, read_share_percent=50)
    raw["fair_use"] = {"requests": "1000/minute", "refills_per_order": "1000/minute", **fair_use}
    return raw


async def completed_order(router, key) -> int:
    router.panels["echomark"].partial_ratio = router.panels["echomark"].cancel_ratio = 0
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    router.clock.advance(25)
    assert (await router.call(key, action="status", order=reply["order"]))["status"] == "Completed"
    return reply["order"]


async def test_a_client_hammering_refill_cannot_push_another_client_s_add_off_its_first_route(make_router):
    router = await make_router(config(), status_ttl=1)
    hammer = await router.client("mallory", balance="10")
    other = await router.client("alice", balance="10")
    order = await completed_order(router, hammer)
    echomark = router.panels["echomark"]
    replies = [await router.call(hammer, action="refill", order=order) for _ in range(300)]
    # Reads may use half of echomark's 20 calls a minute; the rest stays for orders.
    assert echomark.calls["refill"] + echomark.calls["status"] + echomark.calls["services"] <= 10
    assert {"error": "Refill could not be requested now, please try again later"} in replies
    placed = await router.call(other, action="add", service=1, link=f"{LINK}2", quantity=1000)
    record = await router.runtime.book.find(placed["order"])
    assert [(a.provider, a.outcome) for a in record.attempts] == [("echomark", "placed")]
    assert await router.runtime.ledger.balance("alice") == Decimal("8.83")


async def test_refills_and_cancels_are_limited_per_order_and_requests_per_client(make_router):
    router = await make_router(config(refills_per_order="2/hour", requests="30/minute"), status_ttl=1)
    key = await router.client(balance="10")
    order = await completed_order(router, key)
    replies = [await router.call(key, action="refill", order=order) for _ in range(5)]
    assert replies[0] == {"refill": "1"}
    assert replies[2:] == [{"error": "Too many refill requests for this order, please try again later"}] * 3
    assert router.panels["echomark"].calls["refill"] == 2
    for _ in range(30):
        last = await router.call(key, action="balance")
    assert last == {"error": "Too many requests, please slow down"}
    other = await router.client("bob", balance="1")
    assert (await router.call(other, action="balance"))["balance"] == "1.00"  # per client
    metrics = (await router.http.get("/metrics")).text
    assert 'smm_proxy_requests_total{action="none",outcome="limited"}' in metrics
