"""Final is final, but checked: a provider that changes a final status is noticed.

Issue 12, case 8: an order that turned Completed was never read again, so a
provider that later reported it Canceled went unnoticed. For
`settlement.recheck_final_hours` after it turned final, an order is re-read
at the slow rate (`settlement.slow_read_minutes`); a changed answer sends it
to an operator with both statuses. No money moves by itself: the operator
decides (refund, or close).
"""

from __future__ import annotations

from decimal import Decimal

from invariants import check_money
from support import router_config

from proxy.orders.states import CLOSED
from proxy.vocabulary import CANCELED, COMPLETED

LINK = "https://instagram.com/p/abc"
SLOW = 600.0


def config(hours: float = 48) -> dict[str, object]:
    return router_config(settlement={"slow_read_minutes": SLOW / 60, "recheck_final_hours": hours})


async def completed(router, key):
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    router.clock.advance(25)
    assert (await router.call(key, action="status", order=order_id))["status"] == COMPLETED
    return await router.runtime.book.get("alice", order_id)


async def test_a_provider_that_turns_completed_into_canceled_goes_to_an_operator(make_router):
    router = await make_router(config(), status_ttl=1)
    key = await router.client(balance="10")
    order = await completed(router, key)
    panel = router.panels["echomark"]
    panel.revise(order.upstream_order, status=CANCELED)  # the provider changes its mind
    router.clock.advance(SLOW + 1)
    await router.runtime.sync.poll_due()
    after = await router.runtime.book.get("alice", order.id)
    assert after.attention.startswith(
        "the provider changed its answer after the order was final: Completed when it was settled, Canceled now; "
        "no money was moved | the provider said: {"
    )
    assert after.status == COMPLETED and after.refunded == 0  # nothing moved by itself
    assert await router.runtime.book.ids_in("attention") == [order.id]
    (told,) = [e for e in await router.runtime.operators.events() if e.kind == "order.attention"]
    assert told.subject == str(order.id) and "changed its answer" in told.message
    # Its route's outcomes count the order once, as it ended when it turned final.
    for _ in range(3):
        router.clock.advance(SLOW + 1)
        await router.runtime.sync.poll_due()
    rates = (await router.runtime.outcomes.of_provider("echomark"))[order.upstream_service]
    assert (round(rates.orders, 6), round(rates.completed, 6), rates.canceled) == (1, 1, 0)
    assert (await router.call(key, action="status", order=order.id))["status"] == COMPLETED
    await router.runtime.operators.close("cli", order.id, "1.17", "the provider refunded us")
    closed = await router.runtime.book.get("alice", order.id)
    assert closed.state == CLOSED and closed.attention == ""
    assert (await router.call(key, action="status", order=order.id))["status"] == CANCELED
    calls = panel.calls["status"]
    router.clock.advance(10 * SLOW)
    await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls  # closed: never read again
    await check_money(router, {"alice": Decimal("10")})


async def test_final_orders_are_re_read_slowly_and_only_for_the_window(make_router):
    router = await make_router(config(hours=1), status_ttl=1)
    key = await router.client(balance="10")
    order = await completed(router, key)
    panel = router.panels["echomark"]
    calls = panel.calls["status"]
    for _ in range(5):  # a client's reads of a final order never go upstream
        router.clock.advance(60)
        await router.call(key, action="status", order=order.id)
        await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls
    router.clock.advance(SLOW)
    await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls + 1  # the re-check
    router.clock.advance(SLOW)
    await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls + 2  # the next, within the hour
    for _ in range(6):  # past the hour
        router.clock.advance(SLOW)
        await router.runtime.sync.poll_due()
    rechecks = panel.calls["status"] - calls
    assert 5 <= rechecks <= 6  # one every ten minutes, for an hour
    for _ in range(3):
        router.clock.advance(SLOW)
        await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls + rechecks  # the hour is over: no more
    assert await router.runtime.redis.zcard(router.runtime.keys.due("echomark")) == 0
    after = await router.runtime.book.get("alice", order.id)
    assert after.attention == "" and after.checked_at > 0


async def test_no_rechecks_when_switched_off(make_router):
    router = await make_router(config(hours=0), status_ttl=1)
    key = await router.client(balance="10")
    order = await completed(router, key)
    panel = router.panels["echomark"]
    panel.revise(order.upstream_order, status=CANCELED)
    calls = panel.calls["status"]
    router.clock.advance(SLOW + 1)
    await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls
    assert await router.runtime.redis.zcard(router.runtime.keys.due("echomark")) == 0
