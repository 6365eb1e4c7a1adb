"""The money paths issue 12 added, walked the way a fault finds them.

As in tests/e2e/test_fault_walks.py: for N = 1, 2, ... the N-th Redis command (an
error before it is sent, or a reply lost after it applied) or upstream call
(refused, lost, an HTML page) along the path fails, until the path completes
without reaching N. After each run the world settles and the money
invariants must hold.

- closing an order: an operator's total refund, applied once;
- stopping an unlimited subscription that used its hold: the read that
  finds it, the cancel upstream, the record of it; the provider bills no more
  than the hold, and the order settles to what it billed;
- a shutdown handing over an order still being placed: its lease given up
  and recovery run at once, whatever fails on the way.
"""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import pytest
from faults import FaultPlan, walk_ready
from invariants import check_money
from support import expire_leases, router_config

from proxy.orders.states import CLOSED, FAILED, PLACED, UNKNOWN
from proxy.vocabulary import CANCELED, IN_PROGRESS

LINK = "https://instagram.com/p/abc"
OPENING = {"alice": Decimal("10")}
REDIS = [("redis", "error"), ("redis", "lost")]
EVERYWHERE = [*REDIS, ("upstream", "refused"), ("upstream", "lost"), ("upstream", "garbage")]
MAX_STEPS = 200


async def prepared(make_router, raw=None, **settings):
    redis_plan, upstream_plan = FaultPlan(), FaultPlan()
    router, key = await walk_ready(make_router, raw, redis_plan=redis_plan, upstream_plan=upstream_plan, **settings)
    return router, key, {"redis": redis_plan, "upstream": upstream_plan}


async def settle(router) -> None:
    await router.runtime.actions.aclose()
    await expire_leases(router)
    await router.runtime.sync.recover()


def walk():
    for n in range(1, MAX_STEPS):
        yield n
    raise AssertionError("the path never completed")


@pytest.mark.parametrize("where, mode", REDIS)
async def test_close(make_router, where, mode):
    for n in walk():
        router, key, plans = await prepared(make_router, status_ttl=1)
        order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
        upstream = (await router.runtime.book.get("alice", order_id)).upstream_order
        router.panels["echomark"].force(upstream, status=IN_PROGRESS)
        plans[where].arm(n, mode)
        try:
            await router.runtime.operators.close("cli", order_id, "0.5", "half of it")
        except Exception:
            pass
        plans[where].disarm()
        after = await router.runtime.book.get("alice", order_id)
        if after.state != CLOSED:  # the operator sees it failed, and closes it again
            await router.runtime.operators.close("cli", order_id, "0.5", "half of it")
            after = await router.runtime.book.get("alice", order_id)
        assert after.state == CLOSED and after.refunded == Decimal("0.5")
        refunds = [e for e in await router.runtime.ledger.entries("alice") if e.kind == "refund"]
        assert [e.amount for e in refunds] == [Decimal("0.5")]  # once
        await settle(router)
        await check_money(router, OPENING)
        if not plans[where].fired:
            break
    assert n > 3  # the path was walked


@pytest.mark.parametrize("where, mode", EVERYWHERE)
async def test_unlimited_subscription_stop(make_router, where, mode):
    raw = router_config(
        imports=[{"provider": "echomark", "id_offset": 1000}], settlement={"subscription_hold_posts": 2}
    )
    for n in walk():
        router, key, plans = await prepared(make_router, raw, status_ttl=1)
        panel = router.panels["echomark"]
        panel.catalog[10] = dataclasses.replace(panel.catalog[10], cancel=True)
        reply = await router.call(key, action="add", service=1010, username="nasa", min=100, max=100)
        order_id = reply["order"]
        router.clock.advance(20)  # active, one post delivered (0.015 of the 0.03 held)
        await router.call(key, action="status", order=order_id)
        router.clock.advance(10)  # a second post: no room for a third
        plans[where].arm(n, mode)
        try:
            await router.call(key, action="status", order=order_id)
        except Exception:
            pass
        plans[where].disarm()
        await settle(router)
        upstream = panel.orders[(await router.runtime.book.get("alice", order_id)).upstream_order]
        for _ in range(5):  # clean reads finish the job, before the provider's next post
            router.clock.advance(1)
            await router.call(key, action="status", order=order_id)
        after = await router.runtime.book.get("alice", order_id)
        assert upstream.status == CANCELED and upstream.charge == Decimal("0.03")  # the hold, no more
        assert after.state == PLACED and after.status == CANCELED
        assert after.net_charge == after.charge  # the client pays its hold: what the provider billed, marked up
        await check_money(router, OPENING)
        if not plans[where].fired:
            break
    assert n > 1  # the path was walked


@pytest.mark.parametrize("where, mode", REDIS)
async def test_shutdown_hand_over(make_router, where, mode):
    for n in walk():
        router, key, plans = await prepared(make_router)
        router.panels["echomark"].faults.latency = 5  # sent, and no reply before the shutdown
        adding = asyncio.create_task(router.call(key, action="add", service=1, link=LINK, quantity=1000))
        for _ in range(100):
            await asyncio.sleep(0.01)
            order = await router.runtime.book.get("alice", 1)
            if order is not None and order.state == "submitted":
                break
        actions = router.runtime.actions
        actions.stop_waiting()  # SIGTERM: the add answers with its order's ID at once
        assert await adding == {"order": 1}
        assert (await router.call(key, action="add", service=1, link=LINK + "x", quantity=1000)) == {
            "error": "Service temporarily unavailable, please try again later"
        }
        plans[where].arm(n, mode)
        await actions.aclose(timeout=0.4)  # half waiting, then handed over
        plans[where].disarm()
        await settle(router)
        order = await router.runtime.book.get("alice", 1)
        assert order.state in (UNKNOWN, PLACED, FAILED)
        await check_money(router, OPENING)
        if not plans[where].fired:
            assert order.state == UNKNOWN  # sent, no reply: for an operator
            break
    assert n > 3  # the path was walked
