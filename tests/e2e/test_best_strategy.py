"""Routing by outcomes: `strategy: best`, stuck orders, and what operators see.

The simulated panels draw each order's outcome from their own seeded
randomness; the router's exploring share comes from a `random.Random` the
test injects. Outcomes are learnt as the background poller reads final
statuses.
"""

import random
from collections import Counter
from decimal import Decimal

from invariants import check_money
from support import metric, router_config

from proxy.vocabulary import PENDING

LINK = "https://instagram.com/p/abc"


def config(**service: object) -> dict:
    raw = router_config()
    raw["services"][0].update({"strategy": "best", **service})
    raw["routing"] = {"explore_percent": 5, "outcome_window": 50}
    return raw


async def make(make_router, raw, seed=7):
    router = await make_router(raw, rng=random.Random(seed), status_ttl=5)
    # echomark (listed first) completes about 60 % of orders, korean about 95 %.
    router.panels["echomark"].cancel_ratio, router.panels["echomark"].partial_ratio = 0.4, 0.0
    router.panels["korean"].cancel_ratio, router.panels["korean"].partial_ratio = 0.05, 0.0
    return router


async def run(router, key, orders, start=0, per_round=10):
    """Place orders in rounds; between rounds time passes and the poller reads what became of them."""
    chosen = Counter()
    for first in range(start, start + orders, per_round):
        for i in range(first, first + per_round):
            reply = await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000)
            chosen[(await router.runtime.book.find(reply["order"])).provider] += 1
        router.clock.advance(30)  # every order of the round is final upstream
        await router.runtime.sync.poll_due()
    return chosen


async def test_best_sends_most_to_the_provider_that_delivers_and_still_probes_the_other(make_router):
    router = await make(make_router, config())
    key = await router.client(balance="1000")
    await run(router, key, 100)  # learning
    chosen = await run(router, key, 200, start=100)
    assert chosen["korean"] >= 170, chosen  # most go where orders complete
    assert 3 <= chosen["echomark"] <= 30, chosen  # and the other still gets a few, to be seen recover
    rows = {row.name: row for row in await router.runtime.operators.providers()}
    korean, echomark = rows["korean"].outcomes["101"], rows["echomark"].outcomes["1"]
    assert korean.completed_pct is not None and korean.completed_pct > 85, korean
    assert echomark.completed_pct is not None and echomark.completed_pct < 75, echomark
    assert korean.mean_completion_seconds == 30
    # Recovery is seen: echomark starts completing everything, and the explored orders win it back.
    router.panels["echomark"].cancel_ratio = 0.0
    router.panels["korean"].cancel_ratio = 0.6
    later = await run(router, key, 300, start=300)
    assert later["echomark"] > later["korean"], later
    await check_money(router, {"alice": Decimal("1000")}, settled=True)


async def test_ordered_and_cheapest_are_unchanged_by_outcomes(make_router):
    router = await make(make_router, config(strategy="ordered"))
    key = await router.client(balance="1000")
    chosen = await run(router, key, 40)
    assert chosen == Counter({"echomark": 40})


async def test_an_order_pending_too_long_is_flagged_stuck_once_and_counts_against_its_route(make_router):
    router = await make(make_router, config(stuck_after=3600))
    key = await router.client(balance="100")
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    order = await router.runtime.book.find(reply["order"])
    panel = router.panels[order.provider]
    panel.force(order.upstream_order, status=PENDING)
    router.clock.advance(1800)
    await router.runtime.sync.poll_due()
    assert not (await router.runtime.book.find(order.id)).attention
    router.clock.advance(1801)
    await router.runtime.sync.poll_due()
    router.clock.advance(10)
    await router.runtime.sync.poll_due()  # read again: flagged once only
    flagged = await router.runtime.book.find(order.id)
    assert flagged.attention.startswith(f"stuck: Pending at {order.provider}")
    assert flagged.id in await router.runtime.book.ids_in("attention")
    kinds = [e.kind for e in await router.runtime.operators.events()]
    assert kinds.count("order.stuck") == 1
    assert await metric(router, "smm_proxy_orders_total", outcome="stuck") == 1
    rates = (await router.runtime.outcomes.of_provider(order.provider))[order.upstream_service]
    assert rates.stuck == 1 and rates.orders == 1
    # When it finally completes, it is not counted a second time.
    panel.force(order.upstream_order, status="Completed")
    router.clock.advance(10)
    await router.runtime.sync.poll_due()
    assert (await router.runtime.book.find(order.id)).status == "Completed"
    rates = (await router.runtime.outcomes.of_provider(order.provider))[order.upstream_service]
    assert rates.orders == 1
