"""Routing an order (proxy/orders/routing.py): the routes it may take, failover
only when a provider provably did not create the order, and what only the
placing task knows recorded with the order. Scripted upstreams, no HTTP server.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from support import new_order
from upstreams import ScriptedPanel, html

from proxy.catalog.catalog import RouteOption, Service
from proxy.orders.routing import NO_ROUTE, Router, RoutingRules
from proxy.orders.states import FAILED, PLACED, SUBMITTED, UNKNOWN
from proxy.policies import RefusalRule
from proxy.providers.refusals import Refusals
from proxy.providers.replies import UpstreamService
from proxy.vocabulary import Errors

CHARGE = Decimal("1.17")  # 1000 units at 1.17 per 1000


def upstream(service: int, rate: str, low: int = 10, high: int = 10_000) -> UpstreamService:
    return UpstreamService(service, f"S{service}", "Default", "Cat", Decimal(rate), low, high, False, True, False, None)


def service(*routes: RouteOption) -> Service:
    return Service(1, "Followers", "Default", "Cat", CHARGE, 10, 10_000, False, True, False, routes)


ECHOMARK = RouteOption("echomark", upstream(1, "0.90"), Decimal("0.90"))
KOREAN = RouteOption("korean", upstream(101, "1250"), Decimal("0.9058"))


@pytest.fixture
def panels() -> dict[str, ScriptedPanel]:
    return {"echomark": ScriptedPanel("echomark"), "korean": ScriptedPanel("korean")}


@pytest.fixture
def tallied() -> list[str]:
    return []


@pytest.fixture
async def router(book, leases, claims, panels, health, tallied):
    providers = {name: panel.client() for name, panel in panels.items()}

    async def tally(name: str) -> None:
        tallied.append(name)

    yield Router(book, leases, claims, providers, health, {"echomark": "USD", "korean": "KRW"}, tally)
    for client in providers.values():
        await client.aclose()


async def no_tally(name: str) -> None:
    pass


async def reserved(book):
    return (await book.reserve(new_order())).order


async def test_the_first_route_that_takes_it_places_it(router, book, alice, panels, claims):
    async def add(fields):
        sent = await book.get("alice", 1)
        assert sent.state == SUBMITTED and sent.provider == "echomark"  # written before it leaves
        return {"order": 5000}

    panels["echomark"].on("add", add)
    placement = await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    order = placement.order
    assert placement.error is None and order.state == PLACED
    assert (order.provider, order.upstream_service, order.upstream_order) == ("echomark", 1, 5000)
    assert (order.cost, order.cost_currency, order.cost_base) == (Decimal("0.90"), "USD", Decimal("0.90"))
    assert [(a.provider, a.outcome) for a in order.attempts] == [("echomark", "placed")]
    assert panels["echomark"].asked("add") == [
        {"key": "sim-key", "action": "add", "service": "1", "link": "https://instagram.com/p/abc", "quantity": "1000"}
    ]
    assert not panels["korean"].requests
    assert await claims.claim(await reserved(book), "echomark", 5000) == order.id


async def test_a_refusal_fails_over_and_only_provider_trouble_benches_the_provider(router, book, alice, panels, health):
    panels["echomark"].on("add", {"error": "Service is disabled"})
    panels["korean"].on("add", {"order": 9000})
    order = (await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)).order
    assert order.state == PLACED and order.provider == "korean" and order.cost_currency == "KRW"
    assert [(a.provider, a.outcome, a.reason) for a in order.attempts] == [
        ("echomark", "refused", "Service is disabled"),
        ("korean", "placed", ""),
    ]
    assert not await health.cooling("echomark")  # this order's trouble there, not the provider's
    panels["echomark"].on("add", {"error": "Not enough funds on balance"})
    await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    assert await health.cooling("echomark")


async def test_a_refusal_no_route_could_overcome_is_told_to_the_client_at_once(router, book, alice, panels, ledger):
    panels["echomark"].on("add", {"error": "Incorrect link"})
    placement = await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    assert placement.order.state == FAILED and placement.error == Errors.INCORRECT_LINK
    assert not panels["korean"].requests  # a retry elsewhere could never succeed
    assert await ledger.balance("alice") == Decimal("10")


async def test_a_refusal_a_rule_holds_waits_for_an_operator(book, leases, claims, panels, health, alice, ledger):
    rules = RoutingRules(refusals=Refusals({"echomark": [RefusalRule(contains="review", action="hold")]}))
    providers = {name: panel.client() for name, panel in panels.items()}
    router = Router(
        book, leases, claims, providers, health, {"echomark": "USD", "korean": "KRW"}, no_tally, rules=rules
    )
    panels["echomark"].on("add", {"error": "Order is under manual review"})
    try:
        placement = await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    finally:
        for client in providers.values():
            await client.aclose()
    assert placement.order.state == UNKNOWN and placement.error is None
    assert placement.order.attention.startswith("held: echomark refused it")
    assert not panels["korean"].requests and not await health.cooling("echomark")
    assert await ledger.balance("alice") == Decimal("10") - CHARGE  # it waits, charged, for a verdict


async def test_a_connection_that_never_opened_fails_over_and_cools_the_provider(router, book, alice, panels, health):
    panels["echomark"].on("add", httpx.ConnectError)
    panels["korean"].on("add", {"order": 9000})
    order = (await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)).order
    assert order.provider == "korean" and order.attempts[0].outcome == "refused"
    assert await health.cooling("echomark")


@pytest.mark.parametrize("reply", [html(), html(502), httpx.ReadTimeout, httpx.Response(200, text='{"order": 5')])
async def test_an_outcome_we_cannot_tell_is_sent_nowhere_else(router, book, alice, panels, health, ledger, reply):
    panels["echomark"].on("add", reply)
    panels["korean"].on("add", {"order": 9000})
    placement = await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    order = placement.order
    assert order.state == UNKNOWN and placement.error is None
    assert [(a.provider, a.outcome) for a in order.attempts] == [("echomark", "unknown")]
    assert not panels["korean"].requests
    assert await health.cooling("echomark")
    assert await ledger.balance("alice") == Decimal("10") - CHARGE  # it may exist: the charge stays


async def test_when_every_route_refuses_the_order_fails_and_is_refunded(router, book, alice, panels, ledger, health):
    panels["echomark"].on("add", {"error": "Service is disabled"})
    panels["korean"].on("add", {"error": "Something about panel-x.example"})
    placement = await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    assert placement.order.state == FAILED and placement.order.refunded == CHARGE
    assert placement.error == NO_ROUTE  # the last refusal is no panel message we pass on
    assert await ledger.balance("alice") == Decimal("10")
    await health.succeed("korean")  # words no rule knows ejected it; a probe brings it back
    panels["korean"].on("add", {"error": "incorrect link."})
    placement = await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)
    assert placement.error == Errors.INCORRECT_LINK  # the client's input: told, in our spelling


async def test_routes_that_cannot_take_the_order_are_not_tried(router, book, alice, health):
    order = await reserved(book)
    small = RouteOption("echomark", upstream(1, "0.90", high=500), Decimal("0.90"))
    dear = RouteOption("korean", upstream(101, "2000"), Decimal("1.45"))
    gone = RouteOption("elsewhere", upstream(7, "0.10"), Decimal("0.10"))
    assert await router.candidates(service(small, dear, gone), order, 1000) == []
    assert await router.candidates(service(ECHOMARK, KOREAN), order, 1000) == [ECHOMARK, KOREAN]
    await health.fail("echomark", "down")
    assert await router.candidates(service(ECHOMARK, KOREAN), order, 1000) == [KOREAN]
    placement = await router.place(order, service(small, dear, gone), 1000)
    assert placement.order.state == FAILED and placement.error == NO_ROUTE and not placement.order.attempts


async def test_an_upstream_id_another_order_owns_is_not_believed(router, book, alice, panels, tallied):
    panels["echomark"].on("add", {"order": 5000})
    first = (await router.place(await reserved(book), service(ECHOMARK), 1000)).order
    second = (await router.place(await reserved(book), service(ECHOMARK), 1000)).order
    assert first.state == PLACED and first.upstream_order == 5000
    assert second.state == UNKNOWN and second.upstream_order == 0
    assert second.attention == f"echomark answered with upstream order 5000, which order {first.id} owns"
    assert tallied == ["orders_claimed_twice"]


async def test_an_order_recovery_took_over_is_not_sent(router, book, alice, panels, keys):
    order = await reserved(book)
    await book.redis.delete(keys.lease("alice", order.id))
    await book.recover()  # the lease lapsed: recovery refunded it
    panels["echomark"].on("add", {"order": 5000})
    placement = await router.place(order, service(ECHOMARK), 1000)
    assert placement.order.state == FAILED and not panels["echomark"].requests


async def test_orders_handed_over_at_shutdown_are_settled_at_once(router, book, alice, panels, ledger):
    """Their tasks stopped, the instance gives up the leases and takes the orders
    over itself: one never sent is refunded, one that may exist upstream waits
    for an operator as `unknown`; an order another instance holds is left to it."""
    never_sent = await reserved(book)
    maybe_sent = await book.apply(await reserved(book), "submit", {"provider": "echomark"})
    elsewhere = await reserved(book)
    await book.redis.set(book.keys.lease("alice", elsewhere.id), "another instance", px=10_000)
    settled = await router.hand_over([never_sent, maybe_sent, elsewhere], timeout=5)
    assert {o.id: o.state for o in settled} == {never_sent.id: FAILED, maybe_sent.id: UNKNOWN}
    assert (await book.get("alice", never_sent.id)).refunded == CHARGE
    assert (await book.get("alice", elsewhere.id)).state == "reserved"  # still its holder's
    assert await ledger.balance("alice") == Decimal("10") - 2 * CHARGE


async def test_a_refusal_whose_words_hold_a_lone_surrogate_fails_over_all_the_same(router, book, alice, panels):
    """A provider's JSON may escape a lone surrogate ("\\ud800"): its refusal's
    reason is kept with the order's attempts, which Redis must still take."""
    panels["echomark"].on("add", httpx.Response(200, content=b'{"error": "Incorrect link \\ud800"}'))
    panels["korean"].on("add", {"order": 9000})
    order = (await router.place(await reserved(book), service(ECHOMARK, KOREAN), 1000)).order
    assert order.state == PLACED and order.provider == "korean"
    assert [(a.provider, a.outcome) for a in order.attempts] == [("echomark", "refused"), ("korean", "placed")]
    assert order.attempts[0].reason.startswith("Incorrect link")
    assert (await book.get("alice", order.id)).attempts == order.attempts
