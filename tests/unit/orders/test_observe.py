"""What a status says about its route (proxy/orders/observe.py): a final
outcome goes to the route's rates, an order Pending too long is flagged
stuck once and counts against its route, and an order that newly needs an
operator is told. Driven through the status refresher's hook, as it runs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support import new_order

from proxy.orders.observe import OrderWatch
from proxy.orders.states import ACCEPT, SUBMIT
from proxy.orders.statuses import StatusRefresher
from proxy.providers.outcomes import Outcomes
from proxy.providers.replies import UpstreamStatus
from proxy.vocabulary import CANCELED, COMPLETED, PARTIAL, PENDING


@pytest.fixture
def told() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def tallied() -> list[str]:
    return []


@pytest.fixture
def outcomes(redis_client, keys) -> Outcomes:
    return Outcomes(redis_client, keys, window=100)


@pytest.fixture
async def refresher(book, due, health, clock, outcomes, told, tallied):
    async def emit(kind: str, subject: str, message: str, **detail: object) -> None:
        told.append((kind, subject))

    async def tally(name: str) -> None:
        tallied.append(name)

    watch = OrderWatch(
        outcomes, book, stuck_after=3600, stuck_after_by_service={2: 60}, tally=tally, emit=emit, clock=clock
    )
    refresher = StatusRefresher(
        book, due, {}, health, 60, clock, currencies={"echomark": "USD"}, tally=tally, on_status=watch
    )
    yield refresher
    await refresher.aclose()


async def placed(book, clock, upstream_order: int, service: int = 1):
    order = (await book.reserve(new_order(link=f"https://x.test/{upstream_order}", service=service))).order
    fields = {"provider": "echomark", "upstream_service": 7, "cost": 9_000_000, "cost_currency": "USD"}
    order = await book.apply(order, SUBMIT, fields)
    return await book.apply(order, ACCEPT, {"upstream_order": upstream_order, "status_at": f"{clock():.3f}"})


def status(name: str, remains: int = 0) -> UpstreamStatus:
    return UpstreamStatus(name, Decimal("0.9"), 0, remains, "USD", name)


async def test_final_outcomes_go_to_their_route(refresher, book, alice, clock, outcomes):
    done = await placed(book, clock, 5000)
    clock.advance(120)
    await refresher.apply(done, status(COMPLETED))
    await refresher.apply(await placed(book, clock, 5001), status(PARTIAL, remains=250))
    await refresher.apply(await placed(book, clock, 5002), status(CANCELED, remains=1000))
    rates = (await outcomes.of_provider("echomark"))[7]
    assert round(rates.orders) == 3 and round(rates.completed) == 1 and round(rates.partial) == 1
    assert rates.share(rates.delivered) == pytest.approx((1 + 0.75 + 0) / 3, rel=0.02)
    assert rates.mean_seconds == pytest.approx(120)  # only a Completed order's time counts


async def test_an_order_pending_too_long_is_flagged_once(refresher, book, alice, clock, outcomes, told, tallied):
    order = await placed(book, clock, 5000)
    order = await refresher.apply(order, status(PENDING, remains=1000))
    clock.advance(3599)
    order = await refresher.apply(order, status(PENDING, remains=1000))
    assert not order.attention and told == []
    clock.advance(1)
    order = await refresher.apply(order, status(PENDING, remains=1000))
    order = await refresher.apply(order, status(PENDING, remains=1000))
    flagged = await book.get("alice", order.id)
    assert flagged.attention == "stuck: Pending at echomark for 1.0 h"
    assert ("order.stuck", str(order.id)) in told and len([t for t in told if t[0] == "order.stuck"]) == 1
    assert tallied.count("orders_stuck") == 1
    assert (await outcomes.of_provider("echomark"))[7].stuck == 1
    await refresher.apply(flagged, status(COMPLETED))
    assert round((await outcomes.of_provider("echomark"))[7].orders, 6) == 1  # its late outcome is not counted again


async def test_a_service_may_have_its_own_threshold(refresher, book, alice, clock, told):
    order = await placed(book, clock, 5000, service=2)
    clock.advance(61)
    await refresher.apply(order, status(PENDING, remains=1000))
    assert told == [("order.stuck", str(order.id))]


async def test_an_order_that_newly_needs_an_operator_is_told(refresher, book, alice, clock, told):
    order = await placed(book, clock, 5000)
    odd = UpstreamStatus(PARTIAL, Decimal("2.50"), 3, 600, "USD", "Partial")  # billed far above its cost
    order = await refresher.apply(order, odd)
    assert "the provider charged 2.50 USD" in order.attention
    assert told == [("order.attention", str(order.id))]


async def test_an_order_whose_reads_cannot_be_settled_is_not_stuck(refresher, book, alice, clock, outcomes, told):
    """Its Pending is the status it kept, not one the provider gave: the
    refresher's note owns its attention, and a stuck note never replaces it."""
    order = await placed(book, clock, 5000)
    clock.advance(7200)
    unknown_word = UpstreamStatus(None, None, None, None, None, "Canceled by admin")
    for _ in range(refresher.unsettled_reads):
        order = await refresher.apply(order, unknown_word)
        assert order.status == PENDING and order.misses
    assert order.attention.startswith("5 status reads in a row could not be settled")
    assert told == [("order.attention", str(order.id))]  # told once, and not as stuck
    assert 7 not in await outcomes.of_provider("echomark")
    order = await refresher.apply(order, status(PENDING, remains=1000))  # readable again, still Pending
    assert ("order.stuck", str(order.id)) in told
    assert order.attention.startswith("5 status reads in a row could not be settled")  # the note it had


async def test_an_outcome_counts_once_however_often_the_order_is_read_after(
    refresher, book, alice, clock, outcomes, told
):
    order = await placed(book, clock, 5000)
    done = await refresher.apply(order, status(COMPLETED))
    assert await refresher.apply(order, status(COMPLETED)) == done  # read before that one landed: dropped
    clock.advance(refresher.slow_read + 1)  # re-checked while final: the provider changed its mind
    rechecked = await refresher.apply(done, status(CANCELED, remains=1000))
    assert rechecked.status == COMPLETED and "changed its answer" in rechecked.attention
    assert told == [("order.attention", str(order.id))]
    rates = (await outcomes.of_provider("echomark"))[7]
    assert (round(rates.orders, 6), round(rates.completed, 6), rates.canceled) == (1, 1, 0)
