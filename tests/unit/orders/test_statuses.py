"""Status reads (proxy/orders/statuses.py): batched per provider, shared by
concurrent readers, applied with the money they move exactly once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from support import new_order
from upstreams import ScriptedPanel

from proxy.orders.states import ACCEPT, SUBMIT, UNKNOWN
from proxy.orders.statuses import SLOW_READ_SECONDS, UNSETTLED_READS, StatusRefresher
from proxy.providers.health import READS
from proxy.providers.replies import UpstreamStatus
from proxy.vocabulary import CANCELED, COMPLETED, IN_PROGRESS, PARTIAL

CHARGE = Decimal("1.17")
TTL = 60.0


@pytest.fixture
def echomark() -> ScriptedPanel:
    return ScriptedPanel("echomark")


@pytest.fixture
def tallied() -> list[str]:
    return []


@pytest.fixture
async def refresher(book, due, health, clock, echomark, tallied):
    client = echomark.client()

    async def tally(name: str) -> None:
        tallied.append(name)

    refresher = StatusRefresher(
        book, due, {"echomark": client}, health, TTL, clock, currencies={"echomark": "USD"}, tally=tally
    )
    yield refresher
    await refresher.aclose()
    await client.aclose()


def statuses(**by_id: dict) -> object:
    """A bulk status reply: each asked ID's entry from `by_id` (keyed "o5000"), else in progress."""

    def reply(fields: dict[str, str]) -> dict:
        ids = fields["orders"].split(",")
        default = {"status": IN_PROGRESS, "remains": "500", "charge": "0.45", "currency": "USD", "start_count": "1"}
        return {i: {**default, **by_id.get(f"o{i}", {})} for i in ids}

    return reply


async def placed(book, clock, upstream_order: int, link: str = "https://instagram.com/p/abc", charge: str = "1.17"):
    order = (await book.reserve(new_order(link=link, charge=charge))).order
    fields = {"provider": "echomark", "cost": 9_000_000, "cost_currency": "USD", "cost_base": 9_000_000}
    order = await book.apply(order, SUBMIT, fields)
    return await book.apply(order, ACCEPT, {"upstream_order": upstream_order, "status_at": f"{clock():.3f}"})


async def test_what_is_stale(refresher, book, alice, clock):
    order = await placed(book, clock, 5000)
    assert not refresher.stale(order)
    clock.advance(TTL)
    assert refresher.stale(order) and refresher.stale(order, ttl=TTL + 1) is False
    clock.advance(-3 * TTL)  # this instance's clock runs behind the one that stamped it
    assert refresher.stale(order)
    lost = await book.apply((await book.reserve(new_order(link="https://x.test/2"))).order, SUBMIT)
    assert not refresher.stale(await book.apply(lost, "lose"))  # not placed: nothing to read


async def test_concurrent_readers_share_one_call_and_a_refund_applies_once(
    refresher, book, alice, clock, echomark, ledger
):
    order = await placed(book, clock, 5000)
    echomark.on("status", statuses(o5000={"status": CANCELED, "remains": "1000", "charge": "0"}))
    clock.advance(TTL)
    results = await asyncio.gather(*(refresher.refresh([order]) for _ in range(20)))
    assert all(r[order.id].status == CANCELED and r[order.id].refunded == CHARGE for r in results)
    assert len(echomark.asked("status")) == 1
    assert await ledger.balance("alice") == Decimal("10")
    assert [e.kind for e in await ledger.entries("alice")].count("refund") == 1


async def test_one_call_reads_a_hundred_orders_and_carries_other_due_ones_along(
    refresher, book, alice, clock, echomark
):
    orders = [await placed(book, clock, 5000 + i, f"https://x.test/{i}", charge="0.01") for i in range(150)]
    echomark.on("status", statuses())
    clock.advance(TTL)
    fresh = await refresher.refresh(orders[:1])  # one asked for; 99 more were due
    assert fresh[orders[0].id].status == IN_PROGRESS
    [first_call] = [len(r["orders"].split(",")) for r in echomark.asked("status")]
    assert 90 < first_call <= 100
    assert await refresher.poll("echomark") == 150 - first_call  # the rest, in one more call
    assert len(echomark.asked("status")) == 2
    read = {i for r in echomark.asked("status") for i in r["orders"].split(",")}
    assert read == {str(o.upstream_order) for o in orders}
    assert await refresher.poll("echomark") == 0


async def test_an_order_the_provider_stops_knowing_goes_to_the_operator(refresher, book, alice, clock, echomark):
    order = await placed(book, clock, 5000)
    echomark.on("status", lambda fields: {"5000": {"error": "Incorrect order ID"}})
    for n in range(1, UNSETTLED_READS + 1):
        clock.advance(TTL)
        order = (await refresher.refresh([order]))[order.id]
        assert order.misses == n and order.status == "Pending"
    assert order.attention == (
        f"{UNSETTLED_READS} status reads in a row could not be settled (nothing usable on this order)"
        " | the provider said: Incorrect order ID"
    )
    assert order.refunded == 0
    echomark.on("status", statuses())
    clock.advance(TTL)
    assert (await refresher.refresh([order]))[order.id].misses == UNSETTLED_READS  # read slowly now: not yet
    clock.advance(SLOW_READ_SECONDS)
    assert (await refresher.refresh([order]))[order.id].misses == 0


async def test_a_provider_that_fails_a_read_is_not_read_again_at_once(refresher, book, alice, clock, echomark, health):
    order = await placed(book, clock, 5000)
    echomark.on("status", httpx.ConnectError, statuses())
    clock.advance(TTL)
    assert (await refresher.refresh([order]))[order.id].status == "Pending"  # kept
    assert await health.cooling("echomark", READS)
    assert (await refresher.refresh([order]))[order.id].status == "Pending"
    assert len(echomark.asked("status")) == 1  # cooling: not asked


async def test_a_plain_refusal_benches_no_one(refresher, book, alice, clock, echomark, health):
    order = await placed(book, clock, 5000)
    echomark.on("status", {"error": "Incorrect request"})
    clock.advance(TTL)
    await refresher.refresh([order])
    assert not await health.cooling("echomark", READS)


async def test_a_partial_is_refunded_by_its_remains_and_an_odd_charge_reported(refresher, book, alice, clock, ledger):
    order = await placed(book, clock, 5000)
    partial = UpstreamStatus(PARTIAL, Decimal("2.50"), 3, 600, "USD", "Partial")
    order = await refresher.apply(order, partial)
    assert order.status == PARTIAL and order.refunded == Decimal("0.702")  # 1.17 x 600 / 1000
    assert "the provider charged 2.50 USD" in order.attention
    assert await ledger.balance("alice") == Decimal("10") - CHARGE + Decimal("0.702")
    assert (await refresher.apply(order, None)) == order  # no answer: nothing changes


async def test_a_status_for_an_order_that_is_not_placed_changes_nothing(refresher, book, alice, clock):
    lost = await book.apply(await placed(book, clock, 5000), "lose")
    assert lost.state != UNKNOWN  # late news about a placed order: it stays placed
    unknown = await book.apply(
        await book.apply((await book.reserve(new_order(link="https://x.test/u"))).order, SUBMIT), "lose"
    )
    done = UpstreamStatus(COMPLETED, None, 0, 0, "USD", "Completed")
    assert (await refresher.apply(unknown, done)).state == UNKNOWN
