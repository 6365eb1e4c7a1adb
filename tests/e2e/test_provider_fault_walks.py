"""The new routing paths walked the way a fault finds them: a refusal that
refuses the client, one that holds the order, a route skipped for funds,
and `strategy: best`. For N = 1, 2, ... the N-th Redis command or upstream
call fails; the money invariants must hold after every run, and an order is
never bought twice."""

import random
from decimal import Decimal

import pytest
from faults import FaultPlan
from invariants import check_money, check_reply, fresh_prefix
from support import router_config

from e2e.test_fault_walks import MAX_STEPS, WHERE_AND_HOW, settle

LINK = "https://instagram.com/p/abc"
OPENING = {"alice": Decimal("10")}


async def prepared(make_router, raw):
    redis_plan, upstream_plan = FaultPlan(), FaultPlan()
    router = await make_router(
        raw, prefix=fresh_prefix(), redis_plan=redis_plan, upstream_plan=upstream_plan, rng=random.Random(1)
    )
    key = await router.client(balance="10")
    await router.call(key, action="services")
    return router, key, {"redis": redis_plan, "upstream": upstream_plan}


def configs():
    held = router_config()
    held["providers"]["echomark"]["refusals"] = [{"contains": "review", "action": "hold"}]
    best = router_config()
    best["services"][0]["strategy"] = "best"
    return {
        "refuse": (router_config(), "Incorrect request"),
        "hold": (held, "Order under review"),
        "next_route_funds": (router_config(), "Not enough funds on balance"),
        "best": (best, None),
    }


@pytest.mark.parametrize("path", ["refuse", "hold", "next_route_funds", "best"])
@pytest.mark.parametrize("where, mode", WHERE_AND_HOW)
async def test_new_routing_paths_under_faults(make_router, path, where, mode):
    raw, words = configs()[path]
    for n in range(1, MAX_STEPS):
        router, key, plans = await prepared(make_router, raw)
        if words is not None:
            panel = router.panels["echomark"]
            panel.faults.mode, panel.faults.actions, panel.faults.error_message = "error", frozenset({"add"}), words
        plans[where].arm(n, mode)
        reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
        plans[where].disarm()
        await settle(router)
        await check_money(router, OPENING)
        if "error" in reply:
            assert await router.runtime.ledger.balance("alice") == Decimal("10")
        else:
            await check_reply(router, reply, OPENING)
        if not plans[where].fired:
            if path == "refuse":
                assert reply == {"error": "Incorrect request"}
            break
    assert n > 1
