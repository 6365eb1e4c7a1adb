"""Every path that moves money, walked the way a fault finds it.

For N = 1, 2, ... the N-th Redis command or upstream call along the path
fails (an error before it is sent, or a reply lost after it applied; a
refused connection, a lost reply or an HTML page from upstream), until the
path completes without reaching N. After each run the world settles (tasks
finish, dead tasks' leases lapse, recovery runs) and the money invariants
must hold: the client either got an order ID whose order exists (placed,
unknown for an operator, or failed and refunded in full), or an error with
no money moved and nothing bought upstream.
"""

from decimal import Decimal

import pytest
from faults import FaultPlan, walk_ready
from invariants import check_money, check_reply
from support import expire_leases

from proxy.errors import ClaimConflict, StateChanged
from proxy.orders.states import FAILED, PLACED, UNKNOWN
from proxy.vocabulary import CANCELED, PARTIAL

LINK = "https://instagram.com/p/abc"
OPENING = {"alice": Decimal("10")}
WHERE_AND_HOW = [
    ("redis", "error"),
    ("redis", "lost"),
    ("upstream", "refused"),
    ("upstream", "lost"),
    ("upstream", "garbage"),
]
MAX_STEPS = 200


async def prepared(make_router, **settings):
    redis_plan, upstream_plan = FaultPlan(), FaultPlan()
    router, key = await walk_ready(make_router, redis_plan=redis_plan, upstream_plan=upstream_plan, **settings)
    return router, key, {"redis": redis_plan, "upstream": upstream_plan}


async def settle(router) -> None:
    """Let the dust settle: tasks finish, the leases of dead ones lapse, recovery runs."""
    await router.runtime.actions.aclose()
    await expire_leases(router)
    await router.runtime.sync.recover()


async def place(router, key):
    reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
    return await router.runtime.book.find(reply["order"])


def walk():
    """N = 1, 2, ... (the caller stops when the fault no longer fired)."""
    for n in range(1, MAX_STEPS):
        yield n
    raise AssertionError("the path never completed")


@pytest.mark.parametrize("where, mode", WHERE_AND_HOW)
async def test_add(make_router, where, mode):
    outcomes = set()
    for n in walk():
        router, key, plans = await prepared(make_router)
        plans[where].arm(n, mode)
        reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
        plans[where].disarm()
        await settle(router)
        await check_money(router, OPENING)
        await check_reply(router, reply, OPENING)
        if "order" in reply:
            outcomes.add((await router.runtime.book.find(reply["order"])).state)
        else:
            outcomes.add(reply["error"])
        if not plans[where].fired:
            break
    assert n > 1 and PLACED in outcomes


@pytest.mark.parametrize("where, mode", WHERE_AND_HOW)
async def test_add_when_every_route_refuses(make_router, where, mode):
    for n in walk():
        router, key, plans = await prepared(make_router)
        for panel in router.panels.values():
            panel.faults.mode, panel.faults.actions = "error", frozenset({"add"})
            panel.faults.error_message = "Incorrect link"
        plans[where].arm(n, mode)
        reply = await router.call(key, action="add", service=1, link=LINK, quantity=1000)
        plans[where].disarm()
        await settle(router)
        await check_money(router, OPENING)
        await check_reply(router, reply, OPENING)
        assert await router.runtime.ledger.balance("alice") == Decimal("10") or "order" in reply
        if not plans[where].fired:
            assert reply == {"error": "Incorrect link"}
            break


@pytest.mark.parametrize("where, mode", WHERE_AND_HOW)
async def test_status_refresh_with_refund(make_router, where, mode):
    for n in walk():
        router, key, plans = await prepared(make_router, status_ttl=1)
        order = await place(router, key)
        router.panels["echomark"].force(order.upstream_order, status=PARTIAL, remains=157)
        router.clock.advance(2)
        plans[where].arm(n, mode)
        reply = await router.call(key, action="status", order=order.id)
        plans[where].disarm()
        assert set(reply) in ({"error"}, {"charge", "start_count", "status", "remains", "currency"})
        await settle(router)
        router.clock.advance(2)
        await router.call(key, action="status", order=order.id)  # a clean read finishes the job
        after = await router.runtime.book.get("alice", order.id)
        assert (after.status, after.refunded) == (PARTIAL, Decimal("0.18369"))
        await check_money(router, OPENING)
        if not plans[where].fired:
            break


@pytest.mark.parametrize("where, mode", WHERE_AND_HOW)
async def test_cancel(make_router, where, mode):
    for n in walk():
        router, key, plans = await prepared(make_router, status_ttl=1)
        order = await place(router, key)
        plans[where].arm(n, mode)
        reply = await router.call(key, action="cancel", orders=str(order.id))
        plans[where].disarm()
        assert reply in (
            [{"order": order.id, "cancel": 1}],
            [{"order": order.id, "cancel": {"error": "Cannot cancel"}}],
        ) or set(reply) == {"error"}
        await settle(router)
        router.clock.advance(2)
        await router.call(key, action="status", order=order.id)
        after = await router.runtime.book.get("alice", order.id)
        upstream = router.panels["echomark"].orders[order.upstream_order]
        if upstream.status == CANCELED:
            assert (after.status, after.refunded) == (CANCELED, after.charge)
        else:
            assert after.refunded == 0
        await check_money(router, OPENING)
        if not plans[where].fired:
            assert after.status == CANCELED
            break


@pytest.mark.parametrize("verdict", ["failed", "placed"])
@pytest.mark.parametrize("where", ["redis"])
@pytest.mark.parametrize("mode", ["error", "lost"])
async def test_operator_resolve(make_router, where, mode, verdict):
    for n in walk():
        router, key, plans = await prepared(make_router)
        plans["upstream"].arm(1, "lost")  # the panel creates the order; its reply is lost
        unknown = await place(router, key)
        plans["upstream"].disarm()
        assert unknown.state == UNKNOWN
        upstream_order = next(iter(router.panels["echomark"].orders))
        book = router.runtime.book
        options = {"failed": True} if verdict == "failed" else {"upstream_order": upstream_order}
        plans[where].arm(n, mode)
        try:
            await router.runtime.verdicts.resolve(unknown.id, **options)
        except (OSError, ConnectionError, TimeoutError, StateChanged, ClaimConflict, Exception):
            pass
        plans[where].disarm()
        after = await book.get("alice", unknown.id)
        if after.state == UNKNOWN:  # the operator sees the failure and tries again
            after = await router.runtime.verdicts.resolve(unknown.id, **options)
        assert after.state == (FAILED if verdict == "failed" else PLACED)
        if verdict == "failed":
            assert after.refunded == after.charge
            router.panels["echomark"].force(upstream_order, status=CANCELED)  # the operator cancels it upstream
        else:
            assert after.upstream_order == upstream_order
        await settle(router)
        await check_money(router, OPENING)
        if not plans[where].fired:
            break


@pytest.mark.parametrize("mode", ["error", "lost"])
async def test_an_operators_adjustment(make_router, mode):
    """Over the admin API: whatever fails, the money moves at most once, never
    below zero, never without its audit entry; the same request again (its
    reference) finishes the job exactly once, and the audit chain holds."""
    for n in walk():
        router, _, plans = await prepared(make_router)
        ops = router.runtime.operators
        auth = {"Authorization": f"Bearer {(await ops.add_admin('cli', 'desk', 'operator')).token}"}
        body = {"amount": "-4", "reason": "a top-up typed twice", "ref": "fix-1"}
        plans["redis"].arm(n, mode)
        reply = await router.http.post("/admin/clients/alice/adjust", json=body, headers=auth)
        plans["redis"].disarm()
        assert reply.status_code in (200, 503), reply.text
        adjusts = [e for e in await router.runtime.ledger.entries("alice") if e.kind == "adjust"]
        audited = [e for e in await ops.audit_log() if e.action == "client.adjust"]
        assert len(adjusts) <= 1 and (not adjusts or audited), (n, adjusts, audited)
        if reply.status_code == 200:
            assert len(adjusts) == 1 and reply.json()["balance"] == "6.00"
        again = await router.http.post("/admin/clients/alice/adjust", json=body, headers=auth)
        assert again.status_code == 200 and again.json()["balance"] == "6.00"
        [adjust] = [e for e in await router.runtime.ledger.entries("alice") if e.kind == "adjust"]
        assert (adjust.amount, adjust.actor, adjust.memo) == (Decimal("-4"), "admin:desk", "a top-up typed twice")
        await check_money(router, {"alice": Decimal("6")})
        assert (await ops.verify_audit()).intact
        if not plans["redis"].fired:
            break
    assert n > 3
