"""A client's open links (proxy/orders/links.py and the order scripts): how a link
is compared, the index the scripts keep as orders open and end, and the
same-link rule the reserve script decides by.

Alice has 10.00; a new order charges 1.17 (support.new_order).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from faults import FaultPlan, FaultyRedis, script_call, script_sha
from support import new_order

from proxy.errors import LinkInUse
from proxy.orders.book import OrderBook
from proxy.orders.links import link_key, normal_link
from proxy.orders.states import ACCEPT, EXHAUST, LOSE, RESOLVE_FAILED, STATUS, SUBMIT, lua_values
from proxy.store import connect
from proxy.vocabulary import COMPLETED, IN_PROGRESS, PARTIAL

LINK = "https://instagram.com/p/abc"


@pytest.mark.parametrize(
    "one, other",
    [
        ("https://www.Instagram.com/p/abc/", LINK),
        ("instagram.com/p/abc", LINK),
        ("http://instagram.com/p/abc", LINK),
        (" https://instagram.com/p/abc ", LINK),
    ],
)
def test_spellings_of_one_page_are_one_link(one, other):
    assert normal_link(one) == normal_link(other) and link_key(one) == link_key(other)


@pytest.mark.parametrize(
    "one, other",
    [
        ("https://instagram.com/p/abc", "https://instagram.com/p/ABC"),
        ("https://youtube.com/watch?v=a", "https://youtube.com/watch?v=b"),
        ("https://instagram.com/p/abc", "https://instagram.com/p/abcd"),
    ],
)
def test_other_pages_are_other_links(one, other):
    assert link_key(one) != link_key(other)


async def open_links(book, client="alice"):
    found = {}
    async for bucket in book.redis.scan_iter(match=book.keys.open_links_buckets(client)):
        found.update({k: int(v) for k, v in (await book.redis.hgetall(bucket)).items()})
    return found


async def test_the_index_counts_open_orders_per_link_and_forgets_them_when_they_end(book, alice):
    key = link_key(LINK)
    first = (await book.reserve(new_order(link=LINK))).order
    second = (await book.reserve(new_order(link=LINK + "/"))).order
    assert await open_links(book) == {key: 2}
    await book.apply(second, EXHAUST)  # refunded, not open any more
    assert await open_links(book) == {key: 1}
    sent = await book.apply(first, SUBMIT, {"provider": "echomark"})
    placed = await book.apply(sent, ACCEPT, {"upstream_order": 5000})
    running = await book.apply(placed, STATUS, {"status": IN_PROGRESS}, version=placed.version)
    assert await open_links(book) == {key: 1}
    await book.apply(running, STATUS, {"status": COMPLETED}, version=running.version)
    assert await open_links(book) == {}


async def test_an_unknown_order_holds_its_link_until_an_operator_decides(book, alice):
    order = (await book.reserve(new_order(link=LINK))).order
    lost = await book.apply(await book.apply(order, SUBMIT, {"provider": "echomark"}), LOSE)
    assert await open_links(book) == {link_key(LINK): 1}
    await book.apply(lost, RESOLVE_FAILED)
    assert await open_links(book) == {}


async def test_a_client_that_refuses_a_second_order_on_a_link_is_refused_before_any_money_moves(
    book, alice, ledger, keys
):
    await book.redis.hset(keys.client("alice"), "same_link", "refuse")
    first = (await book.reserve(new_order(link=LINK))).order
    balance = await ledger.balance("alice")
    for spelling in (LINK, "https://www.instagram.com/p/abc/"):
        with pytest.raises(LinkInUse):
            await book.reserve(new_order(link=spelling))
    assert await ledger.balance("alice") == balance and await book.ids_in("all", "alice") == [first.id]
    assert await book.redis.hgetall(keys.order_owner(first.id)) == {str(first.id): "alice"}  # no other owner entry
    other = (await book.reserve(new_order(link=LINK + "2"))).order  # another link is another order
    placed = await book.apply(await book.apply(first, SUBMIT, {"provider": "echomark"}), ACCEPT, {"upstream_order": 9})
    await book.apply(placed, STATUS, {"status": PARTIAL, "remains": 10}, version=placed.version)
    again = (await book.reserve(new_order(link=LINK))).order  # the first one ended: the link is free
    assert again.id > other.id


async def test_the_reserve_script_decides_even_when_a_read_said_the_link_was_free(
    redis_url, keys, redis_client, alice, ledger, leases, due, clock
):
    reserve = script_sha("proxy.orders", "reserve", lua_values())

    class Race(FaultPlan):
        """Just before the second reservation's script, the first one opens the link."""

        done = False

        async def before(self, commands, pipeline=False):
            calls = [c for c in map(script_call, commands) if c is not None]
            if not self.done and any(c.sha == reserve for c in calls):
                self.done = True
                await other.reserve(new_order(link=LINK))
            return None

    plan = Race()
    racing = OrderBook(FaultyRedis.with_plan(connect(redis_url).connection_pool, plan), keys, leases, due, clock)
    other = OrderBook(redis_client, keys, leases, due, clock)
    await redis_client.hset(keys.client("alice"), "same_link", "refuse")
    with pytest.raises(LinkInUse):
        await racing.reserve(new_order(link=LINK))
    assert len(await other.ids_in("all", "alice")) == 1
    assert await ledger.balance("alice") == Decimal("10") - Decimal("1.17")  # one charge: the first order's
    await racing.redis.aclose()
