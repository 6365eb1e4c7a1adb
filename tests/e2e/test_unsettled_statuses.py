"""Every order reaches an end: a status no rule can settle goes to an operator, and is read slowly.

Issue 12, case 3: these statuses were read forever, with no refund and no
operator note: Partial with remains "Unknown" (a quirk real panels send),
Partial with no remains, a status word outside the vocabulary ("Canceled by
admin"), and a one-order read answered with a top-level {"error": ...}. After
`settlement.unsettled_reads` such reads in a row the order goes to the
attention queue with the provider's reply (redacted, bounded), and from then
on it is read at the slow rate (`settlement.slow_read_minutes`), not at the
status TTL: if the provider comes back with a status a rule settles, the
order settles.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from invariants import check_money
from support import router_config

from proxy.vocabulary import IN_PROGRESS, PARTIAL

LINK = "https://instagram.com/p/abc"
READS = 3


def config() -> dict[str, object]:
    return router_config(settlement={"unsettled_reads": READS, "slow_read_minutes": 10})


class StatusAnswers:
    """Between the router and its panels: each `status` reply as `rewrite`
    makes it of what the panel answered (None: as the panel answered)."""

    def __init__(self) -> None:
        self.rewrite: Callable[[Any], Any] | None = None

    def transport(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return _Rewriting(inner, self)


class _Rewriting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, answers: StatusAnswers) -> None:
        self.inner, self.answers = inner, answers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        rewrite = self.answers.rewrite
        body = (await request.aread()).decode()
        fields = dict(json.loads(body)) if body.startswith("{") else dict(parse_qsl(body))
        if rewrite is None or fields.get("action") != "status":
            return response
        payload = json.loads(await response.aread())
        return httpx.Response(response.status_code, json=rewrite(payload))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def routed(make_router):
    """A router whose panels' status replies a test may rewrite, and how."""
    answers = StatusAnswers()
    router = await make_router(config(), status_ttl=1, upstream=answers.transport)
    return router, answers


def each_item(change: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    def rewrite(reply: dict[str, Any]) -> Any:
        if "status" in reply:  # the single shape
            return change(reply)
        return {k: change(v) if "status" in v else v for k, v in reply.items()}

    return rewrite


CASES = {
    "partial, remains Unknown": each_item(lambda item: {**item, "status": "Partial", "remains": "Unknown"}),
    "partial, no remains": each_item(
        lambda item: {k: v for k, v in {**item, "status": "Partial"}.items() if k != "remains"}
    ),
    "a status word we do not know": each_item(lambda item: {**item, "status": "Canceled by admin"}),
    "a top-level error for the one order": lambda reply: {"error": "Order not found (key sim-key)"},
}
SAID = {
    "partial, remains Unknown": "Partial without usable remains",
    "partial, no remains": "Partial without usable remains",
    "a status word we do not know": "a status we do not know ('Canceled by admin')",
    "a top-level error for the one order": "nothing usable on this order",
}


@pytest.mark.parametrize("case", CASES)
async def test_an_unsettleable_status_goes_to_an_operator_with_the_reply(make_router, case):
    router, answers = await routed(make_router)
    key = await router.client(balance="10")
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    panel = router.panels["echomark"]
    upstream = (await router.runtime.book.get("alice", order_id)).upstream_order
    panel.force(upstream, status=IN_PROGRESS)  # it stays in progress until the provider says otherwise
    answers.rewrite = CASES[case]
    for _ in range(READS):
        router.clock.advance(2)
        reply = await router.call(key, action="status", order=order_id)
        assert reply["status"] in ("Pending", IN_PROGRESS)  # the status we had: nothing settled
    order = await router.runtime.book.get("alice", order_id)
    assert order.misses == READS and order.refunded == 0
    assert order.attention.startswith(f"{READS} status reads in a row could not be settled ({SAID[case]})")
    assert "the provider said: " in order.attention and len(order.attention) < 500
    assert "sim-key" not in order.attention  # the provider's key, echoed back, never shown
    assert await router.runtime.book.ids_in("attention") == [order_id]
    told = [e for e in await router.runtime.operators.events() if e.kind == "order.attention"]
    assert [e.subject for e in told] == [str(order_id)]  # and operators are told, once
    assert not [e for e in await router.runtime.operators.events() if e.kind == "order.stuck"]

    # From now on it is read at the slow rate: not every TTL.
    calls = panel.calls["status"]
    for _ in range(5):
        router.clock.advance(60)
        await router.call(key, action="status", order=order_id)
        await router.runtime.sync.poll_due()
        await router.runtime.sync.poll_open_orders()
    assert panel.calls["status"] == calls
    router.clock.advance(600)
    await router.runtime.sync.poll_due()
    assert panel.calls["status"] == calls + 1

    # A provider that comes back with a status a rule settles: it settles.
    answers.rewrite = None
    panel.force(upstream, status=PARTIAL, remains=500)
    router.clock.advance(601)
    await router.runtime.sync.poll_due()
    order = await router.runtime.book.get("alice", order_id)
    assert order.status == PARTIAL and order.refunded == Decimal("0.585") and order.misses == 0
    await check_money(router, {"alice": Decimal("10")})


async def test_an_operator_who_saw_it_is_not_asked_again_for_the_same_reply(make_router):
    router, answers = await routed(make_router)
    key = await router.client(balance="10")
    order_id = (await router.call(key, action="add", service=1, link=LINK, quantity=1000))["order"]
    answers.rewrite = CASES["a status word we do not know"]
    for _ in range(READS):
        router.clock.advance(2)
        await router.call(key, action="status", order=order_id)
    await router.runtime.operators.acknowledge("cli", order_id)
    panel = router.panels["echomark"]
    for _ in range(3):
        router.clock.advance(601)
        calls = panel.calls["status"]
        await router.runtime.sync.poll_due()
        assert panel.calls["status"] == calls + 1
    assert (await router.runtime.book.get("alice", order_id)).attention == ""
    answers.rewrite = each_item(lambda item: {**item, "status": "Deleted"})
    router.clock.advance(601)
    await router.runtime.sync.poll_due()
    assert "Deleted" in (await router.runtime.book.get("alice", order_id)).attention  # something new


async def test_a_top_level_error_for_many_orders_is_still_the_whole_call(make_router):
    router, answers = await routed(make_router)
    key = await router.client(balance="10")
    ids = [(await router.call(key, action="add", service=1, link=f"{LINK}{i}", quantity=1000))["order"] for i in (1, 2)]
    answers.rewrite = lambda reply: {"error": "Incorrect request"}
    for _ in range(READS + 1):
        router.clock.advance(2)
        await router.call(key, action="status", orders=",".join(map(str, ids)))
    orders = [await router.runtime.book.get("alice", i) for i in ids]
    assert all(o.misses == 0 and o.attention == "" for o in orders)  # no news of these orders, not bad news
