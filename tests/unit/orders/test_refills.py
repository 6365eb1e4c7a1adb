"""Refills (proxy/orders/refills.py): our refill IDs over the upstream's, statuses cached."""

from __future__ import annotations

import httpx
import pytest
from support import new_order
from upstreams import ScriptedPanel

from proxy.errors import ProviderRefused, UpstreamError
from proxy.orders.refills import Refills
from proxy.orders.states import ACCEPT, SUBMIT
from proxy.vocabulary import COMPLETED, IN_PROGRESS, PENDING

TTL = 60.0


@pytest.fixture
def echomark() -> ScriptedPanel:
    return ScriptedPanel("echomark")


@pytest.fixture
async def refills(redis_client, keys, clock, echomark, health):
    client = echomark.client()
    yield Refills(redis_client, keys, {"echomark": client}, health, TTL, clock)
    await client.aclose()


async def placed(book, upstream_order: int, provider: str = "echomark"):
    order = (await book.reserve(new_order(link=f"https://x.test/{upstream_order}", charge="0.5"))).order
    order = await book.apply(order, SUBMIT, {"provider": provider})
    return await book.apply(order, ACCEPT, {"upstream_order": upstream_order})


async def test_a_refill_gets_our_own_id(refills, book, alice, echomark, clock):
    order = await placed(book, 5000)
    echomark.on("refill", {"refill": "77"})
    assert await refills.create([order]) == {order.id: 1}
    [refill] = (await refills.get_many("alice", [1])).values()
    assert (refill.order, refill.provider, refill.upstream_refill, refill.status) == (
        order.id,
        "echomark",
        "77",
        PENDING,
    )
    assert await refills.get_many("bob", [1]) == {}  # another client's ID is nobody's
    assert echomark.asked("refill") == [{"key": "sim-key", "action": "refill", "order": "5000"}]


async def test_many_refills_in_one_call_each_with_its_answer(refills, book, alice, echomark):
    a, b, c = [await placed(book, 5000 + i) for i in range(3)]
    echomark.on(
        "refill",
        [
            {"order": 5000, "refill": 11},
            {"order": 5001, "refill": {"error": "Refill is disabled for this service"}},
        ],
    )
    results = await refills.create([a, b, c])
    assert results[a.id] == 1
    assert isinstance(results[b.id], ProviderRefused) and results[b.id].message == "Refill is disabled for this service"
    assert isinstance(results[c.id], ProviderRefused)  # left out of the reply
    assert len(echomark.asked("refill")) == 1


async def test_a_refill_that_could_not_be_asked_for_says_so(refills, book, alice, echomark):
    order = await placed(book, 5000)
    echomark.on("refill", httpx.ConnectError)
    [result] = (await refills.create([order])).values()
    assert isinstance(result, UpstreamError) and not getattr(result, "message", None)
    gone = await placed(book, 6000, provider="retired")
    [result] = (await refills.create([gone])).values()
    assert "no longer configured" in str(result)


async def test_refill_statuses_are_read_when_stale_and_kept_once_final(refills, book, alice, echomark, clock):
    order = await placed(book, 5000)
    echomark.on("refill", {"refill": "77"})
    await refills.create([order])
    echomark.on("refill_status", {"77": {"status": IN_PROGRESS}}, {"77": {"status": COMPLETED}})
    assert (await refills.statuses("alice", [1]))[1].status == PENDING  # fresh: not asked
    clock.advance(TTL)
    assert (await refills.statuses("alice", [1]))[1].status == IN_PROGRESS
    clock.advance(TTL)
    assert (await refills.statuses("alice", [1]))[1].status == COMPLETED
    clock.advance(TTL)
    assert (await refills.statuses("alice", [1]))[1].status == COMPLETED
    assert len(echomark.asked("refill_status")) == 2  # final: never asked again


async def test_an_unknown_refill_status_keeps_the_one_we_had(refills, book, alice, echomark, clock):
    order = await placed(book, 5000)
    echomark.on("refill", {"refill": "77"})
    await refills.create([order])
    echomark.on("refill_status", {"77": {"status": "Wonky"}})
    clock.advance(TTL)
    refill = (await refills.statuses("alice", [1]))[1]
    assert refill.status == PENDING and refill.status_at == clock()  # read, and kept as it was
